"""What users open and write: a `.tinc` file or a chunked store as a lazy array (`TincArray`,
`TincStore`, also as Dask arrays), and a decode written to a file (`write_decoded`), streamed
a group of leaf blocks at a time when it is too big for memory. The decoding itself is
`tinc.decoder`'s.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .axes import input_axes, nifti_header, resampled_metadata, spacing_for
from .boxes import Box, box_shape, chunk_boxes, clipped
from .format import MAX_DECODE_VOXELS
from .decoder import Decoder, Sampling, parse_roi
from .errors import TincConfigError, TincError, TincInputError
from .io import atomic_path, check_fits_format, format_of, memmap_output, write
from .ome_zarr import ome_zarr_output
from .volume import is_zarr_path

if TYPE_CHECKING:
    import dask.array

STREAM_BYTES = 256 << 20  # outputs above this many float32 bytes are written through a memory map
CHUNK_VOXELS_LOG2 = 21  # Dask chunks of about 2^21 voxels: few tasks, each a few MB


def write_decoded(path, decoder: Decoder, roi=None, scale: float | None = None, shape: Sequence[int] | str | None = None,
                  stream_bytes: int | None = None) -> tuple[tuple[int, ...], np.dtype]:
    """Decode into the file `path` (format by extension); returns the written shape and dtype.

    `.npy` and TIFF outputs above `stream_bytes` (as float32) are filled a group of leaf
    blocks at a time through a memory map, so memory stays bounded by the group, not the
    volume. Other formats and smaller outputs are decoded in memory. A `.zarr` path gets
    an OME-Zarr multiscale group, streamed one chunk of leaf blocks at a time.
    """
    if is_zarr_path(path):
        sampling = decoder.sampling(scale, shape)
        return write_ome_zarr(path, decoder, parse_roi(roi, decoder.output_shape(sampling)), sampling)
    kind = format_of(path)
    stream_bytes = STREAM_BYTES if stream_bytes is None else stream_bytes
    sampling = decoder.sampling(scale, shape)
    box = parse_roi(roi, decoder.output_shape(sampling))
    out_shape = box_shape(box)
    check_fits_format(path, out_shape, decoder.dtype)  # before the decoding, not after
    metadata = _nifti_cropped(decoder, box) if roi is not None and sampling == decoder.sampling() else decoder.metadata
    if sampling != decoder.sampling():  # a DICOM input's spacing follows the new grid
        metadata = resampled_metadata(metadata, decoder.sampling().shape, sampling.shape)
    if decoder.channel_axis is not None:  # names a TIFF output's axes (`tinc.io.ome_tiff_options`)
        metadata = {**metadata, "channel_axis": decoder.channel_axis}
    if kind not in ("npy", "tiff") or math.prod(out_shape) * 4 <= stream_bytes:
        array = decoder.decode(roi, scale, shape)
        write(path, array, metadata)
        return array.shape, array.dtype
    dtype = decoder.dtype.newbyteorder("=") if kind == "tiff" else decoder.dtype  # TIFF maps only native order
    with atomic_path(path) as temporary:
        try:
            out = memmap_output(temporary, kind, out_shape, dtype, metadata)
            decoder.decode_into(out, box, sampling)
            out.flush()
            del out  # unmap before the file is renamed into place
        except (TincError, OSError):  # atomic_path names an OSError (disk full, permissions)
            raise
        except Exception as error:
            raise TincInputError(f"{path}: cannot write {kind} ({error})") from None
    return out_shape, np.dtype(dtype)


def write_ome_zarr(path, decoder: Decoder, box: Box, sampling: Sampling) -> tuple[tuple[int, ...], np.dtype]:
    """Stream the `box` of a `.tinc` decode into an OME-Zarr group, one level-0 chunk at a time.

    Chunks are whole numbers of leaf blocks (about 64 voxels a side), so each leaf block
    is evaluated once and memory holds one chunk, not the volume. Axes are named from the
    file's metadata (`tinc.axes.input_axes`); a NIfTI or DICOM spacing becomes the scale.
    Returns the shape as stored (OME-Zarr's axis order) and the dtype.
    """
    shape = box_shape(box)
    block = list(sampling.block)
    if decoder.channel_axis is not None:
        block.insert(decoder.channel_axis, shape[decoder.channel_axis])
    chunks = tuple(min(s, b * max(1, -(-64 // b))) for s, b in zip(shape, block))
    dtype = decoder.dtype.newbyteorder("=")
    axes = input_axes(decoder.shape, decoder.channel_axis, decoder.metadata)
    metadata = decoder.metadata
    if sampling != decoder.sampling():
        metadata = resampled_metadata(metadata, decoder.sampling().shape, sampling.shape)
    spacing = spacing_for(axes, metadata)
    if spacing is not None and sampling != decoder.sampling() and "nifti_header" in metadata:
        spatial = [i for i in range(len(shape)) if i != decoder.channel_axis]
        for i, old, new in zip(spatial, decoder.sampling().shape, sampling.shape):
            spacing[i] *= old / new
    with ome_zarr_output(path, shape, dtype, chunks, axes, spacing) as level0:
        for _, local in chunk_boxes(shape, chunks):
            local = clipped(local, shape)
            out = np.empty(box_shape(local), dtype=dtype)
            decoder.decode_into(out, tuple((o + a, o + b) for (o, _), (a, b) in zip(box, local)), sampling)
            level0[tuple(slice(a, b) for a, b in local)] = out
    order = level0.order
    return tuple(shape[i] for i in order), np.dtype(dtype)


CIFTI_INTENTS = (3000, 3100)  # the NIfTI intent codes reserved for CIFTI-2


def _nifti_cropped(decoder: Decoder, box: Box) -> dict:
    """Metadata whose NIfTI header describes the region: its shape, and an affine moved to
    the region's first voxel, so a cropped volume keeps its world coordinates; without the
    header's extensions."""
    metadata = dict(decoder.metadata)
    if "nifti_header" not in metadata:
        return metadata
    header = nifti_header(metadata["nifti_header"])
    affine = header.get_best_affine()
    corner = np.zeros(4)
    corner[3] = 1
    spatial = min(3, len(box))
    corner[:spatial] = [a for a, _ in box[:spatial]]
    moved = affine.copy()
    moved[:, 3] = affine @ corner
    header.set_data_shape(box_shape(box))
    for code, setter in ((header["sform_code"], header.set_sform), (header["qform_code"], header.set_qform)):
        if int(code) > 0:
            setter(moved, code=int(code))
    # extensions may describe the whole array (a CIFTI matrix's rows and columns), and a
    # CIFTI intent (3000-3099) without its extension is a file CIFTI readers refuse
    if metadata.pop("nifti_extensions", None) is not None and CIFTI_INTENTS[0] <= int(header["intent_code"]) < CIFTI_INTENTS[1]:
        header.set_intent(0)
    metadata["nifti_header"] = header.binaryblock
    return metadata


class _LazyArray:
    """What `TincArray` and `TincStore` share: numpy's array attributes, `len()`, `repr()` and
    `np.asarray(...)`, which reads `[...]` through the subclass's `__getitem__`."""

    def __init__(self, shape: Sequence[int], dtype, metadata: dict):
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self.size = math.prod(self.shape)
        self.metadata = metadata

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._repr_head()}shape={self.shape}, dtype={self.dtype})"

    def _repr_head(self) -> str:
        """What the repr names before the shape."""
        return ""

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = self[...]
        return array if dtype is None else array.astype(dtype)


