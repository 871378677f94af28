"""Between the data's units and the networks': validation, scaling, and the way back."""

from __future__ import annotations

import numpy as np

from .errors import TincConfigError, TincFormatError, TincInputError
from .format import MAX_SPATIAL_DIMS, SUPPORTED_KINDS, Header


def check_array(array) -> np.ndarray:
    """The input as an ndarray, or a TincInputError naming what is wrong with it."""
    if isinstance(array, np.ma.MaskedArray) and np.ma.getmask(array).any():
        raise TincInputError("masked arrays are not supported: fill the masked values first (array.filled(value))")
    try:
        array = np.asarray(array)
    except Exception as error:
        raise TincInputError(f"input is not an array ({error})") from None
    if array.dtype.kind not in SUPPORTED_KINDS:
        raise TincInputError(f"unsupported dtype {array.dtype}: use integer or floating point data")
    if array.dtype.itemsize > 8:
        raise TincInputError(f"unsupported dtype {array.dtype}")
    if array.size == 0:
        raise TincInputError(f"input is empty (shape {array.shape})")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            raise TincInputError(f"input contains {int(np.isnan(array).sum())} NaN and {int(np.isinf(array).sum())} infinite values")
    return array


def channels_last(array: np.ndarray, channel_axis: int | None) -> tuple[tuple[int, ...], np.ndarray]:
    """(spatial shape, the array with its channels on a last axis, a length-1 one without channels)."""
    if channel_axis is None:
        data = array[..., None]
    else:
        if not -array.ndim <= channel_axis < array.ndim:
            raise TincConfigError(f"channel_axis {channel_axis} is out of range for a {array.ndim}-D array")
        data = np.moveaxis(array, channel_axis, -1)
    spatial = data.shape[:-1]
    if not 1 <= len(spatial) <= MAX_SPATIAL_DIMS:
        raise TincInputError(f"{len(spatial)}-D data is not supported: tinc handles 1 to {MAX_SPATIAL_DIMS} spatial dimensions")
    return tuple(int(s) for s in spatial), data


def normalise(data: np.ndarray, low: float, high: float, value_range: tuple[float, float]) -> np.ndarray:
    a, b = value_range
    scale = (b - a) / (high - low) if high > low else 0.0
    return ((data.astype(np.float64) - low) * scale + a).astype(np.float32)


def prediction(normalised: np.ndarray, header: Header) -> np.ndarray:
    """The networks' output in the data's units (float64), before clipping and rounding:
    what a correction (`tinc.correction`) is added to. Basic IEEE-754 float64 operations
    only, so the same float32 input gives the same values on any machine."""
    a, b = header.value_range
    low, high = header.range
    return (normalised.astype(np.float64) - a) * ((high - low) / (b - a)) + low


def restore(normalised: np.ndarray, header: Header, correction: np.ndarray | float | None = None) -> np.ndarray:
    """Undo the normalisation, add the `correction` (data units, channels last, as
    `normalised`), clip to the original range and cast to the original dtype."""
    low, high = header.range
    values = prediction(normalised, header)
    if correction is not None:
        values = values + correction
    values = np.clip(values, low, high)
    if np.isnan(values).any():  # only a forged file's weights can make the networks give NaN
        raise TincFormatError("the .tinc file decodes to NaN: the file is corrupted")
    dtype = np.dtype(header.dtype)
    if dtype.kind in "ui":
        # float64 rounds the largest int64 / uint64 up past the type's end, where a cast wraps
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, np.nextafter(float(info.max), 0) if int(float(info.max)) > info.max else info.max)
    channel_axis = header.channel_axis
    if channel_axis is None:
        values = values[..., 0]
    else:
        values = np.moveaxis(values, -1, channel_axis)
    return values.astype(dtype)
