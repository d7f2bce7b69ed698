"""Ensemble members that are not plain scikit-learn estimators: PyTorch, ONNX and frozen models.

Ensembles take scikit-learn estimators. These adapters give a PyTorch module or an ONNX model the
same face (``fit`` / ``predict`` / ``predict_proba`` / ``classes_``) so the combiners never branch
on the model kind, and :class:`Frozen` marks an already-fitted model to be used as it is.

A *frozen* member is never cloned into fold copies or refitted: the ensemble calls its (no-op)
``fit`` once and uses its predictions on the training data as its out-of-fold predictions. That
is what a user who hands over a trained model expects, and it is also why such a model must have
been trained on other data than the ensemble's (the stacking leakage guard exists for that case).
"""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.frozen import FrozenEstimator
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from .. import io as slimstack_io
from ..errors import DataError, ModelError, ShapeError
from ..measure import softmax

__all__ = ["TorchClassifier", "TorchRegressor", "OnnxClassifier", "OnnxRegressor", "Frozen",
           "is_frozen", "as_member"]


class Frozen(FrozenEstimator):
    """Use an already-fitted estimator as an ensemble member without cloning or refitting it.

    ``fit`` is a no-op and ``clone`` returns the same object, so the member's learned state is
    kept exactly; the ensemble takes its predictions on the training data as out-of-fold
    predictions. Train the wrapped model on data other than the ensemble's, or those predictions
    are in-sample and the combiner over-trusts the member.

    Parameters
    ----------
    estimator : fitted estimator
        A fitted scikit-learn estimator, or a prefit :class:`TorchClassifier` / :class:`OnnxClassifier`.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> import slimstack as ss
    >>> X, y = load_iris(return_X_y=True)
    >>> lr = LogisticRegression(max_iter=500).fit(X[::2], y[::2])
    >>> vote = ss.VotingEnsemble([("lr", ss.Frozen(lr)), ("lr2", LogisticRegression(C=0.1, max_iter=500))])
    >>> vote.fit(X, y).predict(X[:2]).tolist()
    [0, 0]
    """


def is_frozen(est: Any) -> bool:
    """Whether the ensemble should use ``est`` as it is (one no-op ``fit``, no fold copies)."""
    if isinstance(est, FrozenEstimator):
        return True
    return isinstance(est, _PrefitBase) and bool(getattr(est, "prefit", True))


def as_member(est: Any, *, classifier: bool) -> Any:
    """Wrap a raw ``nn.Module`` or ONNX model into the matching prefit adapter; pass others through."""
    try:
        import torch

        if isinstance(est, torch.nn.Module):
            return TorchClassifier(est) if classifier else TorchRegressor(est)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if _is_onnx(est):
        return OnnxClassifier(est) if classifier else OnnxRegressor(est)
    return est


def _is_onnx(obj: Any) -> bool:
    if isinstance(obj, (str, Path)) and str(obj).endswith(".onnx"):
        return True
    return type(obj).__name__ == "ModelProto" and type(obj).__module__.startswith("onnx")


