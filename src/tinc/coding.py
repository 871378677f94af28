"""Quantization and entropy coding of the tree's weights.

Each tensor (one layer of one level, weights or biases) is quantized with its own step,
`2 ** log2_quality x its scale`, and its integer symbols are coded with an asymmetric
numeral system (constriction) under a zero-mean quantized Gaussian or Laplace, whichever
the tensor's histogram favours. The scale is the tensor's standard deviation, or, from
`sensitivity_scales`, one that gives the tensors the loss cares most about the finer
steps. One global `log2_quality` knob therefore trades size for precision smoothly, and
`encode_to_budget` searches it so the file lands on its budget.
"""

from __future__ import annotations

import math
import struct

import constriction
import numpy as np
from scipy.special import ndtr

from .container import Reader, unzigzag, varint, zigzag
from .errors import TincConfigError, TincFormatError

GAUSSIAN, LAPLACE, RAW = 0, 1, 2
MAX_SYMBOL = 32766  # keeps low - 1 and high + 1 within int16
_STEP_AND_SCALE = struct.Struct("<he")  # log2(step) in 1/256 units, model scale as float16
TENSOR_HEADER_BYTES = 1 + _STEP_AND_SCALE.size + 2  # typical: family, step, scale, two 1-byte varints
_QUALITY_RANGE = (-28.0, 10.0)  # log2 of step / std: from ~32 bits down to ~0 bits per weight


def _family_models(family: int, low: int, high: int, scale: float):
    scale = max(float(scale), 1e-3)
    if family == GAUSSIAN:
        return constriction.stream.model.QuantizedGaussian(low, high, 0.0, scale)
    return constriction.stream.model.QuantizedLaplace(low, high, 0.0, scale)


def _estimated_bits(symbols: np.ndarray, family: int, scale: float) -> float:
    x = symbols.astype(np.float64)
    scale = max(scale, 1e-3)
    if family == GAUSSIAN:
        p = ndtr((x + 0.5) / scale) - ndtr((x - 0.5) / scale)
    else:
        cdf = lambda t: np.where(t < 0, 0.5 * np.exp(np.minimum(t, 0) / scale), 1 - 0.5 * np.exp(-np.maximum(t, 0) / scale))
        p = cdf(x + 0.5) - cdf(x - 0.5)
    return float(-np.log2(np.maximum(p, 1e-12)).sum())


def step_codes(tensors: list[np.ndarray], log2_quality: float, scales: np.ndarray | None = None) -> list[int]:
    """Each tensor's quantization step, `2 ** log2_quality x its scale` (default: its std), as a
    code: step = 2 ** (code / 256), so two bytes store it exactly."""
    if scales is None:
        scales = [float(np.std(t)) if np.size(t) else 0.0 for t in tensors]
    codes = []
    for values, scale in zip(tensors, scales, strict=True):
        peak = float(np.max(np.abs(values))) if np.size(values) else 0.0
        step = max(2.0 ** log2_quality * max(float(scale), 1e-8), peak / MAX_SYMBOL, 1e-30)
        codes.append(int(np.clip(math.ceil(256 * math.log2(step)), -32768, 32767)))
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


def encode(tensors: list[np.ndarray], log2_quality: float | None, scales: np.ndarray | None = None) -> bytes:
    """Code 1-D float tensors with the steps of `step_codes`; `log2_quality=None` stores raw float32."""
    if log2_quality is None:
        return bytes([RAW]) + b"".join(np.asarray(t, dtype="<f4").tobytes() for t in tensors)
    return encode_with_steps(tensors, step_codes(tensors, log2_quality, scales))


