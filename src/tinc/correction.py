"""A guaranteed maximum error: the residual the network leaves, quantized and coded losslessly.

After the fit, the decoder's own prediction `p` (in data units, float64, before clipping and
rounding) is subtracted from the original `x`; the residual is stored as integers q with a
step `s` of about twice the bound (`q = round((x - p) / s)`, or with `CONTEXT` values
`q s / 2^shift` within `s / 2` of the residual), and the decoder returns `clip(p + q s / 2^shift)`
(rounded for integer data). `|x - p - q s / 2^shift| <= s / 2` by construction, so the
step is chosen just below what the bound allows:

- float data: `s / 2 = E - margin - half an ulp of the dtype at the data's largest
  magnitude` (the final cast to the dtype rounds once more);
- integer data: `s / 2 = floor(E) + 1/2 - margin`; the output is rounded to an integer, and
  an integer strictly within floor(E) + 1/2 of an integer original is within floor(E) of it,
  so the bound is exact (0 gives a lossless file).

`margin` (`MARGIN` of the data's range) absorbs float32 differences in the network's
prediction between machines or BLAS builds. On one machine the decoder reproduces the
prediction bit for bit (any thread count, any region: `TreeINR.render_leaves`), and the
encoder checks every value of the file's decode against the bound before writing it.

The residuals are coded by `CONTEXT` (`tinc.residual_coder`: coarse-to-fine passes, each
value the prediction from the voxels known before it plus a whole number of steps, entropy
coded under contexts of the neighbours' coded steps; the stored values count steps or
sixteenths of a step); where the original sits at the data's minimum or maximum any value
on the clipped side decodes within the bound, and that coder stores whichever its
prediction makes cheapest. The older methods, kept for reading
files and as a fallback on small arrays: zigzagged to the narrowest unsigned type,
byte-shuffled, and compressed with a general-purpose lossless coder. Which is kept was
measured on the corpus (benchmarks/MAX-ERROR.md). All these decoders are robust to forged
input (a bad stream is TincFormatError, never a crash), unlike the error-bounded floating
point codecs' decoders.

Section payload (`CORR`): method:u8 | bound E:f64 | half-step s/2:f64 | measured maximum
error:f32 (rounded up; for `tinc info`, not used to decode) | coded residual (methods 1-3:
width and predictor:u8 | stream; method 4: see `tinc.residual_coder`).
"""

from __future__ import annotations

import lzma
import math
import struct
from dataclasses import dataclass

import numpy as np

from . import residual_coder
from .errors import TincConfigError, TincFormatError

# Fraction of the data's range kept out of the quantization's half-step, for float32
# differences in the prediction across machines (about 16 float32 ulps of a value of the range).
MARGIN = 2.0 ** -20
NONE, ZSTD, LZMA, BROTLI, CONTEXT = 0, 1, 2, 3, 4  # method byte; NONE: every residual is 0, nothing follows
METHOD_NAMES = {NONE: "none", ZSTD: "zstd", LZMA: "lzma", BROTLI: "brotli", CONTEXT: "context"}
PLAIN, LORENZO = 0, 1  # predictor of the integer residuals before coding
PREDICTORS = (PLAIN, LORENZO)
# `code` tries each of these (the general-purpose ones with each predictor) and keeps the
# smallest stream. CONTEXT was the smallest in every cell of the corpus (benchmarks/MAX-ERROR.md);
# the general-purpose coders are tried only on arrays of at most GENERAL_VALUES values (where
# they take a second or so) or when CONTEXT cannot take the residuals.
DEFAULT_METHODS = (CONTEXT, LZMA, BROTLI)
GENERAL_VALUES = 1 << 21
_HEADER = struct.Struct("<Bddf")  # method, bound, half-step, measured maximum error
_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]
_WIDTHS = (np.uint8, np.uint16, np.uint32, np.uint64)


@dataclass
class Correction:
    """A decoded correction: the bound, the step and the integer residuals (channels last)."""

    bound: float
    half_step: float
    measured: float
    """The largest error the encoder measured on the file's decode."""
    method: int
    q: np.ndarray | None
    """Integer residuals in channels-last layout, or None when they are all 0."""
    shift: int = 0
    """q counts 2^-shift steps (CONTEXT; the other methods store whole steps)."""

    def values(self, index: tuple = ()) -> np.ndarray | float:
        """q x step over `index` (float64), to add to the prediction there."""
        if self.q is None:
            return 0.0
        return self.q[index].astype(np.float64) * step(self.half_step, self.shift)


