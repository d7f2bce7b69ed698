"""The recipe schema: strict pydantic models, with errors that name the key, its line and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import ConfigError, close_matches
from ._combine import ESTIMATORS
from ._steps import STEP_KINDS, STEPS, parse_step
from ._yaml import load_yaml

__all__ = ["Recipe", "ModelSpec", "DataSpec", "MeasureSpec", "SearchSpec", "load_recipe", "STEP_KINDS"]



class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainSpec(_Strict):
    epochs: int = Field(15, ge=1, le=1000)
    lr: float = Field(3e-3, gt=0, lt=1)
    seed: int = 0


class ModelSpec(_Strict):
    """Where the model comes from: a zoo entry (trained here when ``train`` is given), a saved file,
    or a scikit-learn estimator from the allow-list (fitted here on the train split)."""

    zoo: str | None = None
    path: str | None = None
    estimator: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    scale: bool = False
    train: TrainSpec | None = None
    trusted: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if sum(x is not None for x in (self.zoo, self.path, self.estimator)) != 1:
            raise ValueError("give exactly one of 'zoo' (e.g. digits_cnn, minilm), 'path' (a saved model, "
                             "Hugging Face directory, .onnx or .skops file) or 'estimator' (e.g. LogisticRegression)")
        if self.estimator is not None:
            if self.estimator not in ESTIMATORS:
                raise ValueError(f"unknown estimator {self.estimator!r}; allowed: {', '.join(ESTIMATORS)}."
                                 f"{close_matches(self.estimator, ESTIMATORS)}")
        return self


class DataSpec(_Strict):
    name: str
    target: str | None = None
    seed: int = 0
    flat: bool | None = None
    limit: int | None = Field(None, ge=1, description="measure on the first N test rows only (faster)")
    window: int | None = Field(None, ge=2, description="text for LMs: tokens per window (default 512)")


class MeasureSpec(_Strict):
    batch_size: int = Field(256, ge=1)
    threads: int = Field(2, ge=1, le=256)
    runs: int = Field(20, ge=1)
    warmup: int = Field(3, ge=0)


class SearchSpec(_Strict):
    trials: int = Field(20, ge=1)
    timeout_s: float | None = Field(None, gt=0)
    seed: int = 0
    space: dict[str, dict[str, Any]] = Field(default_factory=dict)
    storage: str | None = None

    @field_validator("space")
    @classmethod
    def _space(cls, space: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for key, dist in space.items():
            if "." not in key:
                raise ValueError(f"search key {key!r} must be STEP.FIELD, e.g. prune.ratio or quantize.method")
            if not (set(dist) <= {"low", "high", "log", "step"} and {"low", "high"} <= set(dist)) and \
                    not (set(dist) == {"choices"} and isinstance(dist["choices"], list) and dist["choices"]):
                raise ValueError(f"search space {key!r} must be {{low: A, high: B}} or {{choices: [...]}}, got {dist!r}")
        return space


class Recipe(_Strict):
    name: str = "recipe"
    model: ModelSpec
    data: DataSpec
    steps: list[dict[str, Any]] = Field(default_factory=list)
    tolerance: float = Field(0.01, gt=0, lt=1, description="relative quality loss allowed")
    objective: Literal["latency", "size", "throughput"] = "latency"
    measure: MeasureSpec = MeasureSpec()
    search: SearchSpec | None = None

    def step_list(self) -> list[tuple[str, dict[str, Any]]]:
        return [next(iter(s.items())) for s in self.steps]


def load_recipe(source: str | Path | dict[str, Any]) -> Recipe:
    """Read and strictly validate a recipe (a YAML path, YAML text or a dict), then check every step."""
    if isinstance(source, dict):
        data, lines, label = source, {}, "<recipe>"
    else:
        data, lines, label = load_yaml(source)
    if not isinstance(data, dict):
        raise ConfigError(f"{label}: a recipe is a mapping with keys model, data, steps, ...; got {type(data).__name__}")
    if label != "<recipe>":
        data = resolve_paths(data, Path(label).resolve().parent)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, lines, label)) from None
    for i, step in enumerate(recipe.steps):
        where = f"{label} line {lines[('steps', i)]}" if ("steps", i) in lines else label
        if not isinstance(step, dict) or len(step) != 1:
            raise ConfigError(f"{where}: steps[{i}] must be a mapping with one key, one of: {', '.join(STEPS)}")
        (kind, fields), = step.items()
        if kind not in STEPS:
            raise ConfigError(f"{where}: steps[{i}]: unknown step {kind!r}; allowed: {', '.join(STEPS)}."
                              f"{close_matches(kind, STEPS)}")
        if fields is not None and not isinstance(fields, dict):
            raise ConfigError(f"{where}: steps[{i}].{kind} takes a mapping of fields, got {fields!r}")
        try:
            parse_step(kind, fields or {})
        except ConfigError as exc:
            raise ConfigError(f"{where}: steps[{i}].{kind}: {exc}") from None
    return recipe


def resolve_paths(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A copy of ``data`` whose relative file paths are taken from the recipe's folder, not the cwd.

    The paths a recipe names: ``model.path``, ``data.name`` when it is a file (not a built-in data
    set name), and ``path`` of the models and base of a ``merge`` step.
    """
    from ..datasets import BUILTIN
    from ..datasets import FILE_SUFFIXES

    def fix(p: Any) -> Any:
        return str(folder / p) if isinstance(p, str) and p and not Path(p).expanduser().is_absolute() else p

    data = dict(data)
    if isinstance(data.get("model"), dict) and "path" in data["model"]:
        data["model"] = {**data["model"], "path": fix(data["model"]["path"])}
    spec = data.get("data")
    if isinstance(spec, dict) and isinstance(spec.get("name"), str) and spec["name"] not in BUILTIN and (
            Path(spec["name"]).suffix.lower() in FILE_SUFFIXES or "/" in spec["name"] or (folder / spec["name"]).exists()):
        data["data"] = {**spec, "name": fix(spec["name"])}
    if isinstance(data.get("steps"), list):
        data["steps"] = [_merge_paths(s, fix) for s in data["steps"]]
    return data


