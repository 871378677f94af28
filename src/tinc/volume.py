"""Array files too big for memory, read region by region: Zarr (an array, or level 0 of an
OME-Zarr group), TIFF (memory-mapped, or through tifffile's chunked store when compressed)
or .npy (memory-mapped). Chunked compression reads each chunk, plus a halo, through here."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from .axes import from_ngff, tiff_metadata
from .boxes import Box
from .errors import TincError, TincInputError, first_line


def is_zarr_path(path) -> bool:
    """Whether `path` names a Zarr store (a directory ending in .zarr)."""
    return str(path).rstrip("/\\").lower().endswith(".zarr")


class Volume:
    """An array file opened for reading regions: Zarr (array, or OME-Zarr level 0), TIFF
    (memory-mapped, or through tifffile's Zarr store when compressed) or .npy (memory-mapped).

    Pickles as its path, so each Dask worker opens the file itself.
    """

    def __init__(self, path):
        self.path = str(path)
        self.kind = _volume_kind(self.path)
        if not os.path.exists(self.path):
            raise TincInputError(f"{self.path}: no such file or directory")
        self._array = None
        array = self.array
        self.shape = tuple(int(s) for s in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)
        self.metadata = _METADATA[self.kind](self.path, self.shape) if self.kind in _METADATA else {}
        """What the input file says beyond the array (a TIFF's axes, an OME-Zarr group's axes
        and scale; a staged NIfTI's header or DICOM's spacing, `tinc.io.region_volume`): the
        store keeps it for decompression."""
        self.channel_axis = self.metadata.pop("channel_axis", None)
        """A colour image's samples (negative index), which chunks fit as channels."""

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}

    @property
    def array(self):
        """The opened array (numpy memory map or zarr array), opened on first use."""
        if self._array is None:
            try:
                self._array = _OPENERS[self.kind](self.path)
            except TincError:
                raise
            except Exception as error:
                raise TincInputError(f"{self.path}: cannot read as {self.kind} ({first_line(error)})") from None
        return self._array

    def read(self, box: Box) -> np.ndarray:
        """The region `box` ((start, stop) per axis, inside the array) as an ndarray."""
        return np.asarray(self.array[tuple(slice(a, b) for a, b in box)])


def region_kind(path: str) -> str | None:
    """"zarr", "tiff" or "npy": the formats a `Volume` reads region by region; None for others."""
    if is_zarr_path(path) or os.path.isfile(os.path.join(path, "zarr.json")) or os.path.isfile(os.path.join(path, ".zarray")):
        return "zarr"
    name = path.lower()
    if name.endswith((".tif", ".tiff")):
        return "tiff"
    return "npy" if name.endswith(".npy") else None


def _volume_kind(path: str) -> str:
    kind = region_kind(path)
    if kind is None:
        raise TincInputError(f"{path}: read region by region only from .zarr, .tif/.tiff or .npy, not {Path(path).suffix or 'this file'}")
    return kind


def open_zarr(path: str):
    """The Zarr array at `path`, or the full-resolution level of the OME-Zarr group there (lazy)."""
    import zarr

    node = zarr.open(path, mode="r")
    if isinstance(node, zarr.Array):
        return node
    multiscales = _multiscales(node)
    if multiscales:  # OME-Zarr: the full-resolution level
        return node[multiscales[0]["datasets"][0]["path"]]
    raise TincInputError(f"{path}: is a Zarr group without OME multiscales; name the array inside it ({path}/NAME)")


def _multiscales(node) -> list:
    """An OME-Zarr group's multiscales (NGFF 0.5 keeps them under `ome`, earlier versions not)."""
    return node.attrs.get("ome", {}).get("multiscales") or node.attrs.get("multiscales") or []