def encode_with_steps(tensors: list[np.ndarray], codes: list[int]) -> bytes:
    """Code 1-D float tensors, each rounded to the multiples of its step (`step_of(code)`)."""
    headers, streams = [], []
    coder = constriction.stream.stack.AnsCoder()
    for values, code in zip(tensors, codes, strict=True):
        values = np.asarray(values, dtype=np.float64)
        symbols = np.clip(np.rint(values / step_of(code)), -MAX_SYMBOL, MAX_SYMBOL).astype(np.int32)
        low = int(min(symbols.min(initial=0), 0)) - 1
        high = int(max(symbols.max(initial=0), 0)) + 1
        gauss_scale = float(np.float16(max(np.sqrt(np.mean(symbols.astype(np.float64) ** 2)) if symbols.size else 1.0, 1e-3)))
        laplace_scale = float(np.float16(max(np.mean(np.abs(symbols)) if symbols.size else 1.0, 1e-3)))
        candidates = [(GAUSSIAN, gauss_scale), (LAPLACE, laplace_scale)]
        family, scale = min(candidates, key=lambda c: _estimated_bits(symbols, *c))
        headers.append(bytes([family]) + _STEP_AND_SCALE.pack(code, scale) + varint(zigzag(low)) + varint(zigzag(high)))
        streams.append((symbols, _family_models(family, low, high, scale)))
    for symbols, model in reversed(streams):
        if symbols.size:
            coder.encode_reverse(symbols, model)
    words = coder.get_compressed().astype("<u4")
    return bytes([GAUSSIAN]) + b"".join(headers) + words.tobytes()


def decode(data: bytes, sizes: list[int]) -> list[np.ndarray]:
    """Inverse of `encode` for tensors of the given element counts."""
    if not data:
        raise TincFormatError("weight section is empty")
    if data[0] == RAW:
        expected = 1 + 4 * sum(sizes)
        if len(data) != expected:
            raise TincFormatError(f"weight section has {len(data)} bytes, expected {expected}")
        flat = np.frombuffer(data, dtype="<f4", offset=1)
        return list(np.split(flat.astype(np.float32), np.cumsum(sizes)[:-1]))
    if data[0] != GAUSSIAN:
        raise TincFormatError(f"unknown weight coding {data[0]}")
    reader = Reader(data, 1, "weight section is truncated")
    headers = []
    for index in range(len(sizes)):
        family = reader.byte()
        step_code, scale = _STEP_AND_SCALE.unpack(reader.take(_STEP_AND_SCALE.size))
        low, high = unzigzag(reader.varint()), unzigzag(reader.varint())
        if family not in (GAUSSIAN, LAPLACE) or not -MAX_SYMBOL - 1 <= low < high <= MAX_SYMBOL + 1 or not np.isfinite(scale):
            raise TincFormatError(f"weight tensor {index} has an invalid header")
        headers.append((family, step_of(step_code), scale, low, high))
    if (len(data) - reader.position) % 4:
        raise TincFormatError("weight section is truncated")
    words = np.frombuffer(data, dtype="<u4", offset=reader.position).astype(np.uint32)
    try:
        coder = constriction.stream.stack.AnsCoder(words) if words.size else None
        tensors = []
        for (family, step, scale, low, high), size in zip(headers, sizes):
            if size == 0:
                tensors.append(np.zeros(0, np.float32))
                continue
            if coder is None:
                raise TincFormatError("weight stream is empty")
            symbols = coder.decode(_family_models(family, low, high, scale), size)
            tensors.append((symbols.astype(np.float64) * step).astype(np.float32))
    except TincFormatError:
        raise
    except Exception as error:  # the coder rejects exhausted or inconsistent streams
        raise TincFormatError(f"weight stream is corrupted ({error})") from None
    return tensors


def encode_to_budget(tensors: list[np.ndarray], budget: int, scales: np.ndarray | None = None) -> tuple[bytes, float]:
    """The finest quantization whose coded size is at most `budget` bytes (bisection on quality)."""
    low, high = _QUALITY_RANGE
    smallest = encode(tensors, high, scales)
    if len(smallest) > budget:
        raise TincConfigError(
            f"the weights need at least {len(smallest)} bytes, the budget leaves {budget}; use a lower --ratio"
        )
    best, best_quality = smallest, high
    finest = encode(tensors, low, scales)
    if len(finest) <= budget:
        return finest, low
    for _ in range(24):
        middle = (low + high) / 2
        coded = encode(tensors, middle, scales)
        if len(coded) <= budget:
            best, best_quality, high = coded, middle, middle
        else:
            low = middle
        if high - low < 1 / 64:
            break
    return best, best_quality
