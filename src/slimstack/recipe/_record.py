"""What a recipe step records: one dict shape for every step, read by the runner and the report.

Every step's record is ``{"verb", "summary", "records", **extras}``: for prune, quantize, distill and
merge it is their result's :meth:`slimstack.Result.to_dict`; combine and compile steps build the same
shape. :func:`step_record` also converts the result shapes from before every verb returned a
:class:`~slimstack.Result` (``PruneResult.record``, ``QuantResult.record`` as a ``QuantRecord``,
``DistillResult.history``, a merged model's ``merge_record_``), so recipes read both.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .._result import Result

__all__ = ["plain", "step_record", "result_model"]


def result_model(result: Any) -> Any:
    """The new model a verb returned (its ``.model``, or the result itself when it is a model)."""
    is_result = isinstance(result, Result) or (dataclasses.is_dataclass(result) and not isinstance(result, type)
                                                and "model" in {f.name for f in dataclasses.fields(result)})
    return result.model if is_result else result


def step_record(verb: str, result: Any = None, *, summary: dict[str, Any] | None = None,
                records: list[Any] | None = None, **extras: Any) -> dict[str, Any]:
    """``{"verb", "summary", "records", **extras}`` for ``result`` (a verb's result), JSON-ready."""
    d: dict[str, Any] = {"verb": verb, "summary": dict(summary or {}), "records": list(records or [])}
    if result is not None:
        d.update(_result_dict(verb, result))
    d.update(extras)
    return plain(d)


def _result_dict(verb: str, result: Any) -> dict[str, Any]:
    if isinstance(result, Result):
        return result.to_dict()
    rec = getattr(result, "record", None)
    if hasattr(rec, "layers") and hasattr(rec, "to_dict"):  # QuantResult(model, QuantRecord)
        summary = {k: v for k, v in rec.to_dict().items() if k != "layers"}
        layers = [{"layer": r.get("name"), "action": r.get("status"), "reason": r.get("reason", ""),
                   "extra": {k: v for k, v in r.items() if k not in ("name", "status", "reason")}}
                  for r in rec.layers]
        return {"verb": verb, "summary": summary, "records": layers}
    d = result.to_dict() if hasattr(result, "to_dict") and callable(result.to_dict) else {}
    if "history" in d:  # DistillResult(model, history, record)
        return {"verb": verb, "summary": d.get("record") or {}, "records": [], "history": d["history"]}
    if isinstance(d.get("record"), list):  # PruneResult(model, record, summary)
        return {"verb": verb, "summary": d.get("summary") or {}, "records": d["record"]}
    merged = getattr(result, "merge_record_", None)  # a merged model carrying its record
    if isinstance(merged, dict):
        return {"verb": verb, "summary": merged, "records": []}
    raise TypeError(f"a {verb} step returned a {type(result).__name__}, which has no records to report")


def plain(obj: Any) -> Any:
    """A JSON-able view of a step record (dataclasses, configs, numpy values, nested containers)."""
    import numpy as np

    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return plain(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return plain(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)
