"""Order statistics: a run of ascending, non-negative symbols coded value by value as the least
of the run's remaining values (`coding.SORTED`).

Every value is drawn from the tensor's model folded onto x >= 0; given the previous value
of its run and how many values remain, the next is the least of the remaining draws. That
saves the sign of each value and log2(n!) bits per run of n, which is what the network's
freedom to flip and permute its neurons would otherwise waste. The tables are computed
with IEEE-754 basic operations alone, so every machine's decoder rebuilds them bit for bit.
"""

from __future__ import annotations

import math

import constriction
import numpy as np

from .errors import TincFormatError

# a SORTED tensor's values times its support: bounds the tables a forged file can make a decoder build
MAX_SORTED_ENTRIES = 1 << 25
_LN2 = 0.6931471805599453


def runs_fit(runs: np.ndarray, size: int, high: int) -> bool:
    """Whether runs of these lengths cover `size` values whose tables stay within bounds."""
    return int(runs.sum()) == size and size * (high + 2) <= MAX_SORTED_ENTRIES


def sortable(symbols: np.ndarray, runs: np.ndarray, high: int) -> bool:
    """Whether `symbols` are ascending, non-negative runs of the given lengths, with tables in bounds."""
    runs = np.asarray(runs, dtype=np.int64)
    if not symbols.size or not runs_fit(runs, symbols.size, high):
        return False
    starts = np.repeat(np.cumsum(runs) - runs, runs)
    rising = np.diff(symbols, prepend=0) >= 0
    return bool(symbols.min() >= 0 and np.all(rising | (np.arange(symbols.size) == starts)))


# One table per symbol, given when coding: constriction then builds each model lazily, with
# the same semantics as a `Categorical(table, perfect=False)` per run.
PER_SYMBOL_TABLES = constriction.stream.model.Categorical(perfect=False)
TABLE_ENTRIES = 1 << 20  # rows x columns of the tables built at once, which bounds their memory


def _coding_order(k: np.ndarray, keys: np.ndarray, run: np.ndarray) -> np.ndarray:
    """The order in which a `SORTED` tensor's values are coded: step k takes the k-th value of
    every run longer than k; within a step, runs sharing a (previous value, values left) key
    come together, keys ascending, then runs in order."""
    return np.lexsort((run, keys, k))


def _keys(previous: np.ndarray, remaining: np.ndarray, longest: int) -> np.ndarray:
    return previous * (longest + 1) + remaining


def _tables(tails: np.ndarray, keys: np.ndarray, longest: int) -> np.ndarray:
    """Per key, P(least of the remaining draws = x | all >= the previous value), x = 0 .. high;
    callers pass at most one of `_row_blocks` of keys, which bounds the tables' memory."""
    unique, inverse = np.unique(keys, return_inverse=True)
    return _least_of(tails, unique // (longest + 1), unique % (longest + 1))[inverse]


def _row_blocks(count: int, width: int) -> list[slice]:
    rows = max(1, TABLE_ENTRIES // max(width, 1))
    return [slice(start, start + rows) for start in range(0, count, rows)]


def encode_pieces(symbols: np.ndarray, runs: np.ndarray, gaussian: bool, sigma: float, high: int) -> list[tuple]:
    """(symbols, model, tables) in `_coding_order`, for the encoder, which knows every
    previous value and so builds every step's tables at once."""
    starts = np.cumsum(runs) - runs
    run = np.repeat(np.arange(len(runs)), runs)
    k = np.arange(symbols.size) - starts[run]
    previous = np.where(k > 0, np.roll(symbols.astype(np.int64), 1), 0)
    longest = int(runs.max())
    keys = _keys(previous, runs[run] - k, longest)
    order = _coding_order(k, keys, run)
    tails = _tail_masses(gaussian, sigma, high)
    return [(symbols[order[block]], PER_SYMBOL_TABLES, _tables(tails, keys[order[block]], longest))
            for block in _row_blocks(symbols.size, high + 1)]


def _tail_masses(gaussian: bool, sigma: float, high: int) -> np.ndarray:
    """S(x) = P(|symbol| >= x) up to a factor, for x = 0 .. high + 1, under the folded model
    (Gaussian or Laplace of scale `sigma`): the density sampled at the integers (q^(x^2) for
    a Gaussian, r^x for a Laplace), from basic operations alone."""
    ratio = exp(-0.5 / (sigma * sigma)) if gaussian else exp(-1.0 / sigma)
    if gaussian:  # density(x + 1) / density(x) = q^(2x + 1)
        factors = np.cumprod(np.concatenate([[ratio], np.full(high - 1, ratio * ratio)]))
    else:
        factors = np.full(high, ratio)
    density = np.cumprod(np.concatenate([[1.0], factors]))
    density[1:] *= 2  # both signs fold onto x > 0
    density = np.maximum(density, 1e-300)  # so that no tail is empty
    return np.append(np.cumsum(density[::-1])[::-1], 0.0)


def _least_of(tails: np.ndarray, previous: np.ndarray, remaining: np.ndarray) -> np.ndarray:
    """Per row, P(least of `remaining` draws = x | all >= `previous`), x = 0 .. high."""
    fraction = np.minimum(tails[None, :] / tails[previous][:, None], 1.0)
    power, exponent = np.ones_like(fraction), remaining.astype(np.int64)
    while exponent.any():  # by squaring, with the same products on every machine
        power = np.where((exponent & 1)[:, None] == 1, power * fraction, power)
        fraction, exponent = fraction * fraction, exponent >> 1
    return power[:, :-1] - power[:, 1:]


def exp(y: float) -> float:
    """e^y for y <= 0 by a fixed series: C libraries' `exp` may differ in the last bit."""
    if y < -745:
        return 0.0
    octaves = round(y / _LN2)
    rest, term, total = y - octaves * _LN2, 1.0, 1.0
    for n in range(1, 20):
        term = term * rest / n
        total += term
    return math.ldexp(total, octaves)



def decode(coder, gaussian: bool, sigma: float, high: int, size: int, runs, index: int) -> np.ndarray:
    """The symbols of a `SORTED` tensor, decoded step by step in `_coding_order`: a step's
    tables depend on the values the step before decoded."""
    runs = None if runs is None else np.asarray(runs, dtype=np.int64)
    if runs is None or not runs_fit(runs, size, high):
        raise TincFormatError(f"weight tensor {index} cannot be coded as sorted runs")
    starts, symbols = np.cumsum(runs) - runs, np.zeros(size, dtype=np.int64)
    previous, longest = np.zeros(len(runs), dtype=np.int64), int(runs.max(initial=0))
    tails = _tail_masses(gaussian, sigma, high)
    for k in range(longest):
        active = np.flatnonzero(runs > k)
        keys = _keys(previous[active], runs[active] - k, longest)
        order = _coding_order(np.zeros_like(keys), keys, active)
        active, keys = active[order], keys[order]
        for block in _row_blocks(active.size, high + 1):
            previous[active[block]] = coder.decode(PER_SYMBOL_TABLES, _tables(tails, keys[block], longest))
        symbols[starts[active] + k] = previous[active]
    return symbols