def _merge_paths(step: Any, fix: Any) -> Any:
    if not (isinstance(step, dict) and isinstance(step.get("merge"), dict)):
        return step
    fields = dict(step["merge"])
    if isinstance(fields.get("models"), dict):
        fields["models"] = {n: {**m, "path": fix(m["path"])} if isinstance(m, dict) and "path" in m else m
                            for n, m in fields["models"].items()}
    if isinstance(fields.get("base"), dict) and "path" in fields["base"]:
        fields["base"] = {**fields["base"], "path": fix(fields["base"]["path"])}
    return {**step, "merge": fields}


def _explain(exc: ValidationError, lines: dict, label: str) -> str:
    errors = exc.errors()
    # An unknown key explains the missing key beside it (a typo), so it is reported first.
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(err["loc"])
    key = ".".join(str(p) for p in loc) or "(top level)"
    line = None
    for n in range(len(loc), -1, -1):
        line = lines.get(loc[:n])
        if line:
            break
    where = f"{label} line {line}" if line else label
    if err["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = sorted(parent.model_fields) if parent else []
        hint = close_matches(str(loc[-1]), allowed)
        return f"{where}: unknown key {key!r}; allowed here: {', '.join(allowed)}.{hint}"
    if err["type"] == "missing":
        return f"{where}: missing key {key!r}; add it (see examples/ for complete recipes)"
    msg = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    shown = f" (got {value!r})" if not isinstance(value, dict | list) and value is not None else ""
    return f"{where}: {key}: {msg}{shown}"


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] = Recipe
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        for cand in (ann, *getattr(ann, "__args__", ())):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                model = cand
                break
        else:
            return None
    return model
