"""The quality search: bisect a codec's setting for the best fidelity at a target ratio."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class SearchResult:
    """Outcome of `bisect_quality`: the chosen setting (None: target unreachable)."""

    quality: float | None
    ratio: float | None
    max_ratio: float | None
    """Largest ratio any evaluated setting reached (None when every evaluation failed)."""
    evaluations: list[tuple[float, float | None]] = field(default_factory=list)
    """(quality, ratio) in evaluation order; ratio None where the codec failed."""


def bisect_quality(
    measure: Callable[[float], float | None],
    target: float,
    best: float,
    smallest: float,
    *,
    log: bool = True,
    integer: bool = False,
    grid: int = 5,
    max_evals: int = 18,
    tol: float = 1e-3,
    rtol: float = 2e-3,
    score: Callable[[float], float] | None = None,
    n_score: int = 3,
) -> SearchResult:
    """Find the setting of best fidelity whose ratio `measure(q)` is >= `target`.

    `best` is the setting of best fidelity (largest output), `smallest` the one giving the
    smallest output; the search runs on u in [0, 1] between them (log-spaced when `log`).
    A coarse grid of `grid` points first (robust to codecs whose size is not monotone at the
    extremes), then bisection between the feasible grid point closest to `best` and its
    infeasible neighbour, until the bracket is narrower than `tol` (in u), the ratio is
    within `rtol` above the target, or `max_evals` evaluations were made. With `score`
    (higher is better, e.g. PSNR), the `n_score` feasible settings closest to `best` are
    scored and the best one is chosen; otherwise the feasible setting closest to `best`.
    """
    if log and (best <= 0 or smallest <= 0):
        raise ValueError("log-scaled quality ranges must be positive")

    def quality_at(u: float) -> float:
        if log:
            q = math.exp(math.log(best) + u * (math.log(smallest) - math.log(best)))
        else:
            q = best + u * (smallest - best)
        return float(round(q)) if integer else q

    ratios: dict[float, float | None] = {}
    order: list[tuple[float, float | None]] = []
    position: dict[float, float] = {}  # u at which a quality was first reached

    def evaluate(u: float) -> float | None:
        q = quality_at(u)
        position.setdefault(q, u)
        if q not in ratios:
            ratios[q] = measure(q)
            order.append((q, ratios[q]))
        return ratios[q]

    def feasible(ratio: float | None) -> bool:
        return ratio is not None and ratio >= target

    grid = max(2, grid)
    grid_us = [1.0] + [i / (grid - 1) for i in range(grid - 2, -1, -1)]
    grid_ratios = {u: evaluate(u) for u in grid_us}
    feasible_us = [u for u in grid_us if feasible(grid_ratios[u])]
    if not feasible_us:
        reached = [r for r in ratios.values() if r is not None]
        return SearchResult(None, None, max(reached) if reached else None, order)
    hi = min(feasible_us)
    if hi > 0:
        lo = max(u for u in grid_us if u < hi)
        while len(ratios) < max_evals and hi - lo > tol:
            mid = 0.5 * (lo + hi)
            if integer and quality_at(mid) in (quality_at(lo), quality_at(hi)):
                break
            ratio = evaluate(mid)
            if feasible(ratio):
                hi = mid
                if ratio <= target * (1 + rtol):
                    break
            else:
                lo = mid
    chosen = quality_at(hi)
    candidates = sorted((q for q, r in ratios.items() if feasible(r)), key=lambda q: position[q])
    if score is not None and len(candidates) > 1:
        candidates = candidates[: max(1, n_score)]
        scores = {q: score(q) for q in candidates}
        chosen = max(candidates, key=lambda q: (scores[q], -position[q]))
    reached = [r for r in ratios.values() if r is not None]
    return SearchResult(chosen, ratios[chosen], max(reached), order)
