"""What a recipe step records: one dict shape for every step, read by the runner and the report.

Every step's record is ``{"verb", "summary", "records", **extras}``: for prune, quantize, distill and
merge it is their result's :meth:`slimstack.Result.to_dict` (every verb returns a
:class:`~slimstack.Result`); combine and compile steps build the same shape.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .._result import Result

__all__ = ["plain", "step_record", "result_model"]


def result_model(result: Any) -> Any:
    """The new model a verb returned (its ``.model``, or the result itself when it is a model)."""
    return result.model if isinstance(result, Result) else result


def step_record(verb: str, result: Result | None = None, *, summary: dict[str, Any] | None = None,
                records: list[Any] | None = None, **extras: Any) -> dict[str, Any]:
    """``{"verb", "summary", "records", **extras}`` for ``result`` (a verb's result), JSON-ready."""
    d: dict[str, Any] = {"verb": verb, "summary": dict(summary or {}), "records": list(records or [])}
    if result is not None:
        if not isinstance(result, Result):
            raise TypeError(f"a {verb} step returned a {type(result).__name__}, which has no records to report; "
                            "return a slimstack Result (model, records, summary)")
        d.update(result.to_dict())
    d.update(extras)
    return plain(d)


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