class _PrefitBase(BaseEstimator):
    """Shared label handling of the model adapters."""

    _classifier = True

    def _set_targets(self, y) -> np.ndarray:
        y = column_or_1d(y, warn=True)
        if not self._classifier:
            return y.astype(np.float32)
        check_classification_targets(y)
        if self.classes is not None:
            classes = np.asarray(self.classes)
            unknown = np.setdiff1d(np.unique(y), classes)
            if unknown.size:
                raise ModelError(
                    f"y has labels {unknown.tolist()[:5]} that the model's classes {classes.tolist()} do not "
                    f"include; pass classes= listing every output column's label in order.")
        else:
            classes = np.unique(y)
            if len(classes) < 2:
                raise DataError(f"y has 1 class ({classes[0]!r}); a classifier needs at least 2 classes, or pass "
                                "classes= listing the model's output labels.")
        self.classes_ = classes
        return np.searchsorted(classes, y) if self.classes is None else _index_of(classes, y)

    def _check_width(self, out: np.ndarray) -> np.ndarray:
        if self._classifier:
            width = len(self.classes_)
            if out.ndim == 1 or out.shape[1] == 1:
                if width != 2:
                    raise ShapeError(f"the model returns one score per row but there are {width} classes; "
                                     "return one column per class.")
                p = _sigmoid(out.reshape(-1)) if self._output_kind(out) == "logits" else out.reshape(-1)
                return np.column_stack([1 - p, p])
            if out.shape[1] != width:
                raise ShapeError(
                    f"the model returns {out.shape[1]} columns but there are {width} classes "
                    f"{self.classes_.tolist()[:10]}; pass classes= with one label per output column.")
            if self._output_kind(out) == "logits":
                return softmax(out)
            return out / out.sum(axis=1, keepdims=True)
        return out.reshape(len(out), -1)[:, 0] if out.ndim > 1 and out.shape[1] == 1 else out

    def _output_kind(self, out: np.ndarray) -> str:
        if self.output != "auto":
            return self.output
        looks_like_proba = out.min() >= 0 and (out.ndim == 1 or np.allclose(out.sum(axis=1), 1, atol=1e-3))
        return "proba" if looks_like_proba else "logits"

    @available_if(lambda self: self._classifier)
    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, one column per entry of ``classes_``."""
        check_is_fitted(self)
        return self._check_width(self._forward(self._input(X)))

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        if self._classifier:
            return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
        return self._check_width(self._forward(self._input(X)))

    def _input(self, X) -> np.ndarray:
        X = validate_data(self, X, reset=False, dtype=np.float32)
        if self.input_shape is not None:
            X = X.reshape((len(X), *self.input_shape))
        return X


def _index_of(classes: np.ndarray, y: np.ndarray) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    return np.array([lookup[v] for v in y.tolist()], dtype=np.int64)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class _TorchBase(_PrefitBase):
    def __init__(self, module=None, *, prefit=True, classes=None, input_shape=None, output="auto",
                 hidden_layer_sizes=(64,), epochs=30, batch_size=64, lr=1e-2, weight_decay=0.0,
                 random_state=0, threads=None, predict_batch_size=4096):
        self.module = module
        self.prefit = prefit
        self.classes = classes
        self.input_shape = input_shape
        self.output = output
        self.hidden_layer_sizes = hidden_layer_sizes
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.threads = threads
        self.predict_batch_size = predict_batch_size

    def fit(self, X, y):
        """Prefit: record ``classes_`` and a private copy of the module. Otherwise train a copy.

        The module given is never modified: fit works on a deep copy (``module_``).
        """
        import torch

        from .._utils import threads

        if self.output not in ("auto", "logits", "proba"):
            raise ModelError(f"output={self.output!r} is not allowed; use 'auto', 'logits' or 'proba'.")
        X, y = validate_data(self, X, y, dtype=np.float32, y_numeric=not self._classifier)
        target = self._set_targets(y)
        if self.prefit and self.module is None:
            raise ModelError("prefit=True needs a trained module; pass TorchClassifier(module) or set "
                             "prefit=False to train a small MLP inside fit.")
        with threads(self.threads):
            if self.module is None:
                torch.manual_seed(self.random_state)
                module = self._default_module(X.shape[1])
            else:
                module = copy.deepcopy(self.module)
            if not self.prefit:
                self._train(module, self._input(X), target)
            self.module_ = module.eval()
        return self

    def _default_module(self, n_features: int):
        from torch import nn

        width, layers = n_features, []
        for h in self.hidden_layer_sizes:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        out = len(self.classes_) if self._classifier else 1
        return nn.Sequential(*layers, nn.Linear(width, out))

    def _train(self, module, X: np.ndarray, target: np.ndarray) -> None:
        import torch
        from torch import nn

        gen = torch.Generator().manual_seed(int(self.random_state))
        torch.manual_seed(int(self.random_state))
        xt = torch.from_numpy(np.ascontiguousarray(X))
        if self._classifier:
            yt = torch.from_numpy(np.asarray(target, dtype=np.int64))
            loss_fn = nn.CrossEntropyLoss()
        else:
            # Standardise the target so one learning rate suits any scale; undone in _forward.
            self.y_mean_, self.y_scale_ = float(target.mean()), float(target.std() or 1.0)
            yt = torch.from_numpy(((target - self.y_mean_) / self.y_scale_).astype(np.float32))
            loss_fn = nn.MSELoss()
        module.train()
        opt = torch.optim.Adam(module.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        n = len(xt)
        for _ in range(int(self.epochs)):
            order = torch.randperm(n, generator=gen)
            for start in range(0, n, int(self.batch_size)):
                idx = order[start:start + int(self.batch_size)]
                out = module(xt[idx])
                if not self._classifier:
                    out = out.reshape(-1)
                loss = loss_fn(out, yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()

    def _forward(self, X: np.ndarray) -> np.ndarray:
        import torch

        from .._utils import threads

        outs = []
        with threads(self.threads), torch.inference_mode():
            for start in range(0, len(X), int(self.predict_batch_size)):
                outs.append(self.module_(torch.from_numpy(np.ascontiguousarray(X[start:start + int(self.predict_batch_size)]))).float().numpy())
        out = np.concatenate(outs) if outs else np.zeros((0, len(getattr(self, "classes_", [0]))), np.float32)
        if not self._classifier and hasattr(self, "y_mean_"):
            out = out * self.y_scale_ + self.y_mean_
        return out.astype(np.float64)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags

    _MODULES = ("module", "module_")

    def __getstate__(self):
        # ss.save (skops) stores the modules as ss.save files, no pickle; plain pickling is unchanged
        state = super().__getstate__()
        if slimstack_io.packing():
            state = {k: slimstack_io.pack_module(v) if k in self._MODULES and v is not None else v
                     for k, v in state.items()}
        return state

    def __setstate__(self, state):
        super().__setstate__({k: slimstack_io.unpack_module(v) if k in self._MODULES else v
                              for k, v in state.items()})


class TorchClassifier(ClassifierMixin, _TorchBase):
    """A PyTorch module as a scikit-learn classifier: prefit (used as is) or trained inside ``fit``.

    Parameters
    ----------
    module : nn.Module or None
        Maps a float32 batch to one logit (or probability) per class. ``None`` with
        ``prefit=False`` builds an MLP with ``hidden_layer_sizes`` sized from the data.
    prefit : bool, default True
        True: ``fit`` only records ``classes_`` (from ``classes`` or ``y``) and the module is used
        frozen; ensembles then make no fold copies of it. False: ``fit`` trains a copy of the module
        with Adam on cross-entropy, seeded by ``random_state``.
    classes : array-like or None
        Label of each output column; defaults to the sorted labels of ``y``.
    input_shape : tuple or None
        Reshape each flat row to this shape before the module (``(1, 8, 8)`` for a digits CNN).
    output : {"auto", "logits", "proba"}
        What the module returns; "auto" treats non-negative rows summing to one as probabilities.

    Examples
    --------
    >>> import numpy as np, torch, slimstack as ss
    >>> X = np.random.default_rng(0).normal(size=(60, 4)).astype("float32"); y = (X[:, 0] > 0).astype(int)
    >>> clf = ss.TorchClassifier(prefit=False, epochs=20, random_state=0).fit(X, y)
    >>> clf.predict_proba(X).shape
    (60, 2)
    """


class TorchRegressor(RegressorMixin, _TorchBase):
    """A PyTorch module as a scikit-learn regressor (one output), prefit or trained inside ``fit``.

    Same parameters as :class:`TorchClassifier` minus the class handling; when trained here the
    target is standardised for the optimiser and mapped back at prediction.

    Examples
    --------
    >>> import numpy as np, slimstack as ss
    >>> X = np.random.default_rng(0).normal(size=(80, 3)).astype("float32"); y = X @ [1.0, -2.0, 0.5]
    >>> ss.TorchRegressor(prefit=False, epochs=40, random_state=0).fit(X, y).predict(X).shape
    (80,)
    """

    _classifier = False


class _OnnxBase(_PrefitBase):
    def __init__(self, model, *, classes=None, input_shape=None, output="auto", output_index=None,
                 providers=None):
        self.model = model
        self.classes = classes
        self.input_shape = input_shape
        self.output = output
        self.output_index = output_index
        self.providers = providers

    prefit = True  # ONNX models are always used as they are

    def fit(self, X, y):
        """Record ``classes_`` and open an ONNX Runtime session; the model is never trained."""
        X, y = validate_data(self, X, y, dtype=np.float32, y_numeric=not self._classifier)
        self._set_targets(y)
        self.model_bytes_ = self._model_bytes()
        self._session = None
        self._forward(self._input(X[:1]))  # fail here, not at predict, on a bad model
        return self

    def _model_bytes(self) -> bytes:
        m = self.model
        if isinstance(m, (bytes, bytearray)):
            return bytes(m)
        if isinstance(m, (str, Path)):
            path = Path(m)
            if not path.is_file():
                raise ModelError(f"ONNX model file {str(path)!r} does not exist; pass an existing .onnx path, "
                                 "the model bytes, or an onnx.ModelProto.")
            return path.read_bytes()
        if hasattr(m, "SerializeToString"):
            return m.SerializeToString()
        raise ModelError(f"cannot read an ONNX model from {type(m).__name__}; pass a .onnx path, bytes or "
                         "an onnx.ModelProto.")

    def _forward(self, X: np.ndarray) -> np.ndarray:
        import onnxruntime as ort

        if getattr(self, "_session", None) is None:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            self._session = ort.InferenceSession(self.model_bytes_, opts,
                                                 providers=self.providers or ["CPUExecutionProvider"])
        sess = self._session
        name = sess.get_inputs()[0].name
        outs = sess.run(None, {name: np.ascontiguousarray(X, dtype=np.float32)})
        idx = self.output_index
        if idx is None:  # the first float matrix: skl2onnx puts labels first, probabilities second
            idx = next((i for i, o in enumerate(outs) if isinstance(o, np.ndarray) and o.dtype.kind == "f"), 0)
        out = outs[idx]
        if isinstance(out, list):  # zipmap output: list of {label: prob}
            out = np.array([[row[c] for c in self.classes_] for row in out])
        return np.asarray(out, dtype=np.float64)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_session"] = None  # sessions do not pickle; reopened from model_bytes_ on use
        return state


class OnnxClassifier(ClassifierMixin, _OnnxBase):
    """An ONNX model as a prefit scikit-learn classifier, run by ONNX Runtime.

    Parameters
    ----------
    model : str, Path, bytes or onnx.ModelProto
        The model; its first input takes a float32 batch.
    classes : array-like or None
        Label of each output column; defaults to the sorted labels of ``y`` at ``fit``.
    output : {"auto", "logits", "proba"}
        What the chosen output holds; "auto" decides from the values.
    output_index : int or None
        Which graph output to read; default the first float tensor.

    Examples
    --------
    >>> import slimstack as ss  # doctest: +SKIP
    >>> member = ss.OnnxClassifier("digits_mlp.onnx", input_shape=(1, 8, 8))  # doctest: +SKIP
    """


class OnnxRegressor(RegressorMixin, _OnnxBase):
    """An ONNX model with one output value per row as a prefit scikit-learn regressor."""

    _classifier = False


def module_to_onnx_bytes(module, example) -> bytes:
    """Export a torch module to ONNX bytes (used by tests and the docs' example)."""
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated but needs no onnxscript and handles these small modules.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(copy.deepcopy(module).eval(), (torch.as_tensor(example),), buf,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
                          dynamo=False)
    return buf.getvalue()