# ---------------------------------------------------------------------- bounds
def half_step(bound: float, dtype: np.dtype, low: float, high: float) -> float:
    """The quantization's half-step for `bound` on data of `dtype` in [low, high]."""
    span = high - low
    margin = span * MARGIN
    if dtype.kind in "ui":
        whole = math.floor(bound)
        # the margin must leave the half-step above floor(E): at most a quarter of the rounding's slack
        return whole + 0.5 - min(margin, 0.25) if span > 0 else whole + 0.5
    largest = max(abs(low), abs(high))
    cast = float(np.spacing(dtype.type(largest))) / 2 if largest > 0 else 0.0
    step = bound - margin - cast
    if not step > 0:
        raise TincConfigError(f"max error {bound:g} is below what {dtype} data in {low:g}..{high:g} can guarantee "
                              f"(its rounding alone is {cast + margin:.3g}); use a larger bound")
    return step


def step(half: float, shift: int = 0) -> float:
    """What one unit of a stored residual is worth: the step 2 half, or 2^-shift of it (exact)."""
    return 2.0 * half / (1 << shift)


# ---------------------------------------------------------------------- coding
def quantize(residual: np.ndarray, half: float) -> np.ndarray:
    """Integer residuals q with |residual - q x 2 half| <= half."""
    return np.rint(residual / (2.0 * half)).astype(np.int64)


def code(residual: np.ndarray, half: float, free_low: np.ndarray | None = None, free_high: np.ndarray | None = None,
         methods: tuple[int, ...] = DEFAULT_METHODS) -> tuple[bytes, np.ndarray]:
    """The smallest coding (method byte first, no header) among `methods` of the float64
    `residual` (data units, channels last) within `half`, and the values it stores (float64,
    data units, to add to the prediction). `free_low` (`free_high`) marks an original at the
    data's minimum (maximum), where CONTEXT may store any value on the side the decoder clips."""
    q = quantize(residual, half)
    candidates, stores = [], [q]  # (coded, stored integers, shift)
    if CONTEXT in methods:
        coded = residual_coder.encode(residual / (2.0 * half), free_low, free_high)
        if coded is not None:
            body, stored, shift = coded
            candidates.append((bytes([CONTEXT]) + body, stored, shift))
            if shift == 0:
                stores.append(stored)  # its free choices may serve the others too
    general = tuple(m for m in methods if m != CONTEXT)
    if general and (not candidates or q.size <= GENERAL_VALUES):
        candidates += [(_smallest_general(s, general), s, 0) for s in stores]
    coded, stored, shift = min(candidates, key=lambda found: len(found[0]))
    return coded, stored.astype(np.float64) * step(half, shift)


def payload(coded: bytes | None, bound: float, half: float, measured: float) -> bytes:
    """The `CORR` payload: the header, then `coded` from `code` (None: every residual is 0)."""
    up = np.float32(measured)
    if float(up) < measured:  # info must never show less than the truth
        up = np.nextafter(up, np.float32(np.inf))
    if coded is None:
        return _HEADER.pack(NONE, bound, half, up)
    return coded[:1] + _HEADER.pack(0, bound, half, up)[1:] + coded[1:]


def encode(q: np.ndarray, bound: float, half: float, measured: float, methods: tuple[int, ...] = (LZMA, BROTLI)) -> bytes:
    """The `CORR` payload storing exactly the integer residuals `q` with the general-purpose `methods`."""
    return payload(_smallest_general(q, methods) if q.any() else None, bound, half, measured)


def _smallest_general(q: np.ndarray, methods: tuple[int, ...]) -> bytes:
    """The shortest of the general-purpose `methods` on `q`, with each predictor (method byte first)."""
    return min((_compress(m, _pack(q, p)) for p in PREDICTORS for m in methods), key=len)


def encoded_sizes(q: np.ndarray, methods: tuple[int, ...] = (ZSTD, LZMA, BROTLI)) -> dict[str, int]:
    """Bytes of the residuals under each general-purpose method (for measurements)."""
    return {METHOD_NAMES[m] + ("+lorenzo" if p else ""): len(_compress(m, _pack(q, p))) - 1 for p in PREDICTORS for m in methods}


def read_header(payload: bytes) -> Correction:
    """A `CORR` payload's bound, step and coding, without its residuals (`q` is None)."""
    if len(payload) < _HEADER.size:
        raise TincFormatError("CORR section is truncated")
    method, bound, half, measured = _HEADER.unpack_from(payload)
    if method not in METHOD_NAMES:
        raise TincFormatError(f"CORR section: unknown residual coding {method}")
    if not (math.isfinite(bound) and math.isfinite(half) and bound >= 0 and 0 < half <= bound + 1):
        raise TincFormatError("CORR section: invalid bound")
    return Correction(bound, half, measured, method, None)


