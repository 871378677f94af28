"""Stored integers to physical values (a DICOM rescale, a NIfTI scl_slope / scl_inter): in
an integer dtype where the rescale maps integers to integers, float32 otherwise."""

from __future__ import annotations

from typing import Sequence

import numpy as np

_INTEGERS = tuple(map(np.dtype, (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32)))


def physical_dtype(stored: np.dtype, slopes: Sequence[float], intercepts: Sequence[float], low: float, high: float) -> np.dtype:
    """Integers when every rescale maps integers to integers: the stored type, else the
    narrowest of at least its width, holding [low, high] (a CT stored as uint16 from 0 is
    int16 in Hounsfield units, not float32 at twice the bytes: the ratio counts the array's
    bytes); float32 otherwise."""
    if stored.kind in "iu" and all(float(v).is_integer() for v in (*slopes, *intercepts)):
        for candidate in (stored.newbyteorder("="), *_INTEGERS):  # the stored type where it holds them
            if candidate.itemsize >= stored.itemsize and np.iinfo(candidate).min <= low and high <= np.iinfo(candidate).max:
                return candidate
    return np.dtype(np.float32)


def rescaled(frames: np.ndarray, slopes: Sequence[float], intercepts: Sequence[float]) -> np.ndarray:
    """`frames` (one slope and intercept per index of the first axis) as stored when every
    rescale is the identity, else their physical values in `physical_dtype`, computed one
    frame at a time (memory stays about one output copy)."""
    if all(s == 1 and i == 0 for s, i in zip(slopes, intercepts)):
        return frames
    ends = [(float(f.min()) * s + i, float(f.max()) * s + i) for f, s, i in zip(frames, slopes, intercepts)] if frames.size else [(0, 0)]
    out = np.empty(frames.shape, physical_dtype(frames.dtype, slopes, intercepts, min(map(min, ends)), max(map(max, ends))))
    for index, (slope, intercept) in enumerate(zip(slopes, intercepts)):
        if out.dtype.kind == "f":
            out[index] = frames[index] * np.float64(slope) + np.float64(intercept)
        else:  # in the output type: integers wrap modulo 2**bits, and the result lies in the type, so it is exact
            values = out[index]
            values[...] = frames[index].astype(out.dtype, casting="unsafe")
            values *= np.array(int(slope)).astype(out.dtype)
            values += np.array(int(intercept)).astype(out.dtype)
    return out
