"""Context coding of a correction's residuals (`correction.CONTEXT`).

The residuals are coded coarse to fine, as interpolation codecs do, in passes that numpy
runs whole: first the anchors (every `top`-th voxel along each spatial axis, `top` the least
power of two spanning the longest axis), then for each stride h = top, top/2, ..., 2 and each
spatial axis k in turn, the voxels halfway between two known ones along k (stride h/2 along
axes up to k, h beyond). Everything a pass's voxel is predicted and modelled from is known
before the pass: the two planes of known voxels either side of it along k.

Per pass the encoder picks one of `PREDICTORS` (stored, a byte per pass): zero (the network's
prediction alone), the mean of the two neighbours along k, the rounded mean of the 3^(d-1)
boxes of known voxels in both neighbouring planes, a 3:1 mix of the last two, or the cubic
through two neighbours either side. A voxel stores the prediction plus the whole number of
quantization steps that brings it nearest the residual (within half a step: the bound),
stored values counting whole steps or, with `shift` 4, sixteenths of a step, so that a
smooth residual between the steps is followed at no cost. That number is coded as a token
(values below 16 as they are, larger ones as their bit length and the bit below the leading
one) and raw low bits. A token's model depends on its context: the predictor, the mean
number of steps coded in those boxes (14 classes on a log scale) and a second activity
measure (4 classes, or 1: the mean magnitude of the known residuals for zero and box
predictors, the difference of the two neighbours along k for the others). One table per
context in use is stored (`tinc.residual_tables`); tokens go through one asymmetric numeral
system (constriction), raw bits follow as they are.

All of it is integer arithmetic on the stored values, so the decoder rebuilds predictions
and contexts bit for bit on any machine, without the network's prediction. The decoder needs
nothing sequential over voxels: a pass is a few array operations and one constriction call
per context present.

Where the original sits at the data's minimum (maximum), every value at or below (above) one
within the bound decodes within it, because the decoder clips there: the encoder then stores
the prediction itself when it lies on that side (`free_low`, `free_high`).
"""

from __future__ import annotations

import math

import constriction
import numpy as np

from .bitstream import Reader, varint
from .errors import TincFormatError
from .residual_tables import DIRECT, TOKENS, read_tables, write_tables

ZERO, LINEAR, BOX, MIX, CUBIC = 0, 1, 2, 3, 4
PREDICTORS = (ZERO, LINEAR, BOX, MIX, CUBIC)
ERROR_CLASSES, SIDE_CLASSES = 14, 4
CONTEXTS = ERROR_CLASSES * SIDE_CLASSES
MAX_MAGNITUDE = 1 << 36  # residuals beyond this many steps are left to the general-purpose coders
SHIFTS = (0, 4)  # fraction bits of the stored residuals: integers, or sixteenths of a step
_THRESHOLDS = 1 << np.arange(ERROR_CLASSES - 1, dtype=np.int64)
_NO_ACTIVITY = {"error": np.zeros((), np.int64), "size": np.zeros((), np.int64)}  # the anchors: nothing known yet


# ---------------------------------------------------------------------- passes
def top_stride(shape: tuple[int, ...]) -> int:
    """The anchors' stride: the least power of two at least the longest spatial axis less one."""
    longest = max(shape[:-1], default=1)
    top = 1
    while top < longest - 1:
        top *= 2
    return top


