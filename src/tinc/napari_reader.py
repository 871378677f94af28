"""napari reader (npe2 manifest `tinc/napari.yaml`): `.tinc` files and chunked tinc Zarr
stores open as lazy Dask-backed image layers.

Nothing is decoded when a file opens: napari slices the Dask array for the plane it shows,
and Dask fuses that slice into the chunk's read (`tinc.decode.TincArray.to_dask`), so only
the visible plane's coordinates are evaluated. Axes follow `tinc.axes` (the order OME-Zarr
outputs use: time, channel, then z, y, x), a channel axis becomes napari's `channel_axis`
(or RGB), a trailing length-1 sample axis is dropped, a NIfTI or DICOM spacing is the
layer's scale, and the file's value range its contrast limits. Files above
`MULTISCALE_VOXELS` open as a multiscale image whose coarser levels are the networks
sampled on coarser grids (`--scale 0.5`, `0.25`, ...), so zooming out decodes few voxels.

This module imports napari nothing; napari imports it through the manifest.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .axes import input_axes, ngff_order, spacing_for
from .volume import is_zarr_path

MULTISCALE_VOXELS = 1 << 26  # above this, a multiscale image (a 512 x 512 x 256 volume is one level)
SMALLEST_LEVEL = 1 << 22  # halve until a level holds at most this many voxels
MAX_LEVELS = 8

LayerData = tuple[Any, dict, str]


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """napari's reader hook: `read` for a `.tinc` file or a tinc-compressed Zarr array, else None
    (so napari tries other readers, e.g. its OME-Zarr reader for OME-Zarr groups)."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    path = str(path)
    if path.lower().endswith(".tinc") and os.path.isfile(path):
        return read
    if is_zarr_path(path) and _is_tinc_store(path):
        return read
    return None


def _is_tinc_store(path: str) -> bool:
    """Whether `path` is a Zarr v3 array whose codecs include tinc's (read as JSON, no zarr import)."""
    try:
        with open(os.path.join(path, "zarr.json")) as handle:
            meta = json.load(handle)
    except (OSError, ValueError):
        return False
    return meta.get("node_type") == "array" and any(c.get("name") == "tinc" for c in meta.get("codecs", []) if isinstance(c, dict))


def read(path: str | list[str]) -> list[LayerData]:
    """Layer data for `path`: one image layer (or one per channel), lazily decoded."""
    path = str(path[0] if isinstance(path, list) else path)
    if is_zarr_path(path):
        return [_store_layer(path)]
    return [_file_layer(path)]


def _file_layer(path: str) -> LayerData:
    from .decode import TincArray

    array = TincArray.from_file(path)
    axes = input_axes(array.shape, array.channel_axis, array.metadata)
    order = _viewer_order(axes, array.shape)
    levels = [array.to_dask(order=order)]
    if math.prod(array.shape) > MULTISCALE_VOXELS:
        scale = 0.5
        while len(levels) < MAX_LEVELS and math.prod(levels[-1].shape) > SMALLEST_LEVEL:
            level = array.to_dask(scale, order)
            if level.shape == levels[-1].shape:
                break
            levels.append(level)
            scale /= 2
    spacing = spacing_for(axes, array.metadata)
    return _layer(Path(path).name, levels, "".join(axes[i] for i in order), None if spacing is None else [spacing[i] for i in order],
                  array.value_range, array.dtype)


def _store_layer(path: str) -> LayerData:
    from .decode import TincStore

    store = TincStore(path)
    axes = input_axes(store.shape, store.channel_axis, store.metadata)
    spacing = spacing_for(axes, store.metadata)
    order = _viewer_order(axes, store.shape)
    level = store.to_dask()  # a chunk is one tree, decoded whole, so a transpose here costs nothing extra
    for axis in sorted(set(range(len(axes))) - set(order), reverse=True):
        level = level[(slice(None),) * axis + (0,)]
    kept = sorted(order)
    level = level.transpose([kept.index(i) for i in order])
    return _layer(Path(path).name, [level], "".join(axes[i] for i in order), None if spacing is None else [spacing[i] for i in order],
                  _store_range(path), store.dtype)


def _viewer_order(axes: str, shape: tuple[int, ...]) -> list[int]:
    """OME-Zarr's axis order (time, channel, other, z, y, x), less a channel axis of length 1
    (a TIFF's single sample per pixel), which a viewer has no use for."""
    return [i for i in ngff_order(axes) if not (axes[i] == "C" and shape[i] == 1)]


def _store_range(path: str, limit: int = 4096) -> tuple[float, float] | None:
    """The value range over the store's chunks (each chunk's header holds its own), or None
    past `limit` chunks, where napari then estimates it."""
    from . import container
    from .errors import TincFormatError

    lows, highs = [], []
    for root, _, files in os.walk(os.path.join(path, "c")):
        for name in files:
            if len(lows) == limit:
                return None
            try:
                with open(os.path.join(root, name), "rb") as handle:
                    low, high = container.unpack(handle.read()).header.range
            except (OSError, TincFormatError):
                continue
            lows.append(low)
            highs.append(high)
    return (float(min(lows)), float(max(highs))) if lows else None


def _layer(name: str, levels: list, letters: str, spacing: list[float] | None, value_range: tuple[float, float] | None,
           dtype: np.dtype) -> LayerData:
    """napari's layer data for `levels` whose axes are `letters`: a channel axis becomes RGB
    (uint8, 3 or 4 channels before y, x) or napari's `channel_axis`, one layer per channel."""
    if len(letters) - ("C" in letters) < 2:
        from .errors import TincInputError

        raise TincInputError(f"{name}: napari shows images of 2 or more axes; this holds {levels[0].shape}")
    scale = [1.0] * len(letters) if spacing is None else [float(s) for s in spacing]
    kwargs: dict[str, Any] = {"name": name, "metadata": {"tinc_axes": letters}}
    if "C" in letters:
        c = letters.index("C")
        channels = levels[0].shape[c]
        if channels in (3, 4) and dtype == np.uint8 and len(letters) - c - 1 == 2:
            levels = [np.moveaxis(level, c, -1) for level in levels]  # napari wants RGB last
            kwargs["rgb"] = True
        else:
            kwargs["channel_axis"] = c
        letters, scale = letters[:c] + letters[c + 1:], scale[:c] + scale[c + 1:]
    kwargs["scale"] = scale
    kwargs["axis_labels"] = tuple(a.lower() for a in letters)
    if value_range is not None:
        low, high = value_range
        kwargs["contrast_limits"] = [low, high if high > low else low + 1]
    if len(levels) > 1:
        kwargs["multiscale"] = True
    return (levels if len(levels) > 1 else levels[0]), kwargs, "image"
