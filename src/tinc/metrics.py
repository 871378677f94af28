"""Fidelity metrics shared by `tinc eval`, training reports and `tinc bench`; a process's peak memory."""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from .errors import TincInputError


def peak_value(original: np.ndarray) -> float:
    """Peak for PSNR, following scikit-image: the dtype's maximum for integer data.

    Signed data with negative values uses the full dtype span; floating point data uses
    the data's own range (max - min), since floats have no meaningful dtype maximum.
    """
    dtype = original.dtype
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if original.size and original.min() < 0:
            return float(info.max) - float(info.min)
        return float(info.max)
    return data_range(original)


def data_range(original: np.ndarray) -> float:
    """max - min of the original, never 0 (constant arrays get 1)."""
    if original.size == 0:
        return 1.0
    span = float(np.max(original)) - float(np.min(original))
    return span if span > 0 else 1.0


def mse(original: np.ndarray, reconstruction: np.ndarray) -> float:
    _check_pair(original, reconstruction)
    diff = original.astype(np.float64) - reconstruction.astype(np.float64)
    return float(np.mean(diff * diff))


def psnr(original: np.ndarray, reconstruction: np.ndarray, peak: float | None = None) -> float:
    """PSNR in dB with `peak` (default: `peak_value(original)`); inf for identical arrays."""
    error = mse(original, reconstruction)
    peak = peak_value(original) if peak is None else peak
    if error == 0:
        return float("inf")
    return float(10 * np.log10(peak * peak / error))


def psnr_range(original: np.ndarray, reconstruction: np.ndarray) -> float:
    """PSNR with the data's own range as peak: comparable across dtypes."""
    return psnr(original, reconstruction, peak=data_range(original))


def ssim(original: np.ndarray, reconstruction: np.ndarray) -> float:
    """N-D SSIM (7-wide window) with the data's range.

    Axes shorter than the window are iterated over rather than filtered, so thin
    volumes and time series of a few frames get the mean SSIM of their sub-volumes.
    """
    _check_pair(original, reconstruction)
    a = np.asarray(original, dtype=np.float64)
    b = np.asarray(reconstruction, dtype=np.float64)
    rng = data_range(original)
    short = [axis for axis, size in enumerate(a.shape) if size < 7]
    if len(short) == a.ndim:
        win = max(1, min(a.shape) // 2 * 2 - 1)
        if win < 3:
            return float(1.0 - np.mean((a - b) ** 2) / (rng * rng))
        return float(structural_similarity(a, b, data_range=rng, win_size=win))
    long_axes = [axis for axis in range(a.ndim) if axis not in short]
    a = np.moveaxis(a, short, range(len(short))).reshape((-1,) + tuple(a.shape[i] for i in long_axes))
    b = np.moveaxis(b, short, range(len(short))).reshape(a.shape)
    values = [structural_similarity(x, y, data_range=rng) for x, y in zip(a, b)]
    return float(np.mean(values))


def max_abs_error(original: np.ndarray, reconstruction: np.ndarray) -> float:
    """The largest |original - reconstruction|, exact for integers of any width (a float64
    difference would round 64-bit integers beyond 2^53)."""
    _check_pair(original, reconstruction)
    a, b = np.asarray(original), np.asarray(reconstruction)
    if a.size == 0:
        return 0.0
    if a.dtype.kind in "ui" and b.dtype.kind in "ui" and max(a.dtype.itemsize, b.dtype.itemsize) == 8:
        # order-preserving map of both to uint64, where the larger minus the smaller is exact
        a, b = (_as_ordered_uint64(x) for x in (a, b))
        return float(int(np.max(np.where(a > b, a - b, b - a))))
    if a.dtype.kind in "ui" and b.dtype.kind in "ui":
        return float(np.max(np.abs(a.astype(np.int64) - b.astype(np.int64))))
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def _as_ordered_uint64(x: np.ndarray) -> np.ndarray:
    if x.dtype.kind == "u":
        return x.astype(np.uint64)
    return x.astype(np.int64).view(np.uint64) ^ np.uint64(1 << 63)


def accuracy(original: np.ndarray, reconstruction: np.ndarray, threshold: float) -> float:
    """Fraction of elements on the same side of `threshold` in both arrays."""
    _check_pair(original, reconstruction)
    return float(np.mean((original > threshold) == (reconstruction > threshold)))


def evaluate(
    original: np.ndarray,
    reconstruction: np.ndarray,
    thresholds: tuple[float, ...] = (),
    compressed_bytes: int | None = None,
) -> dict:
    """All metrics in one dict: psnr, psnr_range, ssim, ratio, accuracy."""
    result = {
        "psnr": psnr(original, reconstruction),
        "psnr_range": psnr_range(original, reconstruction),
        "ssim": ssim(original, reconstruction),
        "ratio": (original.nbytes / compressed_bytes) if compressed_bytes else None,
        "max_error": max_abs_error(original, reconstruction),
        "accuracy": {str(t): accuracy(original, reconstruction, t) for t in thresholds},
    }
    return result


def _check_pair(original: np.ndarray, reconstruction: np.ndarray) -> None:
    if original.shape != reconstruction.shape:
        raise TincInputError(
            f"shapes differ: original {original.shape} vs reconstruction {reconstruction.shape}"
        )


def peak_memory() -> int:
    """This process's peak resident memory in bytes. Linux's VmHWM, not getrusage: ru_maxrss
    survives fork and exec, so a child (a Dask worker) would report the size of the process
    that started it."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) * 1024
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
