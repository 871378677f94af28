"""OME-Zarr output (NGFF 0.5): level 0 written region by region in the input's axis order,
then 2x block-mean levels over the spatial axes until the largest fits one chunk."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .axes import default_axes, ngff_axes, ngff_order
from .errors import TincConfigError, TincInputError
from .io import check_writable, native_dtype

MAX_LEVELS = 8


class Level0:
    """Level 0 of an OME-Zarr output, written in the input's axis order: a region of the
    input goes, transposed to OME-Zarr's axis order, to the matching region of the array.
    Pickles (a `zarr.Array` and a permutation), so Dask tasks write through it."""

    def __init__(self, array, order: Sequence[int]):
        self.array = array
        self.order = list(order)

    def __setitem__(self, region: tuple[slice, ...], values: np.ndarray) -> None:
        self.array[tuple(region[i] for i in self.order)] = np.transpose(values, self.order)


@contextlib.contextmanager
def ome_zarr_output(path, shape: tuple[int, ...], dtype: np.dtype, chunks: tuple[int, ...], axes: str | None = None,
                    spacing: Sequence[float] | None = None):
    """Yield level 0 (a `Level0`, indexed in the input's axes) of an OME-Zarr group built in
    a temporary directory; on success add the downsampled levels and the NGFF metadata,
    then move it to `path`. `axes` (letters of `tinc.axes`, one per input axis; by default
    from the shape) name the axes and set their OME-Zarr order; `spacing` (per input axis)
    becomes level 0's scale."""
    import zarr

    path = Path(path)
    if path.exists():
        raise TincInputError(f"{path}: exists; remove it or choose another output")
    if not 2 <= len(shape) <= 5:
        raise TincConfigError(f"{path}: OME-Zarr holds 2 to 5 axes, the array has {len(shape)}; write .tif or .npy")
    axes = axes or default_axes(shape)
    order = ngff_order(axes)
    stored_shape, stored_chunks = tuple(shape[i] for i in order), tuple(chunks[i] for i in order)
    letters = "".join(axes[i] for i in order)
    spatial = [i for i, a in enumerate(letters) if a in "ZYX"]
    check_writable(path)
    temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.part-", suffix=".zarr", dir=path.parent if str(path.parent) else "."))
    try:
        group = zarr.open_group(temporary, mode="w")
        level0 = group.create_array("0", shape=stored_shape, chunks=stored_chunks, dtype=native_dtype(dtype), fill_value=0)
        yield Level0(level0, order)
        shapes = pyramid_shapes(stored_shape, stored_chunks, spatial)
        for level in range(1, len(shapes)):
            _downsample(group[str(level - 1)], group.create_array(str(level), shape=shapes[level], chunks=stored_chunks,
                                                                  dtype=native_dtype(dtype), fill_value=0), spatial)
        scale = None if spacing is None else [float(spacing[i]) for i in order]
        group.attrs["ome"] = _multiscales(path.name, letters, len(shapes), scale)
        if order != sorted(order):  # how to read it back in the input's order (`tinc eval` does)
            group.attrs["tinc"] = {"axes": axes, "order": order}
        os.replace(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def _spatial_axes(ndim: int) -> list[int]:
    """The last three axes (or two) of an array named only by its shape."""
    return list(range(max(0, ndim - 3), ndim))


def pyramid_shapes(shape: tuple[int, ...], chunks: tuple[int, ...], spatial: Sequence[int] | None = None) -> list[tuple[int, ...]]:
    """Level shapes: the `spatial` axes (default: the last three) halved (rounded down)
    until the largest fits one chunk."""
    axes = _spatial_axes(len(shape)) if spatial is None else list(spatial)
    shapes = [tuple(shape)]
    while len(shapes) < MAX_LEVELS and axes:
        last = shapes[-1]
        if all(last[a] <= chunks[a] for a in axes) or any(last[a] < 2 for a in axes):
            break
        shapes.append(tuple(s // 2 if a in axes else s for a, s in enumerate(last)))
    return shapes


def _downsample(source, target, spatial: Sequence[int]) -> None:
    """Fill `target` with 2x2(x2) block means of `source` over the `spatial` axes, a pair of target chunks per task."""
    import dask.array as da

    factors = {a: (2 if a in spatial else 1) for a in range(source.ndim)}
    full = da.from_zarr(source, chunks=tuple(c * factors[a] for a, c in enumerate(target.chunks)))
    trimmed = full[tuple(slice(0, t * factors[a]) for a, t in enumerate(target.shape))]
    means = da.coarsen(np.mean, trimmed.astype(np.float64), factors)
    dtype = np.dtype(target.dtype)
    if dtype.kind in "ui":
        means = da.rint(means)
    da.store(means.astype(dtype), target, lock=False)


def _multiscales(name: str, letters: str, levels: int, scale: Sequence[float] | None = None) -> dict:
    ndim = len(letters)
    scale = [1.0] * ndim if scale is None else list(scale)
    datasets = [{"path": str(level), "coordinateTransformations": [
        {"type": "scale", "scale": [scale[a] * 2.0 ** level if letters[a] in "ZYX" else scale[a] for a in range(ndim)]}]}
        for level in range(levels)]
    return {"version": "0.5", "multiscales": [{"name": name, "axes": ngff_axes(letters), "datasets": datasets}]}