def decode(payload: bytes, shape: tuple[int, ...]) -> Correction:
    """The correction of a `CORR` payload for channels-last `shape`; TincFormatError if corrupt."""
    found = read_header(payload)
    method, bound, half, measured = found.method, found.bound, found.half_step, found.measured
    if method == NONE:
        if len(payload) != _HEADER.size:
            raise TincFormatError("CORR section: trailing bytes")
        return found
    count = math.prod(shape)
    body = payload[_HEADER.size:]
    if method == CONTEXT:
        q, shift = residual_coder.decode(body, shape)
        return Correction(bound, half, measured, method, _narrow(q), shift)
    if len(body) < 1 or body[0] & 15 >= len(_WIDTHS) or body[0] >> 4 not in PREDICTORS:
        raise TincFormatError("CORR section: invalid residual width or predictor")
    width, predictor = np.dtype(_WIDTHS[body[0] & 15]), body[0] >> 4
    limit = count * width.itemsize
    try:
        raw = _decompress(method, body[1:], limit)
    except TincFormatError:
        raise
    except Exception as error:  # the libraries raise their own errors on a corrupt stream
        raise TincFormatError(f"CORR section is unreadable ({type(error).__name__})") from None
    if len(raw) != limit:
        raise TincFormatError(f"CORR section holds {len(raw)} bytes of residuals, the array needs {limit}")
    shuffled = np.frombuffer(raw, dtype=np.uint8).reshape(width.itemsize, count)
    unsigned = np.ascontiguousarray(shuffled.T).view(width.newbyteorder("<")).reshape(count).astype(np.uint64)
    # unzigzag in unsigned arithmetic: values at the type's end must not overflow
    q = (unsigned >> np.uint64(1)).astype(np.int64) ^ -(unsigned & np.uint64(1)).astype(np.int64)
    q = q.reshape(shape)
    if predictor == LORENZO:
        for axis in _lorenzo_axes(shape):
            q = np.cumsum(q, axis=axis, dtype=np.int64)  # wraps as the differences did: exact
    return Correction(bound, half, measured, method, _narrow(q.reshape(shape)))


def _narrow(q: np.ndarray) -> np.ndarray:
    """The narrowest signed type: a full-volume array of them stays in the decoder's memory."""
    narrow = next(t for t in (np.int8, np.int16, np.int32, np.int64) if not q.size or (np.iinfo(t).min <= q.min() and q.max() <= np.iinfo(t).max))
    return q.astype(narrow)


def _lorenzo_axes(shape: tuple[int, ...]) -> list[int]:
    """The spatial axes (all but the last, the channels) the Lorenzo predictor runs along."""
    return [axis for axis in range(len(shape) - 1) if shape[axis] > 1]


def _pack(q: np.ndarray, predictor: int = PLAIN) -> bytes:
    """Width and predictor byte, then the zigzagged residuals (or, with `LORENZO`, their
    finite differences along every spatial axis: the residual keeps some of the data's
    structure) in the narrowest type, byte planes apart: the high bytes of mostly small
    values are runs of zeros the coders squeeze to nothing."""
    q = q.astype(np.int64)
    if predictor == LORENZO:
        for axis in _lorenzo_axes(q.shape):
            q = np.diff(q, axis=axis, prepend=np.zeros_like(q.take([0], axis=axis)))  # int64 wraps, and so does cumsum
    flat = q.reshape(-1)
    unsigned = ((flat << 1) ^ (flat >> 63)).view(np.uint64)
    top = int(unsigned.max()) if unsigned.size else 0
    kind = next(i for i, t in enumerate(_WIDTHS) if top <= np.iinfo(t).max)
    values = unsigned.astype(np.dtype(_WIDTHS[kind]).newbyteorder("<"))
    planes = values.view(np.uint8).reshape(-1, values.itemsize).T
    return bytes([kind | predictor << 4]) + np.ascontiguousarray(planes).tobytes()


def _compress(method: int, raw: bytes) -> bytes:
    """Method byte + width and predictor byte + stream."""
    import imagecodecs

    kind, body = raw[:1], raw[1:]
    if method == ZSTD:
        stream = imagecodecs.zstd_encode(body, level=19)
    elif method == LZMA:  # raw LZMA2 (no xz container: 50 bytes less), the standard library's
        stream = lzma.compress(body, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
    elif method == BROTLI:
        stream = imagecodecs.brotli_encode(body, level=11)
    else:
        raise ValueError(f"unknown method {method}")
    return bytes([method]) + kind + bytes(stream)


def _decompress(method: int, stream: bytes, limit: int) -> bytes:
    """The raw residual bytes, refusing streams that inflate past `limit` (a forged file's bomb)."""
    if method == LZMA:
        inflater = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
        raw = inflater.decompress(stream, max_length=limit + 1)
        if not inflater.eof:
            raise TincFormatError("CORR section is truncated")
        return raw
    import imagecodecs

    if method == ZSTD:
        return bytes(imagecodecs.zstd_decode(stream, out=limit + 1) if limit else imagecodecs.zstd_decode(stream))
    if method == BROTLI:
        return bytes(imagecodecs.brotli_decode(stream, out=limit + 1) if limit else imagecodecs.brotli_decode(stream))
    raise TincFormatError(f"CORR section: unknown residual coding {method}")