class TincArray(_LazyArray):
    """A `.tinc` file opened lazily: indexing decodes only the leaf blocks it touches.

    Supports `.shape`, `.dtype`, `.ndim`, `len()`, `np.asarray(...)` and `[...]` with
    integers, step-1 slices and `...`; other indices raise `TincConfigError`. Also
    `.channel_axis` (None without one) and `.value_range`, the input's (low, high).
    """

    def __init__(self, data: bytes, device: str = "cpu", max_voxels: int = MAX_DECODE_VOXELS):
        self._decoder = Decoder(data, device, max_voxels)
        self._data = data  # hashed only if a Dask graph needs a name for the file
        super().__init__(self._decoder.shape, self._decoder.dtype, self._decoder.metadata)
        self.channel_axis = self._decoder.channel_axis
        low, high = self._decoder.header.range
        self.value_range = (float(low), float(high))

    @classmethod
    def from_file(cls, path, device: str = "cpu", max_voxels: int = MAX_DECODE_VOXELS) -> "TincArray":
        if not os.path.isfile(path):
            raise TincInputError(f"{path}: no such file")
        with open(path, "rb") as handle:
            return cls(handle.read(), device, max_voxels)

    @property
    def leaves_evaluated(self) -> int:
        """Leaf blocks evaluated by the last read."""
        return self._decoder.leaves_evaluated

    @functools.cached_property
    def _digest(self) -> str:
        """Names the file's Dask tasks: the same for the same bytes, whatever opened them."""
        return hashlib.sha1(bytes(self._data)).hexdigest()[:16]

    def __getitem__(self, key) -> np.ndarray:
        box, drop = _index_box(key, self.shape)
        if any(a >= b for a, b in box):  # an empty selection, as numpy gives it
            return np.empty(tuple(max(b - a, 0) for a, b in box), dtype=self.dtype)[drop]
        return self._decoder.decode(roi=tuple(slice(a, b) for a, b in box))[drop]

    def to_dask(self, scale: float | None = None, order: Sequence[int] | None = None) -> "dask.array.Array":
        """A `dask.array.Array` of the decode (on the grid of `scale`, as `decompress`),
        chunked in groups of whole leaf blocks of about 2^21 voxels; computing a chunk, or
        any slice of one, evaluates only the leaf blocks it touches. With `order`, axis i
        is the decode's axis order[i], and length-1 axes left out of it are dropped (the
        napari reader's view)."""
        return _Region(self._decoder, self._decoder.sampling(scale), self._digest, order).to_dask()


