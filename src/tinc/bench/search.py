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
    search = _Evaluations(measure, _quality_scale(best, smallest, log, integer), target)
    grid = max(2, grid)
    grid_us = [1.0] + [i / (grid - 1) for i in range(grid - 2, -1, -1)]
    feasible_us = [u for u in grid_us if search.feasible(search.at(u))]
    if not feasible_us:
        return SearchResult(None, None, search.max_ratio(), search.order)
    hi = min(feasible_us)
    if hi > 0:
        hi = _bisect(search, max(u for u in grid_us if u < hi), hi, max_evals, tol, rtol, integer)
    chosen = _choose(search, search.quality_at(hi), score, n_score)
    return SearchResult(chosen, search.ratios[chosen], search.max_ratio(), search.order)


def _quality_scale(best: float, smallest: float, log: bool, integer: bool) -> Callable[[float], float]:
    """The setting at u in [0, 1], from `best` (u = 0) to `smallest` (u = 1)."""

    def quality_at(u: float) -> float:
        if log:
            q = math.exp(math.log(best) + u * (math.log(smallest) - math.log(best)))
        else:
            q = best + u * (smallest - best)
        return float(round(q)) if integer else q

    return quality_at


class _Evaluations:
    """The search's measurements: each setting's ratio measured once, in measuring order,
    and the u at which each setting was first reached."""

    def __init__(self, measure: Callable[[float], float | None], quality_at: Callable[[float], float], target: float):
        self.measure, self.quality_at, self.target = measure, quality_at, target
        self.ratios: dict[float, float | None] = {}
        self.order: list[tuple[float, float | None]] = []
        self.position: dict[float, float] = {}

    def at(self, u: float) -> float | None:
        """The ratio of the setting at `u`."""
        q = self.quality_at(u)
        self.position.setdefault(q, u)
        if q not in self.ratios:
            self.ratios[q] = self.measure(q)
            self.order.append((q, self.ratios[q]))
        return self.ratios[q]

    def feasible(self, ratio: float | None) -> bool:
        return ratio is not None and ratio >= self.target

    def max_ratio(self) -> float | None:
        reached = [r for r in self.ratios.values() if r is not None]
        return max(reached) if reached else None


def _bisect(search: _Evaluations, lo: float, hi: float, max_evals: int, tol: float, rtol: float, integer: bool) -> float:
    """Narrow the bracket from `lo` (infeasible) to `hi` (feasible); returns its feasible end."""
    while len(search.ratios) < max_evals and hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if integer and search.quality_at(mid) in (search.quality_at(lo), search.quality_at(hi)):
            break
        ratio = search.at(mid)
        if search.feasible(ratio):
            hi = mid
            if ratio <= search.target * (1 + rtol):
                break
        else:
            lo = mid
    return hi


def _choose(search: _Evaluations, chosen: float, score: Callable[[float], float] | None, n_score: int) -> float:
    """`chosen`, or with `score` the best scored of the `n_score` feasible settings closest to the best."""
    candidates = sorted((q for q, r in search.ratios.items() if search.feasible(r)), key=lambda q: search.position[q])
    if score is None or len(candidates) <= 1:
        return chosen
    candidates = candidates[: max(1, n_score)]
    scores = {q: score(q) for q in candidates}
    return max(candidates, key=lambda q: (scores[q], -search.position[q]))
