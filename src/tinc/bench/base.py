"""The interface every benchmarked codec implements, and dtype helpers shared by adapters."""

from __future__ import annotations

from typing import Sequence

import numpy as np


class Codec:
    """A codec adapter: `encode(array, quality) -> bytes`, `decode(bytes, shape, dtype) -> array`.

    `quality` is the codec's own knob. `quality_range(array)` gives (best, smallest): the
    setting of best fidelity (largest output) and the one giving the smallest output, which
    tells the search which way makes files smaller.
    """

    name = "codec"
    description = ""
    log_scale = True
    """Search the quality on a log scale."""
    integer = False
    """Quality must be an integer."""
    direct = False
    """The quality *is* the target ratio (no search), e.g. tinc."""

    def unavailable(self) -> str | None:
        """None when usable here, else why not (one line)."""
        return None

    def for_input(self, channel_axis: int | None) -> "Codec":
        """This codec for an input whose reader named `channel_axis` (None: none). The classic
        codecs code the bare array, each in its own way (`frames`); tinc takes the axis."""
        return self

    def quality_range(self, array: np.ndarray) -> tuple[float, float]:
        """(best-fidelity setting, smallest-output setting) for this array."""
        raise NotImplementedError

    def encode(self, array: np.ndarray, quality: float) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        raise NotImplementedError

    def note(self, data: bytes) -> str:
        """What the result table should say about this output (e.g. the network it holds)."""
        return ""


def squeezed_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """`shape` without its length-1 axes (at least one axis)."""
    squeezed = tuple(int(n) for n in shape if n != 1)
    return squeezed if squeezed else (1,)


def work_float(dtype: np.dtype) -> type:
    """float32 where it holds the values exactly (<= 16-bit integers, float16/32), else float64."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iub" and dtype.itemsize <= 2:
        return np.float32
    if dtype.kind == "f" and dtype.itemsize <= 4:
        return np.float32
    return np.float64


def restore_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round and clip back to an integer dtype; cast for floating point."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values.astype(np.float64)), info.min, info.max).astype(dtype)
    if dtype.kind == "b":
        return np.asarray(values) >= 0.5
    return np.asarray(values).astype(dtype)
