"""Quantization and entropy coding of the tree's weights.

Each tensor (one layer of one level, weights or biases) is quantized with its own step,
`quality x its standard deviation`, and its integer symbols are coded with an asymmetric
numeral system (constriction) under a zero-mean quantized Gaussian or Laplace, whichever
the tensor's histogram favours. One global `quality` knob therefore trades size for
precision smoothly, and `encode_to_budget` searches it so the file lands on its budget.
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
_QUALITY_RANGE = (-24.0, 6.0)  # log2 of step / std: from ~28 bits down to ~0 bits per weight


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


def _quantize(values: np.ndarray, log2_quality: float) -> tuple[np.ndarray, int]:
    """Symbols and the step's code: step = 2 ** (code / 256), so two bytes store it exactly."""
    spread = float(np.std(values)) if values.size else 0.0
    peak = float(np.max(np.abs(values))) if values.size else 0.0
    step = max(2.0 ** log2_quality * max(spread, 1e-8), peak / MAX_SYMBOL, 1e-30)
    code = int(np.clip(math.ceil(256 * math.log2(step)), -32768, 32767))
    symbols = np.clip(np.rint(values / step_of(code)), -MAX_SYMBOL, MAX_SYMBOL).astype(np.int32)
    return symbols, code


def step_of(code: int) -> float:
    return 2.0 ** (code / 256)


def encode(tensors: list[np.ndarray], log2_quality: float | None) -> bytes:
    """Code 1-D float tensors; `log2_quality=None` stores raw float32."""
    if log2_quality is None:
        return bytes([RAW]) + b"".join(np.asarray(t, dtype="<f4").tobytes() for t in tensors)
    headers, streams = [], []
    coder = constriction.stream.stack.AnsCoder()
    for values in tensors:
        symbols, step_code = _quantize(np.asarray(values, dtype=np.float64), log2_quality)
        low = int(min(symbols.min(initial=0), 0)) - 1
        high = int(max(symbols.max(initial=0), 0)) + 1
        gauss_scale = float(np.float16(max(np.sqrt(np.mean(symbols.astype(np.float64) ** 2)) if symbols.size else 1.0, 1e-3)))
        laplace_scale = float(np.float16(max(np.mean(np.abs(symbols)) if symbols.size else 1.0, 1e-3)))
        candidates = [(GAUSSIAN, gauss_scale), (LAPLACE, laplace_scale)]
        family, scale = min(candidates, key=lambda c: _estimated_bits(symbols, *c))
        headers.append(bytes([family]) + _STEP_AND_SCALE.pack(step_code, scale) + varint(zigzag(low)) + varint(zigzag(high)))
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


def encode_to_budget(tensors: list[np.ndarray], budget: int) -> tuple[bytes, float]:
    """The finest quantization whose coded size is at most `budget` bytes (bisection on quality)."""
    low, high = _QUALITY_RANGE
    smallest = encode(tensors, high)
    if len(smallest) > budget:
        raise TincConfigError(
            f"the weights need at least {len(smallest)} bytes, the budget leaves {budget}; use a lower --ratio"
        )
    best, best_quality = smallest, high
    finest = encode(tensors, low)
    if len(finest) <= budget:
        return finest, low
    for _ in range(24):
        middle = (low + high) / 2
        coded = encode(tensors, middle)
        if len(coded) <= budget:
            best, best_quality, high = coded, middle, middle
        else:
            low = middle
        if high - low < 1 / 64:
            break
    return best, best_quality
