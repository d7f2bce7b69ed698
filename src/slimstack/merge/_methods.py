"""Weight-space merging rules as pure functions on state dicts.

A state dict here is ``dict[str, np.ndarray]`` (float64), the same keys and shapes in every input;
:mod:`._adapters` converts PyTorch modules and scikit-learn MLPs to and from it. Nothing here
knows which framework the weights came from, and no input array is modified.

References
----------
Wortsman et al. 2022, "Model soups" (uniform and greedy soup);
Ilharco et al. 2023, "Editing models with task arithmetic";
Yadav et al. 2023, "TIES-Merging: resolving interference when merging models".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["uniform_soup", "greedy_soup", "task_vectors", "task_arithmetic", "ties_merge", "trim_top_k"]

State = dict[str, np.ndarray]


def uniform_soup(states: Sequence[State], keys: Sequence[str] | None = None) -> State:
    """Element-wise mean of the states (of ``keys`` only, when given).

    >>> uniform_soup([{"w": np.array([1.0])}, {"w": np.array([3.0])}])["w"]
    array([2.])
    """
    keys = list(states[0]) if keys is None else list(keys)
    return {k: np.mean([s[k] for s in states], axis=0) for k in keys}


def greedy_soup(
    states: Sequence[State],
    evaluate: Callable[[State], float],
    keys: Sequence[str] | None = None,
) -> tuple[State, dict[str, Any]]:
    """Greedy soup (Wortsman et al. 2022, Algorithm 1).

    Ingredients are ranked by their own validation score (``evaluate``, higher is better); the soup
    starts with the best one and each next ingredient stays only if the uniform average of the soup
    with it scores strictly higher than the soup without it. Returns the soup and a record with the
    individual scores, the order tried, the ingredients kept and the score after each step.
    """
    scores = [float(evaluate(s)) for s in states]
    order = sorted(range(len(states)), key=lambda i: (-scores[i], i))
    kept = [order[0]]
    soup = dict(states[order[0]]) if keys is None else {k: states[order[0]][k] for k in keys}
    best = scores[order[0]]
    steps = [{"tried": order[0], "score": best, "kept": True}]
    for i in order[1:]:
        candidate = uniform_soup([states[j] for j in kept + [i]], keys)
        score = float(evaluate(candidate))
        keep = score > best
        steps.append({"tried": i, "score": score, "kept": keep})
        if keep:
            kept.append(i)
            soup, best = candidate, score
    return soup, {"individual_scores": scores, "order": order, "kept": sorted(kept), "soup_score": best,
                  "steps": steps}


def task_vectors(base: State, states: Sequence[State], keys: Sequence[str] | None = None) -> list[State]:
    """``theta_i - theta_base`` for every state (Ilharco et al. 2023)."""
    keys = list(base) if keys is None else list(keys)
    return [{k: s[k] - base[k] for k in keys} for s in states]


def task_arithmetic(base: State, states: Sequence[State], scaling: float, keys: Sequence[str] | None = None) -> State:
    """``theta_base + scaling * sum_i (theta_i - theta_base)``.

    >>> base = {"w": np.zeros(2)}
    >>> task_arithmetic(base, [{"w": np.array([1.0, 0.0])}, {"w": np.array([0.0, 2.0])}], 0.5)["w"]
    array([0.5, 1. ])
    """
    taus = task_vectors(base, states, keys)
    return {k: base[k] + scaling * np.sum([t[k] for t in taus], axis=0) for k in taus[0]}


def trim_top_k(tau: State, density: float) -> State:
    """Keep the ``density`` share of a task vector's entries with the largest magnitude, zero the rest.

    The cut is global over all of the vector's tensors (as in TIES), so layers that moved more keep more.
    """
    flat = np.concatenate([np.abs(v).ravel() for v in tau.values()])
    if flat.size == 0 or density >= 1.0:
        return {k: v.copy() for k, v in tau.items()}
    n_keep = int(np.ceil(density * flat.size))
    if n_keep == 0:
        return {k: np.zeros_like(v) for k, v in tau.items()}
    cut = np.partition(flat, flat.size - n_keep)[flat.size - n_keep]
    kept = {k: np.where(np.abs(v) >= cut, v, 0.0) for k, v in tau.items()}
    # ties at the cut could keep a few more than n_keep; drop the surplus in a fixed order
    surplus = int(sum(np.count_nonzero(np.abs(v) >= cut) for v in tau.values())) - n_keep
    if surplus > 0 and cut > 0:
        for k, v in kept.items():
            at_cut = np.flatnonzero((np.abs(tau[k]) == cut).ravel())
            drop = at_cut[:surplus]
            v.ravel()[drop] = 0.0
            surplus -= len(drop)
            if surplus <= 0:
                break
    return kept


def ties_merge(
    base: State,
    states: Sequence[State],
    density: float = 0.2,
    scaling: float = 1.0,
    keys: Sequence[str] | None = None,
) -> tuple[State, dict[str, Any]]:
    """TIES-Merging (Yadav et al. 2023): trim, elect sign, disjoint merge.

    1. Trim each task vector to its top ``density`` share of entries by magnitude.
    2. Elect, per entry, the sign of the summed trimmed values (the sign with more total mass).
    3. Average, per entry, only the trimmed values that agree with the elected sign (zeros and
       disagreeing values do not dilute the mean); add ``scaling`` times that to the base.

    >>> base = {"w": np.zeros(3)}
    >>> a, b = {"w": np.array([2.0, -1.0, 0.0])}, {"w": np.array([4.0, 3.0, 0.0])}
    >>> ties_merge(base, [a, b], density=1.0)[0]["w"]
    array([3., 3., 0.])
    """
    taus = [trim_top_k(t, density) for t in task_vectors(base, states, keys)]
    merged: State = {}
    per_tensor: dict[str, int] = {}
    for k in taus[0]:
        stack = np.stack([t[k] for t in taus])
        elected = np.sign(stack.sum(axis=0))
        agree = (np.sign(stack) == elected) & (stack != 0)
        count = agree.sum(axis=0)
        mean = np.where(count > 0, (stack * agree).sum(axis=0) / np.maximum(count, 1), 0.0)
        merged[k] = base[k] + scaling * mean
        nonzero = (stack != 0).sum(axis=0)
        per_tensor[k] = int(((nonzero > count) & (count > 0)).sum())
    kept = [int(sum(np.count_nonzero(v) for v in t.values())) for t in taus]
    total = int(sum(t.size for t in taus[0].values()))
    return merged, {"kept_per_task": kept, "entries": total, "sign_conflicts": sum(per_tensor.values()),
                    "sign_conflicts_per_tensor": per_tensor}
