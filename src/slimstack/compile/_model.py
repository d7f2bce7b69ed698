"""The compiled model: one ONNX Runtime session, the Python fallbacks, and a pickle-free save format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, ModelFileError, ShapeError

__all__ = ["CompiledModel"]


class CompiledModel:
    """A fitted ensemble (or single model) compiled into one ONNX Runtime graph.

    Same face as the estimator it came from: ``predict``, ``predict_proba`` (when the source has
    it), ``classes_`` and ``n_features_in_``. The graph reads float64 rows and computes tree
    branches and neighbour distances in float64, everything else in float32; probabilities match
    the Python estimator within ``tolerance`` (1e-5). Members that could not be compiled run in
    Python and feed the graph; ``record`` names every member, how it runs, and why.

    The session is created once, with its thread count and sequential execution fixed, so a call
    costs one ``session.run`` plus one pass over the input for shape and NaN checks.

    Examples
    --------
    >>> fast = ss.compile(fitted_stack)        # doctest: +SKIP
    >>> fast.predict_proba(X[:1])              # doctest: +SKIP
    >>> ss.save(fast, "out/fast"); ss.load("out/fast")   # doctest: +SKIP
    """

    _estimator_type = "classifier"
    tolerance = 1e-5

    def __init__(self, onnx_bytes: bytes, classes, *, n_features: int, record: list[dict], allow_nan: bool,
                 has_proba: bool = True, fallbacks: list[dict] | None = None, source: str = "",
                 threads: int | None = 1):
        self.onnx_bytes = bytes(onnx_bytes)
        self.classes_ = np.asarray(classes)
        self.n_features_in_ = int(n_features)
        self.record = list(record)
        self.allow_nan = bool(allow_nan)
        self.has_proba = bool(has_proba)
        self.fallbacks = list(fallbacks or [])
        self.source = source
        self.threads = threads
        self._session = None
        self._open()

    # -- the session -------------------------------------------------------------------------------
    def _open(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(self.threads or 1)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # Worker threads that spin after each parallel section hold a core the next call (or another
        # process) needs: on the shared 2-core machine a 2-thread stack took 27-46 ms per 256 rows with
        # spinning and 19-21 ms without, and the cascade's If branch suffered most (1.45x the stack).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(self.onnx_bytes, opts, providers=["CPUExecutionProvider"])
        self._output = [self._session.get_outputs()[0].name]

    def set_threads(self, threads: int | None) -> None:
        """Reopen the session with ``threads`` intra-op threads (no-op when unchanged)."""
        if threads != self.threads:
            self.threads = threads
            self._open()

    # -- prediction ----------------------------------------------------------------------------------
    def _scores(self, X) -> np.ndarray:
        raw = X
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ShapeError(f"X has shape {X.shape} but this model was fitted on {self.n_features_in_} features; "
                             f"pass a 2-D array with {self.n_features_in_} columns.")
        if not np.isfinite(X).all():  # one pass for the common, finite case
            if np.isinf(X).any():
                raise DataError("Input X contains infinity; replace it with a finite value or NaN.")
            if not self.allow_nan:
                raise DataError("Input X contains NaN, which the source estimator does not accept either; impute "
                                "first (e.g. SimpleImputer) or use members that take NaN (HistGradientBoosting).")
        feeds = {"X": np.ascontiguousarray(X)}
        for fb in self.fallbacks:
            out = np.asarray(getattr(fb["estimator"], fb["method"])(raw), dtype=np.float32)
            feeds[fb["input"]] = out.reshape(len(X), -1) if fb["method"] != "predict" else self._one_hot(fb, out)
        return self._session.run(self._output, feeds)[0]

    @staticmethod
    def _one_hot(fb: dict, labels: np.ndarray) -> np.ndarray:
        classes = np.asarray(fb["estimator"].classes_)
        return (np.asarray(labels)[:, None] == classes[None, :]).astype(np.float32)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, one column per entry of ``classes_`` (float64)."""
        if not self.has_proba:
            raise AttributeError("this model has no predict_proba: its source (hard voting) has none either; "
                                 "use predict, or compile a soft-voting ensemble.")
        return self._scores(X).astype(np.float64)

    def predict(self, X) -> np.ndarray:
        """The class with the largest probability (or vote share)."""
        return self.classes_[np.argmax(self._scores(X), axis=1)]

    def score(self, X, y) -> float:
        return float(np.mean(self.predict(X) == np.asarray(y)))

    # -- summary ---------------------------------------------------------------------------------------
    @property
    def python_members(self) -> list[str]:
        return [r["member"] for r in self.record if not r.get("compiled", True)]

    def __repr__(self) -> str:
        n = sum(1 for r in self.record if r.get("compiled") and "type" in r)
        return (f"CompiledModel(source={self.source}, classes={len(self.classes_)}, compiled members={n}, "
                f"python members={self.python_members or 'none'})")

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_session"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._open()

    # -- save / load (registered as the "compiled" format) ----------------------------------------------
    def _save(self, directory: Path) -> dict[str, Any]:
        import skops.io as sio

        (directory / "model.onnx").write_bytes(self.onnx_bytes)
        fallbacks = []
        for i, fb in enumerate(self.fallbacks):
            file = f"python_member_{i}.skops"
            try:
                sio.dump(fb["estimator"], str(directory / file))
            except Exception as exc:
                from ..errors import ModelError

                raise ModelError(f"member {fb['path']!r} stays in Python and cannot be saved with skops ({exc}); "
                                 "make it compilable or save the source estimator instead.") from exc
            fallbacks.append({"input": fb["input"], "method": fb["method"], "path": fb["path"], "file": file})
        meta = {"classes": _classes_to_json(self.classes_), "n_features": self.n_features_in_,
                "record": self.record, "allow_nan": self.allow_nan, "has_proba": self.has_proba,
                "fallbacks": fallbacks, "source": self.source, "threads": self.threads}
        (directory / "compiled.json").write_text(json.dumps(meta, indent=2, default=_json_default))
        return {"file": "model.onnx", "meta": "compiled.json"}

    @classmethod
    def _load(cls, directory: Path, spec: dict[str, Any], trusted: bool) -> CompiledModel:
        from ..io import load_skops as _skops_load

        try:
            meta = json.loads((directory / spec.get("meta", "compiled.json")).read_text())
            onnx_bytes = (directory / spec.get("file", "model.onnx")).read_bytes()
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelFileError(f"{str(directory)!r} holds no readable compiled model ({exc}); save it again") from exc
        fallbacks = [{**fb, "estimator": _skops_load(directory / fb["file"], trusted)} for fb in meta["fallbacks"]]
        return cls(onnx_bytes, _classes_from_json(meta["classes"]), n_features=meta["n_features"],
                   record=meta["record"], allow_nan=meta["allow_nan"], has_proba=meta["has_proba"],
                   fallbacks=fallbacks, source=meta.get("source", ""), threads=meta.get("threads", 1))


def _classes_to_json(classes: np.ndarray) -> dict[str, Any]:
    dtype = "object" if classes.dtype == object else classes.dtype.str
    return {"dtype": dtype, "values": [c.item() if isinstance(c, np.generic) else c for c in classes.tolist()]}


def _classes_from_json(d: dict[str, Any]) -> np.ndarray:
    return np.asarray(d["values"], dtype=object if d["dtype"] == "object" else np.dtype(d["dtype"]))


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
