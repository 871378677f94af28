"""`--target-psnr`: the smallest file that reaches a fidelity, found by searching the ratio;
`--max-error` alone: the network's ratio that makes network + correction smallest.

Each trial is a whole compression at one ratio, so a search costs a few fits (about
`2 + log2(bracket / tolerance)`); `--time-limit` bounds each of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import encoder, metrics
from .config import TincConfig
from .decoder import Decoder
from .encoder import EncodeReport
from .errors import TincConfigError

RATIO_STEP = 4.0  # factor between trials while bracketing
RATIO_TOLERANCE = 1.15  # stop bisecting when the bracket is narrower than this factor
MIN_RATIO = 1.5
MAX_RATIO = 1 << 16


@dataclass
class Trial:
    ratio: float
    nbytes: int
    psnr: float


@dataclass
class TargetSearch:
    """The trials of one search, in order, and the one chosen (the smallest that passed)."""

    target: float
    trials: list[Trial] = field(default_factory=list)
    chosen: Trial | None = None


def compress_to_psnr(array: np.ndarray, config: TincConfig, metadata: dict | None,
                     starts: Sequence[encoder.LearnedStart] = ()) -> tuple[bytes, EncodeReport]:
    """Bracket the ratio by factors of `RATIO_STEP` from `config.ratio`, then bisect (in log
    ratio) down to `RATIO_TOLERANCE`; return the smallest file whose PSNR (peak of the dtype,
    as `tinc eval`) reaches `config.target_psnr`, and its report, which holds the trials."""
    target = float(config.target_psnr)
    search = TargetSearch(target)
    results: dict[float, tuple[bytes, EncodeReport]] = {}

    def say(message: str) -> None:
        encoder.say(config, message)

    def trial(ratio: float) -> bool:
        try:
            data, report = encoder.encode(array, config.replace(ratio=ratio, target_psnr=None), metadata, starts)
        except TincConfigError as error:  # no tree fits this budget: the ratio is too high
            say(f"target {target:g} dB: ratio {ratio:.1f}x fails ({error})")
            return False
        psnr = metrics.psnr(array, Decoder(data, device=config.device).decode())
        search.trials.append(Trial(ratio, len(data), psnr))
        results[ratio] = (data, report)
        say(f"target {target:g} dB: ratio {ratio:.1f}x -> {len(data)} bytes, PSNR {psnr:.2f} dB")
        return psnr >= target

    low, high = None, None  # the largest passing ratio, the smallest failing one
    ratio = min(max(config.ratio, MIN_RATIO), MAX_RATIO)
    while True:
        if trial(ratio):
            low = ratio
            if high is not None or ratio >= MAX_RATIO:
                break
            ratio = min(ratio * RATIO_STEP, MAX_RATIO)
        else:
            high = ratio
            if low is not None:
                break
            if ratio <= MIN_RATIO:
                best = max((t for t in search.trials), key=lambda t: t.psnr, default=None)
                reached = f"; the best was {best.psnr:.2f} dB at {best.ratio:.1f}x" if best else ""
                raise TincConfigError(f"target PSNR {target:g} dB not reached even at ratio {MIN_RATIO:g}{reached}")
            ratio = max(ratio / RATIO_STEP, MIN_RATIO)
    while high is not None and high / low > RATIO_TOLERANCE:
        middle = math.sqrt(low * high)
        if trial(middle):
            low = middle
        else:
            high = middle
    passing = [t for t in search.trials if t.psnr >= target]
    search.chosen = min(passing, key=lambda t: t.nbytes)
    data, report = results[search.chosen.ratio]
    report.target_search = search
    return data, report


# The network ratios a `max_error` search starts from and may reach: below 4x a network costs
# more than most residuals, above 4096x it holds almost nothing.
MAX_ERROR_START, MAX_ERROR_RATIOS = 64.0, (4.0, 4096.0)


def smallest_file(array: np.ndarray, config: TincConfig, metadata: dict | None,
                  starts: Sequence[encoder.LearnedStart] = ()) -> tuple[bytes, EncodeReport]:
    """For a `max_error` without a ratio: fit networks at ratios a factor 4 apart from
    `MAX_ERROR_START`, walking toward the smaller whole file until it grows, then once more
    a factor 2 either side of the best; return the smallest file and its report. A few
    whole fits (`--time-limit` bounds each); every file meets the bound."""
    results: dict[float, tuple[bytes, EncodeReport]] = {}
    trials: list[tuple[float, int, int]] = []

    def say(message: str) -> None:
        encoder.say(config, message)

    def size(ratio: float) -> float:
        if ratio in results:
            return len(results[ratio][0])
        try:
            data, report = encoder.encode(array, config.replace(ratio=ratio), metadata, starts)
        except TincConfigError as error:  # no tree fits this budget
            say(f"max error: network ratio {ratio:.1f}x fails ({error})")
            return math.inf
        results[ratio] = (data, report)
        trials.append((ratio, report.network_bytes, len(data)))
        say(f"max error: network ratio {ratio:.1f}x -> {report.network_bytes} + "
            f"{len(data) - report.network_bytes} bytes of correction = {len(data)} bytes")
        return len(data)

    def clamp(ratio: float) -> float:
        return min(max(ratio, MAX_ERROR_RATIOS[0]), MAX_ERROR_RATIOS[1])

    ratio = MAX_ERROR_START
    best = size(ratio)
    for factor in (RATIO_STEP, 1 / RATIO_STEP):  # up while it shrinks; if it never did, down
        moved = False
        while clamp(ratio * factor) != ratio:
            candidate = size(clamp(ratio * factor))
            if candidate >= best:
                break
            ratio, best, moved = clamp(ratio * factor), candidate, True
        if moved:
            break
    for factor in (2.0, 0.5):
        if clamp(ratio * factor) != ratio:
            candidate = size(clamp(ratio * factor))
            if candidate < best:
                ratio, best = clamp(ratio * factor), candidate
    if not results:
        raise TincConfigError("max error: no network ratio between 4x and 4096x fits this array")
    data, report = min(results.values(), key=lambda pair: len(pair[0]))
    report.ratio_trials = trials
    return data, report
