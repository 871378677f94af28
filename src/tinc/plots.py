"""Pictures people would rather look at than read: slices of original, reconstruction, error."""

from __future__ import annotations

import numpy as np


def rgb_axis(array: np.ndarray) -> int | None:
    """-1 for an H x W x 3|4 image, so pictures keep its colours; None for anything else."""
    return -1 if array.ndim == 3 and array.shape[-1] in (3, 4) and min(array.shape[:2]) > 4 else None


def middle_slice(array: np.ndarray, channel_axis: int | None = None) -> np.ndarray:
    """The plane of the two longest axes, through the middle of every other axis (channels kept)."""
    array = np.asarray(array)
    if channel_axis is not None:
        array = np.moveaxis(array, channel_axis, -1)
    spatial = array.ndim - (channel_axis is not None)
    keep = sorted(sorted(range(spatial), key=lambda axis: -array.shape[axis])[:2])
    index = tuple(slice(None) if axis in keep or axis >= spatial else array.shape[axis] // 2 for axis in range(array.ndim))
    plane = array[index]
    return plane[None] if len(keep) == 1 else plane


def save_comparison(original: np.ndarray, reconstruction: np.ndarray, path, title: str = "", channel_axis: int | None = None) -> None:
    """Write a PNG: original | reconstruction | absolute error, one middle slice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = middle_slice(original, channel_axis).astype(np.float64)
    b = middle_slice(reconstruction, channel_axis).astype(np.float64)
    error = np.abs(a - b)
    if error.ndim == 3:
        error = error.mean(axis=-1)
    low, high = float(np.min(a)), float(np.max(a))
    figure, axes = plt.subplots(1, 3, figsize=(12, 4.4), constrained_layout=True)
    for ax, image, name in zip(axes[:2], (a, b), ("original", "reconstruction")):
        shown = (image - low) / max(high - low, 1e-12) if image.ndim == 3 else image
        ax.imshow(np.clip(shown, 0, 1) if image.ndim == 3 else shown, cmap="gray", vmin=None if image.ndim == 3 else low, vmax=None if image.ndim == 3 else high)
        ax.set_title(name)
    shown = axes[2].imshow(error, cmap="magma")
    axes[2].set_title(f"|error| (max {error.max():.4g})")
    figure.colorbar(shown, ax=axes[2], shrink=0.8)
    for ax in axes:
        ax.set_axis_off()
    if title:
        figure.suptitle(title)
    figure.savefig(path, dpi=100)
    plt.close(figure)
