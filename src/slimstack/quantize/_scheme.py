"""What a quantization technique asks of a backend, in the backends' own terms.

A handler translates its config into a :class:`Scheme` (which activations stay float, which are
quantized at run time or from calibration ranges, how weights are grouped); the torch and ONNX
Runtime backends read only the scheme. So a backend never asks which config it was given, and a new
technique that fits an existing scheme needs no backend change.
"""

from __future__ import annotations

import dataclasses

__all__ = ["Scheme", "ACTIVATIONS"]

ACTIVATIONS = ("dynamic", "static", "float")


@dataclasses.dataclass(frozen=True)
class Scheme:
    """How weights and activations are quantized.

    ``activations``: "dynamic" (int8, range read at run time), "static" (int8, range fixed from
    calibration data by ``observer``) or "float" (weight-only: ``weight_bits`` codes with one scale
    per ``group_size`` inputs). ``optimize_graph`` fuses an encoder's ONNX graph; ``try_unfused`` has
``backend="auto"`` also build and time the unfused graph. ``technique`` is the config's name, for
messages.
    """

    technique: str
    activations: str
    per_channel: bool = True
    reduce_range: bool = False
    weight_bits: int = 8
    group_size: int = 128
    embedding_bits: int | str = 8
    observer: str = "minmax"
    percentile: float = 99.99
    smoothquant_alpha: float = 0.0
    calibration_size: int = 512  # calibration rows kept (static ranges, mixed embedding tables, timing)
    fuse_layers: bool = False
    optimize_graph: bool = False
    try_unfused: bool = False
    skip: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.activations not in ACTIVATIONS:
            raise ValueError(f"Scheme.activations={self.activations!r}; choose one of {ACTIVATIONS}")

    @property
    def weight_only(self) -> bool:
        return self.activations == "float"

    @property
    def static(self) -> bool:
        return self.activations == "static"

    def replace(self, **changes) -> Scheme:
        return dataclasses.replace(self, **changes)