def schedule(shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """The passes after the anchors, (stride h, axis k), coarse to fine."""
    passes, h = [], top_stride(shape)
    while h >= 2:
        passes += [(h, k) for k in range(len(shape) - 1) if shape[k] > h // 2]
        h //= 2
    return passes


def _anchors(array: np.ndarray, top: int) -> np.ndarray:
    return array[tuple(slice(None, None, top) for _ in array.shape[:-1])]


def _lines(array: np.ndarray, h: int, k: int) -> np.ndarray:
    """The pass's view: stride h/2 along axes up to k, h beyond; axis k first, known voxels
    at even and the pass's voxels at odd positions along it."""
    index = tuple(slice(None, None, h // 2 if j <= k else h) for j in range(array.ndim - 1))
    return np.moveaxis(array[index], k, 0)


# ---------------------------------------------------------------------- predictions and contexts
def _box_sum(planes: np.ndarray) -> np.ndarray:
    """Sum over the 3-wide box along every axis but the first and the last (zero beyond the edges)."""
    total = planes.astype(np.int64)
    for axis in range(1, planes.ndim - 1):
        if total.shape[axis] > 1:
            shifted = total.copy()
            low = [slice(None)] * total.ndim
            high = [slice(None)] * total.ndim
            low[axis], high[axis] = slice(1, None), slice(None, -1)
            shifted[tuple(low)] += total[tuple(high)]
            shifted[tuple(high)] += total[tuple(low)]
            total = shifted
    return total


def _box_count(shape: tuple[int, ...]) -> np.ndarray:
    """How many voxels each box of `_box_sum` covers, broadcastable to `shape`."""
    count = np.ones((1,) * len(shape), dtype=np.int64)
    for axis in range(1, len(shape) - 1):
        per = np.full(shape[axis], min(3, shape[axis]), dtype=np.int64)
        if shape[axis] > 1:
            per[0] = per[-1] = 2
        count = count * per.reshape([-1 if a == axis else 1 for a in range(len(shape))])
    return count


def _both_planes(sums: np.ndarray, targets: int) -> np.ndarray:
    """Per target plane i: the box sums of known planes i and i + 1 (i alone at the far end)."""
    after = sums[1:targets + 1]
    if after.shape[0] < targets:
        after = np.concatenate([after, np.zeros_like(sums[:targets - after.shape[0]])])
    return sums[:targets] + after


def predict(lines: np.ndarray, errors: np.ndarray, shift: int) -> tuple[dict[int, np.ndarray], dict[str, np.ndarray]]:
    """The predictions of a pass's voxels (in 2^-shift steps), and the activity measures
    their contexts come from (in steps)."""
    known = lines[0::2]
    targets = lines.shape[0] // 2
    before = known[:targets]
    after = known[1:targets + 1]
    if after.shape[0] < targets:  # the last voxel of an axis of even length: one neighbour
        after = np.concatenate([after, before[after.shape[0]:]])
    count = np.broadcast_to(_box_count(known.shape), known.shape)
    count = _both_planes(count, targets)
    total = _both_planes(_box_sum(known), targets)
    linear = (before + after) >> 1
    box = (2 * total + count) // (2 * count)
    cubic = linear.copy()
    inner = known.shape[0] - 2  # targets 1 .. inner - 1 have two known voxels either side
    if inner > 1:
        cubic[1:inner] = (9 * (before[1:inner] + after[1:inner]) - known[:inner - 1] - known[3:inner + 2] + 8) >> 4
    predictions = {ZERO: np.zeros_like(linear), LINEAR: linear, BOX: box, MIX: (3 * box + linear) >> 2, CUBIC: cubic}
    activity = {"error": 16 * _both_planes(_box_sum(errors[0::2]), targets) // count,
                "size": (16 * _both_planes(_box_sum(np.abs(known)), targets) // count) >> shift,
                "slope": (16 * np.abs(before - after)) >> shift}
    return predictions, activity


def contexts(predictor: int, activity: dict[str, np.ndarray], shape: tuple[int, ...], sides: int = SIDE_CLASSES) -> np.ndarray:
    """Context ids (predictor x error class x side class), flat, for a pass's voxels; with
    `sides` 1, every side class is 0."""
    side = activity["size" if predictor in (ZERO, BOX) else "slope"]
    error_class = np.searchsorted(_THRESHOLDS, np.broadcast_to(activity["error"], shape).reshape(-1), side="right")
    side_class = np.minimum(np.searchsorted(_THRESHOLDS, np.broadcast_to(side, shape).reshape(-1), side="right") // 3,
                            sides - 1)
    return predictor * CONTEXTS + error_class * SIDE_CLASSES + side_class


# ---------------------------------------------------------------------- tokens
def tokens(errors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token, raw bit count and raw bits of each error (|error| <= MAX_MAGNITUDE)."""
    e = errors.reshape(-1).astype(np.int64)
    u = ((e << 1) ^ (e >> 63)).view(np.uint64)
    large = u >= DIRECT
    length = np.zeros(u.shape, dtype=np.int64)  # floor(log2 u), exact: u < 2^53
    length[large] = np.floor(np.log2(u[large].astype(np.float64))).astype(np.int64)
    length[large] -= (np.left_shift(np.uint64(1), length[large].astype(np.uint64)) > u[large]).astype(np.int64)
    width = np.where(large, length - 1, 0)
    shift = np.maximum(width, 0).astype(np.uint64)
    token = np.where(large, DIRECT + (length - 4) * 2 + ((u >> shift) & np.uint64(1)).astype(np.int64), u.astype(np.int64))
    raw = u & ((np.uint64(1) << shift) - np.uint64(1))
    return token.astype(np.int32), width, raw


def untokens(token: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """The errors back from tokens and raw bits (wrapping, never failing, on a forged file)."""
    token = token.astype(np.int64)
    large = token >= DIRECT
    length = (4 + (token - DIRECT) // 2).astype(np.uint64)
    lead = (np.uint64(2) | ((token - DIRECT) & 1).astype(np.uint64))
    u = np.where(large, (lead << (length - np.uint64(1))) | raw, token.astype(np.uint64))
    return ((u >> np.uint64(1)).astype(np.int64) ^ -(u & np.uint64(1)).astype(np.int64))


def raw_widths(token: np.ndarray) -> np.ndarray:
    token = token.astype(np.int64)
    return np.where(token >= DIRECT, 4 + (token - DIRECT) // 2 - 1, 0)


def pack_bits(width: np.ndarray, raw: np.ndarray) -> bytes:
    """The raw bits, each value's most significant first, values one after the other
    (a pass per bit position: memory stays a few bytes per value and a byte per bit)."""
    width = width.astype(np.int64)
    starts = np.cumsum(width) - width
    bits = np.zeros(int(width.sum()), dtype=np.uint8)
    for j in range(int(width.max(initial=0))):
        has = np.flatnonzero(width > j)
        bits[starts[has] + j] = ((raw[has] >> (width[has] - 1 - j).astype(np.uint64)) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bits).tobytes()


def unpack_bits(bits: np.ndarray, position: int, width: np.ndarray) -> tuple[np.ndarray, int]:
    """Raw values of `width` bits each from the unpacked `bits` at `position`, and the new position."""
    total = int(width.sum())
    if position + total > bits.size:
        raise TincFormatError("CORR section: raw bits are truncated")
    starts = position + np.cumsum(width) - width
    raw = np.zeros(width.size, dtype=np.uint64)
    for j in range(int(width.max(initial=0))):
        has = np.flatnonzero(width > j)
        raw[has] |= bits[starts[has] + j].astype(np.uint64) << (width[has] - 1 - j).astype(np.uint64)
    return raw, position + total


# ---------------------------------------------------------------------- encoding
def _entropy_bits(context: np.ndarray, token: np.ndarray) -> float:
    """Bits of `token` under one static table per context (the encoder's choice of predictor)."""
    counts = np.bincount(context.astype(np.int64) * TOKENS + token)
    keys = np.flatnonzero(counts)
    per_context = np.bincount(keys // TOKENS, weights=counts[keys])
    n = counts[keys].astype(np.float64)
    return float((n * (np.log2(per_context[keys // TOKENS]) - np.log2(n))).sum())


def _choose(original: np.ndarray, low: np.ndarray, high: np.ndarray, predictions: dict, activity: dict, sides: int,
            shift: int) -> tuple:
    """The cheapest predictor of a pass, with the residuals it stores (the nearest whole
    number of steps from the prediction; on the prediction's side where the decoder clips
    and that is free) and the tokens of those numbers of steps."""
    best = None
    for predictor, prediction in predictions.items():
        steps = np.rint(original - prediction / float(1 << shift)).astype(np.int64)
        steps = np.where(low, np.minimum(steps, 0), steps)
        steps = np.where(high, np.maximum(steps, 0), steps)
        token, width, raw = tokens(steps)
        context = contexts(predictor, activity, steps.shape, sides)
        bits = float(width.sum()) + _entropy_bits(context, token)
        if best is None or bits < best[0]:
            best = (bits, predictor, prediction + (steps << shift), steps, context, token, width, raw)
    return best[1:]


def encode(residual: np.ndarray, free_low: np.ndarray | None = None, free_high: np.ndarray | None = None) -> tuple[bytes, np.ndarray, int] | None:
    """Code `residual` (float64, in quantization steps, channels last) within half a step:
    the coded body, the stored residuals (int64, in 2^-shift steps) and shift; None when a
    residual is beyond MAX_MAGNITUDE steps. `free_low` (`free_high`) marks voxels where any
    smaller (larger) residual is within the bound too. Whole steps and sixteenths (which
    follow smooth residuals between the steps), with and without side classes: the smallest."""
    if residual.size == 0 or not np.all(np.abs(residual) <= MAX_MAGNITUDE):
        return None
    low = np.zeros(residual.shape, bool) if free_low is None else free_low
    high = np.zeros(residual.shape, bool) if free_high is None else free_high
    best = min((_encode(residual, low, high, SIDE_CLASSES, shift) for shift in SHIFTS), key=lambda found: len(found[0]))
    return min(best, _encode(residual, low, high, 1, best[2]), key=lambda found: len(found[0]))


def _encode(original: np.ndarray, low: np.ndarray, high: np.ndarray, sides: int, shift: int) -> tuple[bytes, np.ndarray, int]:
    stored, errors = np.zeros(original.shape, dtype=np.int64), np.zeros(original.shape, dtype=np.int64)
    choices, pieces = bytearray([sides, shift]), []
    top = top_stride(original.shape)
    view = _anchors(original, top)
    picked = _choose(view, _anchors(low, top), _anchors(high, top), {ZERO: np.zeros(view.shape, np.int64)}, _NO_ACTIVITY, sides, shift)
    _anchors(stored, top)[...], _anchors(errors, top)[...] = picked[1], np.abs(picked[2])
    pieces.append(picked[3:])
    for h, k in schedule(original.shape):
        predictions, activity = predict(_lines(stored, h, k), _lines(errors, h, k), shift)
        picked = _choose(_lines(original, h, k)[1::2], _lines(low, h, k)[1::2], _lines(high, h, k)[1::2],
                         predictions, activity, sides, shift)
        choices.append(picked[0])
        _lines(stored, h, k)[1::2], _lines(errors, h, k)[1::2] = picked[1], np.abs(picked[2])
        pieces.append(picked[3:])
    return _serialise(bytes(choices), pieces), stored, shift


def _serialise(choices: bytes, pieces: list[tuple]) -> bytes:
    """Side classes | shift | predictor per pass | tables | ANS words | raw bits; tokens in decoding order
    (pass by pass, contexts ascending, voxels in order within a context)."""
    every_context = np.concatenate([c for c, _, _, _ in pieces])
    every_token = np.concatenate([t for _, t, _, _ in pieces]).astype(np.int64)
    counts = np.bincount(every_context.astype(np.int64) * TOKENS + every_token, minlength=len(PREDICTORS) * CONTEXTS * TOKENS)
    tables, models = write_tables(counts.reshape(-1, TOKENS))
    runs = []
    for context, token, _, _ in pieces:
        order, used, bounds = _grouped(context)
        runs += [(token[order[a:b]], models[int(c)]) for c, a, b in zip(used, bounds[:-1], bounds[1:])]
    coder = constriction.stream.stack.AnsCoder()
    for symbols, model in reversed(runs):
        coder.encode_reverse(symbols.astype(np.int32), model)
    words = coder.get_compressed().astype("<u4")
    raw = pack_bits(np.concatenate([w for _, _, w, _ in pieces]), np.concatenate([r for _, _, _, r in pieces]))
    return choices + tables + varint(words.size) + words.tobytes() + raw


def _grouped(context: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel order by context (stable), the contexts present and their runs' bounds in that order."""
    order = np.argsort(context.astype(np.int16), kind="stable")
    counts = np.bincount(context, minlength=len(PREDICTORS) * CONTEXTS)
    used = np.flatnonzero(counts)
    return order, used, np.concatenate([[0], np.cumsum(counts[used])])


# ---------------------------------------------------------------------- decoding
def decode(body: bytes, shape: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """The stored residuals (int64, `shape`, in 2^-shift steps) of a body written by
    `encode`, and shift; TincFormatError if corrupt."""
    passes = schedule(shape)
    reader = Reader(body, 0, "CORR section is truncated")
    sides, shift = reader.byte(), reader.byte()
    if sides not in (1, SIDE_CLASSES) or shift not in SHIFTS:
        raise TincFormatError("CORR section: invalid context layout")
    choices = reader.take(len(passes))
    if any(c not in PREDICTORS for c in choices):
        raise TincFormatError("CORR section: invalid predictor")
    models = read_tables(reader, len(PREDICTORS) * CONTEXTS)
    words = np.frombuffer(reader.take(4 * reader.varint()), dtype="<u4").astype(np.uint32)
    rest = body[reader.position:]
    bits = np.unpackbits(np.frombuffer(rest, dtype=np.uint8))
    try:
        coder = constriction.stream.stack.AnsCoder(words)
    except Exception:
        raise TincFormatError("CORR section: invalid entropy coded stream") from None
    q, errors = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64)
    top = top_stride(shape)
    view = _anchors(q, top)
    position = 0
    error, position = _decode_pass(coder, models, bits, position, contexts(ZERO, _NO_ACTIVITY, view.shape, sides), view.shape)
    _anchors(q, top)[...], _anchors(errors, top)[...] = error << shift, np.abs(error)
    for (h, k), predictor in zip(passes, choices):
        predictions, activity = predict(_lines(q, h, k), _lines(errors, h, k), shift)
        prediction = predictions[predictor]
        context = contexts(predictor, activity, prediction.shape, sides)
        error, position = _decode_pass(coder, models, bits, position, context, prediction.shape)
        _lines(q, h, k)[1::2], _lines(errors, h, k)[1::2] = prediction + (error << shift), np.abs(error)
    if not coder.is_empty() or len(rest) != (position + 7) // 8:
        raise TincFormatError("CORR section: trailing bytes")
    return q, shift


def _decode_pass(coder, models: dict, bits: np.ndarray, position: int, context: np.ndarray, shape: tuple) -> tuple[np.ndarray, int]:
    order, used, bounds = _grouped(context)
    token = np.zeros(context.size, dtype=np.int64)
    for c, a, b in zip(used, bounds[:-1], bounds[1:]):
        if int(c) not in models:
            raise TincFormatError("CORR section: a context has no table")
        try:
            token[order[a:b]] = coder.decode(models[int(c)], int(b - a))
        except Exception:
            raise TincFormatError("CORR section: invalid entropy coded stream") from None
    raw, position = unpack_bits(bits, position, raw_widths(token))
    return untokens(token, raw).reshape(shape), position
