"""N-D arrays as stacks of unsigned-integer 2-D images, for image and video codecs."""

from __future__ import annotations

import struct

import numpy as np

from .base import Codec, squeezed_shape

UINT_HEADER = struct.Struct("<Bdd")
"""bits, offset, scale: how `to_uint` mapped the values (stored in front of the codestream)."""


def value_span(x: np.ndarray) -> tuple[float, float]:
    """(min, max) of `x`; (0, 0) when empty."""
    return (float(np.min(x)), float(np.max(x))) if x.size else (0.0, 0.0)


def to_uint(x: np.ndarray, bits: int) -> tuple[np.ndarray, bytes]:
    """Integers of `bits` bits for an image/video codec, and a header to undo the mapping.

    Integer data whose span fits is only offset (exact); other data is scaled from its
    min/max onto [0, 2**bits - 1].
    """
    lo, hi = value_span(x)
    top = (1 << bits) - 1
    if x.dtype.kind in "iub" and hi - lo <= top:
        scale = 1.0
    else:
        scale = (hi - lo) / top if hi > lo else 1.0
    q = np.rint((x.astype(np.float64) - lo) / scale)
    q = np.clip(q, 0, top).astype(np.uint8 if bits <= 8 else np.uint16)
    return q, UINT_HEADER.pack(bits, lo, scale)


def from_uint(q: np.ndarray, header: bytes) -> np.ndarray:
    """Undo `to_uint` (as float64) with the header it returned."""
    _, offset, scale = UINT_HEADER.unpack(header[: UINT_HEADER.size])
    return q.astype(np.float64) * scale + offset


def needed_bits(x: np.ndarray) -> int:
    """Bits an integer array's span needs (floats: 64, i.e. 'as many as possible')."""
    if x.dtype.kind not in "iub":
        return 64
    lo, hi = value_span(x)
    return max(1, int(hi - lo).bit_length())


def plane_axes(shape: tuple[int, ...]) -> tuple[int, int]:
    """The two axes forming 2-D images: the last two (slices along the leading axes), unless
    one of them is too short for an image (< 16, e.g. the time axis of a NIfTI series), then
    the two longest axes."""
    if len(shape) < 2:
        raise ValueError("need at least 2 axes")
    last = (len(shape) - 2, len(shape) - 1)
    if len(shape) == 2 or min(shape[-2:]) >= 16:
        return last
    longest = sorted(range(len(shape)), key=lambda a: (-shape[a], -a))[:2]
    return (min(longest), max(longest))


def frame_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(frames, height, width) that `to_frames` gives for an array of `shape`."""
    squeezed = squeezed_shape(shape)
    if len(squeezed) == 1:
        return 1, 1, squeezed[0]
    a, b = plane_axes(squeezed)
    return int(np.prod(squeezed)) // (squeezed[a] * squeezed[b]), squeezed[a], squeezed[b]


def to_frames(x: np.ndarray) -> np.ndarray:
    """(n, H, W) stack of 2-D images from an N-D array (1-D: one image row)."""
    x = x.reshape(squeezed_shape(x.shape))
    if x.ndim == 1:
        return x.reshape(1, 1, -1)
    a, b = plane_axes(x.shape)
    rest = [i for i in range(x.ndim) if i not in (a, b)]
    moved = np.transpose(x, rest + [a, b])
    return np.ascontiguousarray(moved.reshape(-1, x.shape[a], x.shape[b]))


def from_frames(frames: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Undo `to_frames`: the array of `shape` that the stack came from."""
    squeezed = squeezed_shape(shape)
    if len(squeezed) == 1:
        return frames.reshape(shape)
    a, b = plane_axes(squeezed)
    rest = [i for i in range(len(squeezed)) if i not in (a, b)]
    order = rest + [a, b]
    moved = frames.reshape([squeezed[i] for i in order])
    return np.transpose(moved, np.argsort(order)).reshape(shape)


# ------------------------------------------------------------------ colour
# Full-range BT.601 (JPEG's) luma weights: what JPEG 2000's irreversible colour transform uses.
_KR, _KB = 0.299, 0.114


def is_colour(shape: tuple[int, ...], dtype: np.dtype, channel_axis: int | None) -> bool:
    """An RGB input the image and video codecs code as colour: its reader's channel axis is 3
    long, the samples are 8- or 16-bit unsigned, and at least 2 other axes make images."""
    if channel_axis is None or not -len(shape) <= channel_axis < len(shape) or shape[channel_axis] != 3:
        return False
    return np.dtype(dtype) in (np.uint8, np.uint16) and len(squeezed_shape(grey_shape(shape, channel_axis))) >= 2


def grey_shape(shape: tuple[int, ...], channel_axis: int) -> tuple[int, ...]:
    """`shape` without its channel axis: the shape of one channel."""
    return tuple(n for a, n in enumerate(shape) if a != channel_axis % len(shape))


class ColourCodec(Codec):
    """An image or video codec that codes an RGB input (`is_colour`) as colour once
    `for_input` names its channel axis, and any other input as grey slices."""

    codes_colour = True
    """Whether this codec has a colour mode (else `for_input` keeps it as it is)."""

    def __init__(self, channel_axis: int | None = None):
        self.channel_axis = channel_axis

    def for_input(self, channel_axis: int | None) -> "ColourCodec":
        return type(self)(channel_axis) if self.codes_colour else self

    def _colour(self, shape: tuple[int, ...], dtype: np.dtype) -> bool:
        return self.codes_colour and is_colour(tuple(shape), dtype, self.channel_axis)


def to_colour_frames(x: np.ndarray, channel_axis: int) -> np.ndarray:
    """(n, H, W, 3) colour images: each channel cut into frames as `to_frames` cuts a grey array."""
    rgb = np.moveaxis(x, channel_axis, -1)
    return np.stack([to_frames(rgb[..., c]) for c in range(3)], axis=-1)


def from_colour_frames(frames: np.ndarray, shape: tuple[int, ...], channel_axis: int) -> np.ndarray:
    """Undo `to_colour_frames`."""
    channels = [from_frames(frames[..., c], grey_shape(shape, channel_axis)) for c in range(3)]
    return np.stack(channels, axis=channel_axis % len(shape))


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """[..., 3] RGB in [0, 1] -> Y, Cb, Cr in [0, 1] (chroma centred on 0.5)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = _KR * r + (1 - _KR - _KB) * g + _KB * b
    return np.stack([y, (b - y) / (2 * (1 - _KB)) + 0.5, (r - y) / (2 * (1 - _KR)) + 0.5], axis=-1)


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """Inverse of `rgb_to_ycbcr`."""
    y, cb, cr = ycc[..., 0], ycc[..., 1] - 0.5, ycc[..., 2] - 0.5
    r = y + 2 * (1 - _KR) * cr
    b = y + 2 * (1 - _KB) * cb
    g = (y - _KR * r - _KB * b) / (1 - _KR - _KB)
    return np.stack([r, g, b], axis=-1)
