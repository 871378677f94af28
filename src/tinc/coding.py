"""Quantization and entropy coding of the tree's weights.

Each tensor (one layer of one level, weights or biases) is quantized with its own step,
`2 ** log2_quality x its scale`, and its integer symbols are coded with an asymmetric
numeral system (constriction) under a zero-mean quantized Gaussian or Laplace, whichever
the tensor's histogram favours. The scale is the tensor's standard deviation, or, from
`sensitivity_scales`, one that gives the tensors the loss cares most about the finer
steps. One global `log2_quality` knob therefore trades size for precision smoothly, and
`encode_to_budget` searches it so the file lands on its budget.

A section is one byte naming its coding, the tensors' headers, then the ANS words. A
`COMPACT` header is three bytes: family and support, the model's scale on a 1/8-octave
grid, the step as a difference from the last tensor's (the first tensor's step in full).
Files of format 2 hold `LEGACY` sections (seven bytes per tensor), still decoded.

A tensor whose runs (one per tree node, e.g. a hidden layer's biases in the model's
canonical form, `TreeINR.canonicalise`) are ascending and non-negative codes each run as
order statistics (`SORTED` in its header): the k-th value as the least of the run's
remaining values, all drawn from the tensor's model folded onto x >= 0. That saves the
sign of each value and log2(n!) bits per run of n, which is what the network's freedom to
flip and permute its neurons would otherwise waste. Its probability tables are computed
with IEEE-754 basic operations alone, so every machine's decoder rebuilds them bit for bit.
"""

from __future__ import annotations

import math
import struct

import constriction
import numpy as np
from scipy.special import ndtr

from .bitstream import Reader, unzigzag, varint, zigzag
from . import sorted_runs
from .errors import TincConfigError, TincFormatError

GAUSSIAN, LAPLACE = 0, 1  # the families of the symbols' model
SORTED = 2  # added to the family: the tensor's runs are ascending, non-negative order statistics
LEGACY, RAW, COMPACT = 0, 2, 3  # the first byte of a weight section: how it is coded
MAX_SYMBOL = 32766  # keeps the support, +-(2^15 - 1), within int16
# A step is 2 ** (code / 256). The codes of one section differ by multiples of STEP_GRID, so
# each is stored as a one-byte difference from the last, while all steps still move together
# by 1/256 of an octave as the quality changes, which keeps the budget search fine-grained.
STEP_GRID = 16
_SCALE_UNITS, _SCALE_OFFSET = 8, 80  # model scale = 2 ** ((byte - 80) / 8): 2^-10 to 2^21.9
TENSOR_HEADER_BYTES = 3  # typical: family and support, scale, step difference
_LEGACY_STEP_AND_SCALE = struct.Struct("<he")  # format 2 files: log2(step) in 1/256 units, scale as float16
_QUALITY_RANGE = (-28.0, 10.0)  # log2 of step / std: from ~32 bits down to ~0 bits per weight
_QUALITY_UNITS = 256  # `step_codes` sees log2_quality only through ceil(256 x it)


def _family_models(family: int, low: int, high: int, scale: float):
    scale = max(float(scale), 1e-3)
    if family == GAUSSIAN:
        return constriction.stream.model.QuantizedGaussian(low, high, 0.0, scale)
    return constriction.stream.model.QuantizedLaplace(low, high, 0.0, scale)


def _symbol_bits(symbols: np.ndarray, family: int, scale: float) -> np.ndarray:
    """Bits each symbol costs under the zero-mean model of `family` and `scale`."""
    x = symbols.astype(np.float64)
    scale = max(scale, 1e-3)
    if family == GAUSSIAN:
        p = ndtr((x + 0.5) / scale) - ndtr((x - 0.5) / scale)
    else:
        cdf = lambda t: np.where(t < 0, 0.5 * np.exp(np.minimum(t, 0) / scale), 1 - 0.5 * np.exp(-np.maximum(t, 0) / scale))
        p = cdf(x + 0.5) - cdf(x - 0.5)
    return -np.log2(np.maximum(p, 1e-12))


