"""What each axis of an array is, from what its input said: one letter per axis, T (time),
C (channel, or a TIFF's per-pixel samples), Z, Y, X (space) or Q (anything else).

Used where axes are named for a viewer: OME-Zarr outputs and the napari reader. Inputs say
it in different ways: a TIFF's series axes (kept in a `.tinc` file's metadata as `axes`
only when they say more than the default below, so most files carry no extra bytes), a
NIfTI header (array axes i, j, k, t), a channel axis. Without anything, the default reads
the shape the way tinc has always split it: the channel axis is C, a trailing length-1 axis
(a TIFF's single sample per pixel, as tifffile returns it) is a channel of 1, and the other
axes are, from the last, X, Y, Z, T, then Q.

Also the physical size of a voxel along each axis, where the input gave one (a NIfTI
header's pixdim, a DICOM input's `spacing`, an OME-Zarr input's scale): `spacing_of`,
`spacing_for`, `resampled_metadata`.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

import numpy as np

KNOWN = "TCZYX"
# tifffile's series axes: S is samples per pixel (a colour axis), I an image sequence (unknown)
_TIFF_LETTERS = {"T": "T", "C": "C", "S": "C", "Z": "Z", "Y": "Y", "X": "X"}
NGFF = {"T": ("t", "time"), "C": ("c", "channel"), "Z": ("z", "space"), "Y": ("y", "space"), "X": ("x", "space")}


def default_axes(shape: Sequence[int], channel_axis: int | None = None) -> str:
    """The axes of `shape` when the input said nothing (see the module docstring)."""
    ndim = len(shape)
    letters = ["Q"] * ndim
    if channel_axis is not None:
        letters[channel_axis % ndim] = "C"
    elif ndim >= 3 and shape[-1] == 1:  # a trailing sample axis is no spatial dimension
        letters[-1] = "C"
    rest = [i for i in range(ndim) if letters[i] == "Q"]
    for i, name in zip(reversed(rest), "XYZT"):
        letters[i] = name
    return "".join(letters)


def tiff_samples_axis(series_axes: str, shape: Sequence[int]) -> int | None:
    """A TIFF's samples-per-pixel axis (tifffile's S, e.g. RGB) as a negative index, where it
    holds more than one sample: tinc fits it as channels, as a PNG's (benchmarks/RESULTS.md,
    "A colour TIFF's samples per pixel are channels": +1.7-2.1 dB at 64x, 11 of 12 cells gain at 64-512x)."""
    axis = series_axes.upper().find("S")
    if len(series_axes) != len(shape) or axis < 0 or shape[axis] < 2:
        return None
    return axis - len(shape)


def from_tiff(series_axes: str, shape: Sequence[int], channel_axis: int | None = None) -> str | None:
    """A TIFF's series axes (tifffile's letters) resolved against the default for `shape` and
    `channel_axis`, or None when they say nothing more than it (so nothing needs storing)."""
    default = default_axes(shape, channel_axis)
    if len(series_axes) != len(shape):
        return None
    letters = "".join(_TIFF_LETTERS.get(a, default[i]) for i, a in enumerate(series_axes.upper()))
    if letters == default or not _valid(letters):
        return None
    return letters


def tiff_metadata(series_axes: str | None, shape: Sequence[int], sizes: dict[str, float] | None = None) -> dict:
    """What a TIFF's first series (its axes, where its shape is `shape`) says beyond the
    array: the samples axis tinc fits as channels (`channel_axis`), the axes that name the
    OME-Zarr axes on decompression where they differ from the default (`axes`), and the
    voxel size along its Z, Y, X axes from `sizes` (per letter, `tinc.volume.tiff_voxel_sizes`)
    where it gives one (`spacing`)."""
    if series_axes is None:
        return {}
    metadata: dict = {}
    samples = tiff_samples_axis(series_axes, shape)
    if samples is not None:
        metadata["channel_axis"] = samples
    axes = from_tiff(series_axes, shape, samples)
    if axes:
        metadata["axes"] = axes
    letters = axes or default_axes(shape, samples)
    # an uncalibrated ImageJ file's resolution is 1 pixel per pixel: no spacing
    spacing = _zyx_spacing(letters, [(sizes or {}).get(a, 1.0) for a in letters])
    if spacing is not None:
        metadata["spacing"] = spacing
    return metadata


def from_ngff(axes: Sequence, scale: Sequence | None, shape: Sequence[int]) -> dict:
    """What an OME-Zarr level's `axes` (NGFF entries, or names) and `scale` say beyond
    `shape`, as a `.tinc` file's metadata holds it: `axes` where they differ from the
    default, and `spacing` (the scale of the Z, Y, X axes) where it is not all 1."""
    if len(axes) != len(shape):
        return {}
    names = [str(a.get("name", "") if isinstance(a, dict) else a).upper() for a in axes]
    letters = "".join(a if a in KNOWN else "Q" for a in names)
    if not _valid(letters):
        return {}
    metadata: dict = {} if letters == default_axes(shape) else {"axes": letters}
    try:
        values = [float(v) for v in scale or ()]
    except (TypeError, ValueError):
        values = []
    spacing = _zyx_spacing(letters, values) if len(values) == len(shape) else None
    if spacing is not None:
        metadata["spacing"] = spacing
    return metadata


def _zyx_spacing(letters: str, values: Sequence[float]) -> tuple[float, ...] | None:
    """The `values` (one per axis) of the Z, Y, X axes of `letters`, as a `spacing`; None
    where there are none, one is not a positive number, or all are 1 (no size given)."""
    spacing = tuple(float(v) for v, a in zip(values, letters) if a in "ZYX")
    if spacing and all(np.isfinite(v) and v > 0 for v in spacing) and set(spacing) != {1.0}:
        return spacing
    return None


def input_axes(shape: Sequence[int], channel_axis: int | None = None, metadata: dict | None = None) -> str:
    """The axes of an array of `shape`, from a `.tinc` file's or reader's `metadata`: its
    `axes` entry, else a NIfTI header's order (x, y, z, t), else `default_axes`."""
    metadata = metadata or {}
    ndim = len(shape)
    channel = None if channel_axis is None else channel_axis % ndim
    stored = metadata.get("axes")
    if isinstance(stored, (bytes, bytearray)):
        stored = bytes(stored).decode("ascii", "replace")
    if isinstance(stored, str) and len(stored) == ndim:
        letters = list(stored.upper())
        if channel is not None:  # the compress option wins over what the file said
            letters = ["Q" if a == "C" else a for a in letters]
            letters[channel] = "C"
        letters = "".join(letters)
        if _valid(letters):
            return letters
    if "nifti_header" in metadata:
        letters = ["Q"] * ndim
        if channel is not None:
            letters[channel] = "C"
        rest = [i for i in range(ndim) if letters[i] == "Q"]
        for i, name in zip(rest, "XYZT"):  # NIfTI's array axes are i, j, k, then time
            letters[i] = name
        return "".join(letters)
    return default_axes(shape, channel)