class TincStore(_LazyArray):
    """A chunked tinc Zarr array (`tinc compress ... -o OUT.zarr`) opened lazily: each Zarr
    chunk is one tree, decoded when a read touches it. Same surface as `TincArray`, less
    `.value_range` (each chunk has its own), plus `.chunks`."""

    def __init__(self, path):
        from .zarr_store import codec_channel_axis, input_metadata, open_compressed  # zarr loads only for stores

        self.path = str(path)
        self._array = open_compressed(self.path)
        super().__init__(self._array.shape, self._array.dtype, input_metadata(self._array, self.path))
        self.chunks = tuple(int(c) for c in self._array.chunks)
        self.channel_axis = codec_channel_axis(self._array)

    def _repr_head(self) -> str:
        return f"{self.path!r}, "

    def __getitem__(self, key) -> np.ndarray:
        return np.asarray(self._array[key])

    def to_dask(self) -> "dask.array.Array":
        """A `dask.array.Array` with the store's chunks, each one tree decoded on demand."""
        import dask.array as da

        return da.from_zarr(self._array)


class _Region:
    """The decode on one sampling grid as an array-like that Dask slices: `x[box]` runs
    `Decoder.decode_into` on that box only. Dask fuses a slice of a chunk into the chunk's
    read, so a plane of a volume evaluates the plane's coordinates, not its chunks'."""

    def __init__(self, decoder: Decoder, sampling: Sampling, token: str, order: Sequence[int] | None = None):
        """`order`: axis i of this array is axis order[i] of the decode; axes left out must
        have length 1 and are dropped. Done inside the read, where Dask still fuses slices
        into it (it fuses none past a transpose or a second slice)."""
        self.decoder, self.sampling, self.token = decoder, sampling, token
        self.full = decoder.output_shape(sampling)
        self.order = list(range(len(self.full))) if order is None else list(order)
        self.dropped = [i for i in range(len(self.full)) if i not in self.order]
        if any(self.full[i] != 1 for i in self.dropped):
            raise TincConfigError(f"only length-1 axes can be dropped from {self.full}")
        self.shape = tuple(self.full[i] for i in self.order)
        self.dtype = decoder.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, key) -> np.ndarray:
        box, drop = _index_box(key, self.shape)
        source = [(0, 1)] * len(self.full)
        for axis, span in zip(self.order, box):
            source[axis] = span
        out = np.empty(tuple(max(b - a, 0) for a, b in source), dtype=self.dtype)
        if out.size:
            self.decoder.decode_into(out, tuple(source), self.sampling)
        out = np.transpose(out, self.order + self.dropped).reshape(tuple(max(b - a, 0) for a, b in box))
        return out[drop]

    def chunks(self) -> tuple[int, ...]:
        """Whole leaf blocks per chunk, about 2^21 voxels (128^3, 1448^2), channels whole."""
        spatial = max(1, sum(s > 1 for s in self.sampling.shape))  # a length-1 axis takes no share
        side = 2 ** (CHUNK_VOXELS_LOG2 / spatial)
        chunks = [min(s, b * max(1, round(side / b))) for b, s in zip(self.sampling.block, self.sampling.shape)]
        if self.decoder.channel_axis is not None:
            chunks.insert(self.decoder.channel_axis, self.decoder.channels)
        return tuple(chunks[i] for i in self.order)

    def to_dask(self) -> "dask.array.Array":
        import dask.array as da

        name = (f"tinc-{self.token}-{'x'.join(map(str, self.sampling.block))}-{'x'.join(map(str, self.sampling.shape))}"
                f"-{''.join(map(str, self.order))}")
        return da.from_array(self, chunks=self.chunks(), name=name, lock=False, asarray=False,
                             meta=np.empty((0,) * self.ndim, dtype=self.dtype))


def _index_box(key, shape: tuple[int, ...]) -> tuple[Box, tuple]:
    """numpy basic indexing -> the box to decode and the index that drops integer axes."""
    key = key if isinstance(key, tuple) else (key,)
    if sum(k is Ellipsis for k in key) > 1:
        raise TincConfigError("an index can only have a single ellipsis ('...')")
    if Ellipsis in key:
        at = key.index(Ellipsis)
        key = key[:at] + (slice(None),) * (len(shape) - len(key) + 1) + key[at + 1:]
    if len(key) > len(shape):
        raise TincConfigError(f"too many indices ({len(key)}) for an array of shape {shape}")
    key = key + (slice(None),) * (len(shape) - len(key))
    box, drop = [], []
    for axis, (k, size) in enumerate(zip(key, shape)):
        if isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)):
            if not -size <= k < size:
                raise IndexError(f"index {k} is out of bounds for axis {axis} with size {size}")
            k = int(k) % size
            box.append((k, k + 1))
            drop.append(0)
        elif isinstance(k, slice):
            a, b, step = k.indices(size)
            if step != 1:
                raise TincConfigError(f"axis {axis}: only step-1 slices are decoded lazily; slice the decoded array instead")
            box.append((a, max(a, b)))
            drop.append(slice(None))
        else:
            raise TincConfigError(f"axis {axis}: index {k!r} is not supported (integers, step-1 slices and ... are)")
    return tuple(box), tuple(drop)