def _model_of(symbols: np.ndarray) -> tuple[int, int]:
    """The family and scale byte (`scale_of`) that code `symbols` in the fewest bits."""
    gauss_scale = np.sqrt(np.mean(symbols.astype(np.float64) ** 2)) if symbols.size else 1.0
    laplace_scale = np.mean(np.abs(symbols)) if symbols.size else 1.0
    candidates = [(GAUSSIAN, _scale_byte(gauss_scale)), (LAPLACE, _scale_byte(laplace_scale))]
    return min(candidates, key=lambda c: float(_symbol_bits(symbols, c[0], scale_of(c[1])).sum()))


def _scale_byte(scale: float) -> int:
    return int(np.clip(round(_SCALE_UNITS * math.log2(max(float(scale), 1e-3))) + _SCALE_OFFSET, 0, 255))


def scale_of(byte: int) -> float:
    """The model scale a stored scale byte stands for."""
    return 2.0 ** ((byte - _SCALE_OFFSET) / _SCALE_UNITS)


def _support(symbols: np.ndarray) -> int:
    """The exponent e of the model's support, +-(2^e - 1), which covers every symbol and one more."""
    return (int(np.abs(symbols).max(initial=0)) + 1).bit_length()


def step_codes(tensors: list[np.ndarray], log2_quality: float, scales: np.ndarray | None = None) -> list[int]:
    """Each tensor's quantization step, at least `2 ** log2_quality x its scale` (default: its
    std) and at most 2^(1/16) above, as a code: step = 2 ** (code / 256). The codes differ by
    multiples of `STEP_GRID` and all rise by one as `log2_quality` rises by 1/256."""
    if scales is None:
        scales = [float(np.std(t)) if np.size(t) else 0.0 for t in tensors]
    quality = math.ceil(256 * log2_quality)  # the codes are a function of this integer alone
    residue = quality % STEP_GRID
    codes = []
    for values, scale in zip(tensors, scales, strict=True):
        peak = float(np.max(np.abs(values))) if np.size(values) else 0.0
        step = max(2.0 ** (quality / 256) * max(float(scale), 1e-8), peak / MAX_SYMBOL, 1e-30)
        wanted = math.ceil(256 * math.log2(step))
        codes.append(residue + STEP_GRID * -((residue - wanted) // STEP_GRID))
    return codes


def sensitivity_scales(tensors: list[np.ndarray], sensitivities: np.ndarray) -> np.ndarray:
    """Step scales that minimise the loss added by rounding at a given size.

    Rounding a weight to a step of `d` adds about `s d^2 / 12` to the loss, where `s` is the
    loss's curvature along that weight (its sensitivity), and costs `-log2 d` bits; the
    best trade gives every tensor a step proportional to `1 / sqrt(s)`. The scales are
    normalised to the size-weighted geometric mean of the tensors' std, so `log2_quality`
    keeps its meaning of "log2 of step over std", on average.
    """
    sizes = np.array([np.size(t) for t in tensors], dtype=np.float64)
    spreads = np.array([max(float(np.std(t)), 1e-8) if np.size(t) else 1.0 for t in tensors])
    sensitivities = np.asarray(sensitivities, dtype=np.float64)
    sensitivities = np.maximum(sensitivities, max(float(sensitivities.max()), 1e-30) * 1e-12)
    raw = 1 / np.sqrt(sensitivities)
    weights = sizes / max(sizes.sum(), 1)
    return raw * np.exp(np.sum(weights * (np.log(spreads) - np.log(raw))))


def step_of(code: int) -> float:
    return 2.0 ** (code / 256)


Runs = list[np.ndarray | None]  # per tensor: None, or the lengths of its ascending non-negative runs (`SORTED`)


def encode(tensors: list[np.ndarray], log2_quality: float | None, scales: np.ndarray | None = None,
           runs: Runs | None = None) -> bytes:
    """Code 1-D float tensors with the steps of `step_codes`; `log2_quality=None` stores raw float32."""
    if log2_quality is None:
        return bytes([RAW]) + b"".join(np.asarray(t, dtype="<f4").tobytes() for t in tensors)
    return encode_with_steps(tensors, step_codes(tensors, log2_quality, scales), runs)


def encode_with_steps(tensors: list[np.ndarray], codes: list[int], runs: Runs | None = None) -> bytes:
    """Code 1-D float tensors, each rounded to the multiples of its step (`step_of(code)`)."""
    return _encode_symbols([_symbols(values, code) for values, code in zip(tensors, codes, strict=True)], codes, runs)


def _symbols(values: np.ndarray, code: int) -> np.ndarray:
    return np.clip(np.rint(np.asarray(values, dtype=np.float64) / step_of(code)), -MAX_SYMBOL, MAX_SYMBOL).astype(np.int32)


def _encode_symbols(all_symbols: list[np.ndarray], codes: list[int], runs: Runs | None = None) -> bytes:
    if any((code - codes[0]) % STEP_GRID for code in codes):
        raise ValueError(f"step codes must differ by multiples of {STEP_GRID}, got {codes}")
    headers, pieces = [], []  # (symbols, model[, per-symbol tables]) in decoding order
    coder = constriction.stream.stack.AnsCoder()
    previous = None
    for index, (symbols, code) in enumerate(zip(all_symbols, codes, strict=True)):
        support = _support(symbols)
        family, scale = _model_of(symbols)
        high = 2**support - 1
        tensor_runs = None if runs is None else runs[index]
        if tensor_runs is not None and sorted_runs.sortable(symbols, tensor_runs, high):
            pieces += sorted_runs.encode_pieces(symbols, np.asarray(tensor_runs, dtype=np.int64), family == GAUSSIAN,
                                                _sorted_sigma(scale), high)
            family |= SORTED
        elif symbols.size:
            pieces.append((symbols, _family_models(family, -high, high, scale_of(scale))))
        step = zigzag(code) if previous is None else zigzag((code - previous) // STEP_GRID)
        headers.append(bytes([family << 4 | support, scale]) + varint(step))
        previous = code
    for symbols, model, *tables in reversed(pieces):
        coder.encode_reverse(symbols.astype(np.int32), model, *tables)
    words = coder.get_compressed().astype("<u4")
    return bytes([COMPACT]) + b"".join(headers) + words.tobytes()


def _sorted_sigma(byte: int) -> float:
    return max(_exact_scale(byte), 1e-3)


def _exact_scale(byte: int) -> float:
    """`scale_of(byte)` from square roots (correctly rounded everywhere) instead of `pow`."""
    octaves, eighths = divmod(byte - _SCALE_OFFSET, _SCALE_UNITS)
    root, value = math.sqrt(math.sqrt(math.sqrt(2.0))), 1.0  # 2^(1/_SCALE_UNITS)
    for _ in range(eighths):
        value *= root
    return math.ldexp(value, octaves)


def encode_within_budget(rounded: list[np.ndarray], latent: list[np.ndarray], codes: list[int], budget: int,
                         sensitivities: np.ndarray, max_rounds: int = 64, runs: Runs | None = None) -> bytes | None:
    """Code `rounded` (multiples of the steps of `codes`) in at most `budget` bytes, or None.

    Quantization-aware training chooses its steps for the budget when it starts, and the
    weights it ends with may code a word or two longer (cell at 512x: 678 bytes for 677).
    Rounding them afresh to coarser steps throws the training away (-1.2 dB there), so
    instead the symbols whose move costs the least added error per bit saved go one step
    toward zero: the error of a move is `sensitivity x step^2 x` the rise in squared
    distance from the `latent` (unrounded) weight, so weights trained to sit near a
    rounding boundary go first. None when the moves would add more error than rounding
    every weight afresh (a twelfth of a step squared each) would. Tensors with `runs` keep
    their symbols, since a move could unsort a run.
    """
    sizes = [np.size(values) for values in rounded]
    symbols = np.concatenate([_symbols(values, code) for values, code in zip(rounded, codes, strict=True)])
    offsets = np.concatenate([np.asarray(values, dtype=np.float64) / step_of(code) for values, code in zip(latent, codes, strict=True)])
    costs = np.repeat(np.asarray(sensitivities, dtype=np.float64) * np.square([step_of(code) for code in codes]), sizes)
    fresh_rounding, added = float(costs.sum() / 12), 0.0
    splits = np.cumsum(sizes)[:-1]
    fixed = np.repeat([tensor_runs is not None for tensor_runs in (runs or [None] * len(sizes))], sizes)
    coded = _encode_symbols(np.split(symbols, splits), codes, runs)
    for _ in range(max_rounds):
        if len(coded) <= budget:
            return coded
        toward = symbols - np.sign(symbols)
        saved = np.concatenate([_symbol_bits(q, family, scale_of(scale)) - _symbol_bits(t, family, scale_of(scale))
                                for q, t in zip(np.split(symbols, splits), np.split(toward, splits))
                                for family, scale in [_model_of(q)]])
        errors = costs * (np.square(offsets - toward) - np.square(offsets - symbols))
        movable = np.flatnonzero((saved > 0) & ~fixed)
        if not movable.size:
            return None
        order = movable[np.argsort(np.maximum(errors[movable], 0) / saved[movable], kind="stable")]
        chosen = order[:int(np.searchsorted(np.cumsum(saved[order]), 8 * (len(coded) - budget))) + 1]
        symbols[chosen] = toward[chosen]
        added += float(errors[chosen].sum())
        if added > fresh_rounding:
            return None
        coded = _encode_symbols(np.split(symbols, splits), codes, runs)
    return coded if len(coded) <= budget else None


def decode(data: bytes, sizes: list[int], runs: Runs | None = None) -> list[np.ndarray]:
    """Inverse of `encode` for tensors of the given element counts; `runs` gives, per tensor,
    the lengths its runs would have if it was coded `SORTED` (e.g. its nodes' entry counts)."""
    if not data:
        raise TincFormatError("weight section is empty")
    if data[0] == RAW:
        expected = 1 + 4 * sum(sizes)
        if len(data) != expected:
            raise TincFormatError(f"weight section has {len(data)} bytes, expected {expected}")
        flat = np.frombuffer(data, dtype="<f4", offset=1)
        return list(np.split(flat.astype(np.float32), np.cumsum(sizes)[:-1]))
    if data[0] not in (COMPACT, LEGACY):
        raise TincFormatError(f"unknown weight coding {data[0]}")
    reader = Reader(data, 1, "weight section is truncated")
    headers = _compact_headers(reader, len(sizes)) if data[0] == COMPACT else _legacy_headers(reader, len(sizes))
    if (len(data) - reader.position) % 4:
        raise TincFormatError("weight section is truncated")
    words = np.frombuffer(data, dtype="<u4", offset=reader.position).astype(np.uint32)
    try:
        coder = constriction.stream.stack.AnsCoder(words) if words.size else None
        tensors = []
        for index, ((family, step, scale, scale_byte, low, high), size) in enumerate(zip(headers, sizes)):
            if size == 0:
                tensors.append(np.zeros(0, np.float32))
                continue
            if coder is None:
                raise TincFormatError("weight stream is empty")
            if family & SORTED:
                symbols = sorted_runs.decode(coder, family & ~SORTED == GAUSSIAN, _sorted_sigma(scale_byte), high, size,
                                             None if runs is None else runs[index], index)
            else:
                symbols = coder.decode(_family_models(family, low, high, scale), size)
            tensors.append((symbols.astype(np.float64) * step).astype(np.float32))
    except TincFormatError:
        raise
    except Exception as error:  # the coder rejects exhausted or inconsistent streams
        raise TincFormatError(f"weight stream is corrupted ({error})") from None
    return tensors


def section_tensors(data: bytes, count: int) -> list[tuple[int, bool]]:
    """(step code, whether coded as sorted runs) per tensor of a `COMPACT` weight section."""
    if not data or data[0] != COMPACT:
        raise TincFormatError("not a compact weight section")
    return [(round(256 * math.log2(step)), bool(family & SORTED))
            for family, step, *_ in _compact_headers(Reader(data, 1, "weight section is truncated"), count)]


def _compact_headers(reader: Reader, count: int) -> list[tuple[int, float, float, int | None, int, int]]:
    """(family, step, model scale, its byte, lowest symbol, highest symbol) per tensor of a `COMPACT` section."""
    headers, code = [], 0
    for index in range(count):
        packed, scale = reader.byte(), reader.byte()
        family, support = packed >> 4, packed & 15
        difference = unzigzag(reader.varint())
        code = difference if index == 0 else code + STEP_GRID * difference
        if family & ~SORTED not in (GAUSSIAN, LAPLACE) or not 1 <= support <= 15 or abs(code) > 1 << 16:
            raise TincFormatError(f"weight tensor {index} has an invalid header")
        headers.append((family, step_of(code), scale_of(scale), scale, -(2**support - 1), 2**support - 1))
    return headers


def _legacy_headers(reader: Reader, count: int) -> list[tuple[int, float, float, int | None, int, int]]:
    """The same for sections of format 2 files: family, int16 step code, float16 scale (no byte), symbol range."""
    headers = []
    for index in range(count):
        family = reader.byte()
        step_code, scale = _LEGACY_STEP_AND_SCALE.unpack(reader.take(_LEGACY_STEP_AND_SCALE.size))
        low, high = unzigzag(reader.varint()), unzigzag(reader.varint())
        if family not in (GAUSSIAN, LAPLACE) or not -MAX_SYMBOL - 1 <= low < high <= MAX_SYMBOL + 1 or not np.isfinite(scale):
            raise TincFormatError(f"weight tensor {index} has an invalid header")
        headers.append((family, step_of(step_code), float(scale), None, low, high))
    return headers


def encode_to_budget(tensors: list[np.ndarray], budget: int, scales: np.ndarray | None = None,
                     runs: Runs | None = None, near: float | None = None) -> tuple[bytes, float]:
    """The finest quantization whose coded size is at most `budget` bytes, and its log2 quality.

    The codes change only where 256 x `log2_quality` crosses an integer (`step_codes`), so
    this finds the smallest such integer that fits. It interpolates the size between the
    nearest integers known to fit and not to fit, and halves the interval instead whenever
    the last guess shrank it by less than half: 3-5 codings where halving alone took 15.
    It starts from `near` (an earlier search's answer for similar weights), or else from
    the quality at which Gaussian weights would fill the budget.
    """
    finest, coarsest = (math.ceil(_QUALITY_UNITS * q) for q in _QUALITY_RANGE)
    coded = {}

    def size(k: int) -> int:
        coded[k] = encode(tensors, k / _QUALITY_UNITS, scales, runs)
        return len(coded[k])

    fits, fits_size = coarsest, size(coarsest)
    if fits_size > budget:
        raise TincConfigError(
            f"the weights need at least {fits_size} bytes, the budget leaves {budget}; use a lower --ratio"
        )
    # a Gaussian weight rounded to a step d costs about log2(std / d) + log2(2 pi e) / 2 bits,
    # so each unit finer costs 1/256 bit per weight, until the weights round to zero
    weights = max(sum(np.size(t) for t in tensors), 1)
    units_per_byte = 8 * _QUALITY_UNITS / weights
    if near is None:
        near = 0.5 * math.log2(2 * math.pi * math.e) - 8 * budget / weights
    k = math.ceil(_QUALITY_UNITS * near)
    big, big_size = finest - 1, None  # the coarsest integer known not to fit (below the range: none yet)
    reach, halve = 1, False
    while fits - big > 1:
        width = fits - big
        k = min(max(k, big + 1), fits - 1)
        if size(k) <= budget:
            fits, fits_size = k, len(coded[k])
        else:
            big, big_size = k, len(coded[k])
        if big_size is None:  # no finer quality tried yet: reach further each time (fine ones code slowly)
            k, reach = fits - reach * math.ceil((budget - fits_size) * units_per_byte), 2 * reach
            continue
        halve = not halve and 2 * (fits - big) > width
        if halve:
            k = (big + fits) // 2
        else:
            k = fits - round((fits - big) * (budget - fits_size) / (big_size - fits_size))
    return coded[fits], fits / _QUALITY_UNITS