def _valid(letters: str) -> bool:
    """Each of T, C, Z, Y, X at most once, and only letters this module knows."""
    return all(letters.count(a) <= 1 for a in KNOWN) and set(letters) <= set(KNOWN + "Q")


def ngff_order(letters: str) -> list[int]:
    """The permutation (output axis -> input axis) that puts axes in OME-Zarr's order:
    time, channel, other, then space as z, y, x. ome-zarr-py refuses a channel after space
    or a time axis that is not first, so a channel-last (RGB) or time-last (NIfTI) input is
    transposed; moving a length-1 axis is only a reshape."""
    rank = {"T": 0, "C": 1, "Q": 2, "Z": 3, "Y": 4, "X": 5}
    return sorted(range(len(letters)), key=lambda i: (rank[letters[i]], i))


def ngff_axes(letters: str) -> list[dict]:
    """OME-Zarr `axes` entries for `letters` (already in NGFF order). Q axes get a name and
    no type, which NGFF allows for one axis."""
    axes = []
    for i, a in enumerate(letters):
        name, kind = NGFF.get(a, (f"q{i}" if letters.count("Q") > 1 else "q", None))
        axes.append({"name": name, "type": kind} if kind else {"name": name})
    return axes


def nifti_metadata(header) -> dict:
    """A NIfTI-1 or NIfTI-2 header kept as bytes: its block and, where it has any, its
    extensions (comments, AFNI attributes, a CIFTI file's matrix) as nibabel writes them,
    in the header's byte order."""
    from nibabel.volumeutils import native_code

    metadata = {"nifti_header": header.binaryblock}
    if header.extensions:
        buffer = io.BytesIO()
        header.extensions.write_to(buffer, byteswap=header.endianness != native_code)
        metadata["nifti_extensions"] = buffer.getvalue()
    return metadata


