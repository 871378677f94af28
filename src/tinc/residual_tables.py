"""The token tables of the residual coder (`tinc.residual_coder`): one per context in use,
stored either as frequencies or as the scale of a Laplace distribution of the errors,
whichever makes table and tokens smaller.

A token is the zigzagged error u itself below `DIRECT`, else its bit length n (5 .. 64) and
the bit below the leading one, with the n - 1 lower bits raw. Under a Laplace distribution of
the error, P(e) proportional to t^|e| (so P(u) to t^ceil(u/2)), a token covering u in
[U, U + L) has mass t^(U/2) (1 + t) (1 - t^(L/2)) / (1 - t). The stored byte v gives the
scale: t = exp(-2^(-(v - 64) / 8)). Powers, exponentials and the masses are computed with
IEEE-754 basic operations alone (`sorted_runs.exp`), so every decoder builds the same table.

Stored table: varint context id (ascending) | varint L | L varint frequencies (L from 1 to
`TOKENS`, each at most `TABLE_TOTAL`, the last not 0), or L = 0 and the byte v.
"""

from __future__ import annotations

import functools
import math

import constriction
import numpy as np

from .bitstream import Reader, varint
from .errors import TincFormatError
from .sorted_runs import exp

DIRECT = 16  # tokens below this are the zigzagged error itself
TOKENS = DIRECT + 2 * (64 - 4)  # then two per bit length 5 .. 64
TABLE_TOTAL = 1 << 16  # stored frequencies are scaled to at most this sum
SCALES = 256
_LN2 = 0.6931471805599453


def _power(base: float, exponent: int) -> float:
    """base^exponent by squaring: the same products on every machine."""
    result = 1.0
    while exponent:
        if exponent & 1:
            result *= base
        base, exponent = base * base, exponent >> 1
    return result


@functools.cache
def laplace(v: int) -> np.ndarray:
    """Token probabilities (float64, summing to 1 up to rounding) of the Laplace scale byte `v`."""
    octave, rest = divmod(v - 64, 8)
    t = exp(-math.ldexp(exp(-rest / 8 * _LN2), -octave))
    mass = [_power(t, (u + 1) // 2) for u in range(DIRECT)]
    for token in range(DIRECT, TOKENS):
        n, bit = 4 + (token - DIRECT) // 2, (token - DIRECT) & 1
        start, length = (1 << n) + bit * (1 << (n - 1)), 1 << (n - 1)
        mass.append(_power(t, start // 2) * (1 + t) * (1 - _power(t, length // 2)) / (1 - t) if t < 1 else 0.0)
    mass = np.array(mass)
    return mass / mass.sum()


@functools.cache
def _laplace_bits() -> np.ndarray:
    """[SCALES, TOKENS] -log2 P under each scale (for the encoder's choice only)."""
    return -np.log2(np.maximum(np.stack([laplace(v) for v in range(SCALES)]), 1e-300))


def _scaled(counts: np.ndarray) -> tuple[np.ndarray, float]:
    """Frequencies to store: the counts, or scaled down to a sum of 2^8 .. TABLE_TOTAL
    (a used token keeps at least 1), whichever costs fewest bytes of table and of tokens;
    and those bytes."""
    total = int(counts.sum())
    best, used = None, counts > 0
    for bits in range(8, TABLE_TOTAL.bit_length()):
        frequencies = counts if total <= 1 << bits else np.where(used, np.maximum(counts * (1 << bits) // total, 1), 0)
        length = int(np.flatnonzero(frequencies)[-1]) + 1
        table = sum(len(varint(int(f))) for f in frequencies[:length]) + len(varint(length))
        coded = float((counts[used] * np.log2(frequencies.sum() / frequencies[used])).sum()) / 8
        if best is None or table + coded < best[1]:
            best = (frequencies[:length], table + coded)
        if total <= 1 << bits:
            break
    return best


def _model(probabilities: np.ndarray):
    """A table's model (constriction needs two entries: one alone gets an unused second)."""
    if probabilities.size == 1:
        probabilities = np.append(probabilities, 0.0)
    return constriction.stream.model.Categorical(probabilities, perfect=False)


def write_tables(counts: np.ndarray) -> tuple[bytes, dict[int, object]]:
    """[contexts, TOKENS] counts: the stored tables of the contexts in use, and their models."""
    out, models = bytearray(), {}
    used = np.flatnonzero(counts.sum(axis=1))
    out += varint(len(used))
    for context in used:
        frequencies, explicit = _scaled(counts[context])
        scale_bits = _laplace_bits() @ counts[context]
        v = int(np.argmin(scale_bits))
        out += varint(int(context))
        if 2 + scale_bits[v] / 8 < explicit:
            out += varint(0) + bytes([v])
            models[int(context)] = _model(laplace(v))
        else:
            out += varint(frequencies.size) + b"".join(varint(int(f)) for f in frequencies)
            models[int(context)] = _model(frequencies / float(frequencies.sum()))
    return bytes(out), models


def read_tables(reader: Reader, contexts: int) -> dict[int, object]:
    """The models of the stored tables, by context id (below `contexts`)."""
    models, previous = {}, -1
    count = reader.varint()
    if count > contexts:
        raise TincFormatError("CORR section: too many tables")
    for _ in range(count):
        context, length = reader.varint(), reader.varint()
        if not previous < context < contexts or length > TOKENS:
            raise TincFormatError("CORR section: invalid table")
        if length == 0:
            models[context] = _model(laplace(reader.byte()))
        else:
            frequencies = [reader.varint() for _ in range(length)]
            if max(frequencies) > TABLE_TOTAL or frequencies[-1] == 0:
                raise TincFormatError("CORR section: invalid table")
            frequencies = np.array(frequencies, dtype=np.int64)
            models[context] = _model(frequencies / float(frequencies.sum()))
        previous = context
    return models