def _zarr_metadata(path: str, shape: tuple[int, ...]) -> dict:
    """An OME-Zarr group's axes and level-0 scale (`tinc.axes.from_ngff`); nothing for an array."""
    import zarr

    node = zarr.open(path, mode="r")
    multiscales = [] if isinstance(node, zarr.Array) else _multiscales(node)
    if not multiscales:
        return {}
    try:
        transforms = multiscales[0]["datasets"][0].get("coordinateTransformations", [])
        scale = next((t.get("scale") for t in transforms if t.get("type") == "scale"), None)
        return from_ngff(list(multiscales[0].get("axes", [])), scale, shape)
    except (AttributeError, KeyError, IndexError, TypeError):  # malformed: the array reads, its axes stay the default
        return {}


def _open_tiff(path: str):
    import tifffile

    try:
        return tifffile.memmap(path, mode="r")
    except ValueError:  # compressed or tiled: read through tifffile's chunked Zarr store
        import zarr

        return zarr.open(tifffile.imread(path, aszarr=True), mode="r")


def tiff_series_axes(tiff, shape: tuple[int, ...]) -> str | None:
    """The axes (tifffile's letters) of an open TIFF's first series, where it has `shape`."""
    series = tiff.series[0] if tiff.series else None
    return series.axes if series is not None and tuple(series.shape) == tuple(shape) else None


def tiff_file_metadata(tiff, shape: tuple[int, ...]) -> dict:
    """`tinc.axes.tiff_metadata` of an open TIFF whose first series is read as `shape`."""
    return tiff_metadata(tiff_series_axes(tiff, shape), shape, tiff_voxel_sizes(tiff))


def tiff_voxel_sizes(tiff) -> dict[str, float]:
    """An open TIFF's voxel size per axis letter (X, Y, Z), from its OME-XML PhysicalSize*
    or its ImageJ spacing and resolution; {} where it gives none (a plain TIFF's resolution
    is a print density, not a voxel size)."""
    sizes: dict[str, float] = {}
    try:
        if tiff.is_ome and tiff.ome_metadata:
            pixels = next((e for e in ElementTree.fromstring(tiff.ome_metadata).iter() if e.tag.rpartition("}")[2] == "Pixels"), None)
            for a in "XYZ":
                if pixels is not None and pixels.get(f"PhysicalSize{a}"):
                    sizes[a] = float(pixels.get(f"PhysicalSize{a}"))
        elif tiff.is_imagej:
            if (tiff.imagej_metadata or {}).get("spacing"):
                sizes["Z"] = float(tiff.imagej_metadata["spacing"])
            tags = tiff.pages.first.tags
            for a, name in (("X", "XResolution"), ("Y", "YResolution")):
                numerator, denominator = tags[name].value if name in tags else (0, 0)
                if numerator:
                    sizes[a] = denominator / numerator
    except (ElementTree.ParseError, TypeError, ValueError):  # unreadable sizes: the array reads without them
        return {}
    return {a: v for a, v in sizes.items() if np.isfinite(v) and v > 0}


def _tiff_metadata(path: str, shape: tuple[int, ...]) -> dict:
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        return tiff_file_metadata(tiff, shape)


def _open_npy(path: str):
    return np.load(path, mmap_mode="r", allow_pickle=False)


_OPENERS = {"zarr": open_zarr, "tiff": _open_tiff, "npy": _open_npy}
_METADATA = {"zarr": _zarr_metadata, "tiff": _tiff_metadata}


def read_with_halo(volume: Volume, box: Box, halo: Sequence[int]) -> np.ndarray:
    """The box grown by `halo[axis]` on each side; what lies outside the array repeats its edge."""
    grown = [(a - h, b + h) for (a, b), h in zip(box, halo)]
    inside = tuple((max(a, 0), min(b, s)) for (a, b), s in zip(grown, volume.shape))
    region = volume.read(inside)
    pad = [(ia - a, b - ib) for (a, b), (ia, ib) in zip(grown, inside)]
    return np.pad(region, pad, mode="edge") if any(p != (0, 0) for p in pad) else region