def nifti_extensions(metadata: dict, header) -> list:
    """The extensions `nifti_metadata` kept beside `header` (nibabel's objects; [] if none)."""
    raw = metadata.get("nifti_extensions")
    if not raw:
        return []
    from nibabel.nifti1 import Nifti1Extensions
    from nibabel.volumeutils import native_code

    return list(Nifti1Extensions.from_fileobj(io.BytesIO(bytes(raw)), len(raw), header.endianness != native_code))


def nifti_header(block: bytes):
    """The NIfTI-1 or NIfTI-2 header (told apart by their sizes) a reader kept as bytes."""
    import nibabel

    block = bytes(block)
    return (nibabel.Nifti2Header if len(block) == nibabel.Nifti2Header.sizeof_hdr else nibabel.Nifti1Header)(binaryblock=block)


def spacing_for(letters: str, metadata: dict | None) -> list[float] | None:
    """Physical size of a voxel along each axis (1 for non-spatial ones) from a NIfTI
    header's pixdim or a DICOM input's `spacing` (one per spatial axis, slice first), or
    None when the input gave none."""
    metadata = metadata or {}
    spatial = [i for i, a in enumerate(letters) if a in "ZYX"]
    values: list[float] | None = None
    if "nifti_header" in metadata:
        header = nifti_header(metadata["nifti_header"])
        zooms = [float(z) for z in header.get_zooms()]
        values = [1.0] * len(letters)
        for i, a in enumerate(letters):
            index = "XYZT".find(a)
            if 0 <= index < len(zooms) and a != "T" and np.isfinite(zooms[index]) and zooms[index] > 0:
                values[i] = zooms[index]
        return values if any(values[i] != 1.0 for i in spatial) else None
    spacing = spacing_of(metadata)
    if spacing is None:
        return None
    if len(spacing) > len(spatial):
        return None
    values = [1.0] * len(letters)
    for i, s in zip(spatial[-len(spacing):], spacing):  # DICOM: (rows, columns) or (slice, rows, columns)
        values[i] = s
    return values


def spacing_of(metadata: dict | None) -> tuple[float, ...] | None:
    """The `spacing` entry of `metadata` as floats: a tuple from a reader, or the text a
    .tinc file's metadata section holds (bytes); None when absent or not positive numbers."""
    value = (metadata or {}).get("spacing")
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, str)):
        text = value.decode("ascii", "replace") if isinstance(value, (bytes, bytearray)) else value
        value = re.findall(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", text)
    try:
        spacing = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return spacing if spacing and all(np.isfinite(s) and s > 0 for s in spacing) else None


def resampled_metadata(metadata: dict, old_shape, new_shape) -> dict:
    """`metadata` for the same extent sampled on `new_shape` instead of `old_shape` (spatial
    axes): the spacing grows or shrinks with the number of samples along each axis."""
    spacing = spacing_of(metadata)
    if spacing is None or len(spacing) != len(old_shape) or len(old_shape) != len(new_shape):
        return metadata
    return {**metadata, "spacing": tuple(s * a / b for s, a, b in zip(spacing, old_shape, new_shape))}
