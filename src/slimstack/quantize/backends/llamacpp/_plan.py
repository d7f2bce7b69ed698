"""What to quantize how: calibration windows, per-layer sensitivity and the bits-per-weight budget.

The sensitivity of every tensor is measured, not guessed (:mod:`._sensitivity`): the KL divergence of
the model's next-token distributions to the float model's when it alone takes its base-format
values. A wider format scales a tensor's KLD by its own output-error ratio ``tr(dW H dW^T)``. A
greedy pass then moves the tensor with the best KLD saved per extra bit to its next wider format
until the budget is spent.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ....errors import ConfigError, DataError
from ._grids import FORMATS as GRIDS
from ._kquants import QK_K

__all__ = ["calibration_windows", "check_group_size", "layer_of", "ladder", "allocate", "kld", "EMBED"]

EMBED = "model.embed_tokens.weight"


def _texts(data: Any, what: str) -> list[str]:
    if isinstance(data, str):
        return [data]
    for attr in ("texts", "X"):
        if hasattr(data, attr) and not isinstance(data, list | tuple):
            data = getattr(data, attr)
            break
    try:
        texts = [str(t) for t in data]
    except TypeError:
        raise DataError(f"{what} must be text: a str, a list of str or an LM text dataset, "
                        f"got {type(data).__name__}") from None
    return texts


def calibration_windows(tokenizer: Any, data: Any, window: int, limit: int, seed: int,
                        what: str = "calibration") -> list[torch.Tensor]:
    """Token windows of ``window`` ids cut from the texts (joined by end-of-sequence), ``limit`` at most, seeded."""
    texts = [t for t in _texts(data, what) if t.strip()]
    if not texts:
        raise DataError(f"{what} text is empty; pass a few hundred windows' worth of representative text "
                        "(e.g. ss.datasets.load('notes.txt') or a list of str)")
    eos = getattr(tokenizer, "eos_token_id", None)
    ids: list[int] = []
    for t in texts:
        ids += list(tokenizer(t)["input_ids"]) + ([eos] if eos is not None else [])
    n = len(ids) // window
    if n == 0:
        if len(ids) < 8:
            raise DataError(f"{what} text has {len(ids)} tokens; pass at least {window} tokens")
        return [torch.tensor(ids, dtype=torch.long)]
    order = np.random.default_rng(seed).permutation(n)[:limit] if n > limit else np.arange(n)
    return [torch.tensor(ids[i * window:(i + 1) * window], dtype=torch.long) for i in sorted(order)]


def check_group_size(model: nn.Module, names: list[str], group: int) -> None:
    """A group size that does not divide a layer's input size is an error naming the layer and sizes that fit."""
    from ..._configs import GROUP_SIZES

    mods = dict(model.named_modules())
    bad = [(n, mods[n].in_features) for n in names if mods[n].in_features % group]
    if bad:
        ins = sorted({mods[n].in_features for n in names})
        fits = [g for g in GROUP_SIZES if all(i % g == 0 for i in ins)]
        raise ConfigError(f"WeightOnly.group_size={group} does not divide the input size of {bad[0][0]!r} "
                          f"(in_features={bad[0][1]}){f' and {len(bad) - 1} more layers' if len(bad) > 1 else ''}; "
                          f"group sizes that fit every layer (inputs {ins}): {fits or 'none'}")


def layer_of(name: str) -> str:
    """'model.layers.3.mlp.up_proj' -> 'model.layers.3'; the embedding is its own unit."""
    parts = name.split(".")
    return ".".join(parts[:3]) if len(parts) > 3 and parts[1] == "layers" else name


def ladder(base: str, bits: int, in_features: int = 0, kquants: bool = False) -> list[str]:
    """Formats a tensor may take, narrowest first: the base, then wider steps of the same kind.

    With ``kquants`` (a bits-per-weight budget on the llama.cpp backend) a symmetric base on a layer whose
    input size is a multiple of 256 climbs the K-quants instead (Q4_K 4.5, Q5_K 5.5, Q6_K 6.56 bits).
    """
    if bits == 8:
        return ["Q8_0"]
    if kquants and in_features and in_features % QK_K == 0 and base in ("Q4_0", "IQ4_NL", "Q5_0"):
        return {"Q4_0": ["Q4_K", "Q5_K", "Q6_K", "Q8_0"], "IQ4_NL": ["IQ4_NL", "Q5_K", "Q6_K", "Q8_0"],
                "Q5_0": ["Q5_K", "Q6_K", "Q8_0"]}[base]
    return {"Q4_0": ["Q4_0", "Q5_0", "Q8_0"], "IQ4_NL": ["IQ4_NL", "Q5_0", "Q8_0"], "Q4_1": ["Q4_1", "Q5_1", "Q8_0"],
            "Q5_0": ["Q5_0", "Q8_0"], "Q5_1": ["Q5_1", "Q8_0"]}[base]


def kld(ref: np.ndarray, lp: np.ndarray) -> float:
    """Mean over positions of KL(ref || lp), both log-probabilities (positions, vocab)."""
    p = np.exp(ref.astype(np.float64))
    return float((p * (ref.astype(np.float64) - lp.astype(np.float64))).sum(-1).mean())


def allocate(numel: dict[str, int], errors: dict[str, dict[str, float]], base_kld: dict[str, float],
             ladders: dict[str, list[str]], budget_bpw: float) -> dict[str, str]:
    """Greedy mixed precision: a format per tensor under an average of ``budget_bpw`` bits per weight.

    ``base_kld`` is each tensor's measured KLD at its base format (the first of its ladder); a wider
    format scales it by the ratio of the tensor's output errors ``errors[n][fmt] / errors[n][base]``.
    The tensor with the most KLD saved per extra bit moves up one step until no step fits the budget.
    """
    def est(n: str, fmt: str) -> float:
        base = errors[n][ladders[n][0]] or 1e-30
        return base_kld.get(n, 0.0) * errors[n][fmt] / base

    level = {n: 0 for n in numel}
    total = sum(numel.values())
    bits = sum(numel[n] * GRIDS[ladders[n][0]].bpw for n in numel)
    limit = budget_bpw * total
    if bits > limit + 1e-6:
        raise ConfigError(f"WeightOnly.bits_per_weight={budget_bpw} is below the base format's "
                          f"{bits / total:.3f} bits per weight; raise it or choose a narrower format")
    while True:
        best, best_gain = None, 0.0
        for n in numel:
            lad = ladders[n]
            if level[n] + 1 >= len(lad):
                continue
            cur, nxt = lad[level[n]], lad[level[n] + 1]
            extra = numel[n] * (GRIDS[nxt].bpw - GRIDS[cur].bpw)
            if bits + extra > limit:
                continue
            gain = (est(n, cur) - est(n, nxt)) / extra
            if gain > best_gain:
                best, best_gain = n, gain
        if best is None:
            break
        lad = ladders[best]
        bits += numel[best] * (GRIDS[lad[level[best] + 1]].bpw - GRIDS[lad[level[best]]].bpw)
        level[best] += 1
    return {n: ladders[n][level[n]] for n in numel}
