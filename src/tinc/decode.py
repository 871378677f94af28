"""Decode only what is asked: a region, a finer or coarser grid, or an output too big for memory.

Given its ancestors, a leaf block needs nothing from other blocks, so a request evaluates
only the leaves whose blocks it touches (their ancestors once, shared:
`TreeINR.render_leaves`), a group of leaf blocks at a time, and copies each block's part of
the request into the output, which may be a memory-mapped file. Per leaf the float32
operations are those of a full decode, so on CPU a region equals the same crop of the full
decode exactly (on a GPU the BLAS may round a smaller batch differently in the last bit).
"""

from __future__ import annotations

import hashlib
import math
import mmap
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import container
from .devices import torch_device
from .format import MAX_DECODE_VOXELS, build_model
from .values import restore
from .errors import TincConfigError, TincError, TincInputError
from .io import atomic_path, format_of, is_zarr_path, resampled_metadata, write
from .partition import grid_coordinates

if TYPE_CHECKING:
    import dask.array

STREAM_BYTES = 256 << 20  # outputs above this many float32 bytes are written through a memory map
GROUP_BYTES = 64 << 20  # float32 bytes of leaf blocks evaluated at once: bounds peak memory
CHUNK_VOXELS_LOG2 = 21  # Dask chunks of about 2^21 voxels: few tasks, each a few MB

Box = tuple[tuple[int, int], ...]  # (start, stop) per axis


@dataclass(frozen=True)
class Sampling:
    """Where the continuous tree is sampled: `block` local samples per leaf block and spatial
    axis, spanning [-1, 1] like the training grid; blocks side by side, cropped to `shape`."""

    block: tuple[int, ...]
    shape: tuple[int, ...]

    def coordinates(self) -> np.ndarray:
        """[samples, ndim] float32, the training grid's construction at this sampling."""
        return grid_coordinates(self.block)


class Decoder:
    """A parsed `.tinc` file that decodes any region of itself, on any sampling grid."""

    def __init__(self, data: bytes, device: str = "cpu", max_voxels: int = MAX_DECODE_VOXELS):
        """`max_voxels` caps the elements of any output, checked against the header before
        anything is allocated; raise it to decode arrays above 2^32 elements."""
        parsed = container.unpack(data)
        self.header = parsed.header
        self.metadata = parsed.metadata
        self.device = torch_device(device)
        self.max_voxels = max_voxels
        self.plan, self.model = build_model(parsed.header, parsed.weights, self.device, max_voxels)
        self.shape = tuple(int(s) for s in self.header["shape"])
        self.dtype = np.dtype(self.header["dtype"])
        axis = self.header.get("channel_axis")
        self.channel_axis = None if axis is None else axis % len(self.shape)
        self.channels = self.plan.channels
        self.leaves_evaluated = 0  # by the last decode: what a request cost, without timing it
        self.correction = None
        if parsed.correction is not None:  # a guaranteed maximum error: the residual on the training grid
            from .correction import decode as decode_correction

            self.correction = decode_correction(parsed.correction, tuple(self.plan.layout.shape) + (self.channels,))

    # ------------------------------------------------------------------ geometry
    def sampling(self, scale: float | None = None, shape: Sequence[int] | str | None = None) -> Sampling:
        """The grid for `scale` (one factor for every spatial axis longer than 1) or an output `shape`.

        Local coordinates are block-local, so this resamples each leaf block on its own:
        a block of b samples becomes round(b * factor) samples (more where needed to cover
        the output) spanning the same [-1, 1], and the blocks are laid side by side, then
        cropped to round(size * factor) per axis. The outermost samples of neighbouring
        blocks sit at local -1 and 1 as in training, so block borders stay where they were;
        between grid points the networks are evaluated where they were never fitted.
        Scale 1 is the training grid, hence exactly the normal decode.
        """
        layout = self.plan.layout
        if scale is not None and shape is not None:
            raise TincConfigError("give a scale or an output shape, not both")
        if scale is None and shape is None:
            return Sampling(layout.block_shape, layout.shape)
        if shape is not None:
            target = self._spatial_target(shape)
            factors = [t / s for t, s in zip(target, layout.shape)]
        else:
            try:
                scale = float(scale)
            except (TypeError, ValueError):
                raise TincConfigError(f"scale must be a number, got {scale!r}") from None
            if not math.isfinite(scale) or scale <= 0 or scale > self.max_voxels:
                raise TincConfigError(f"scale must be a positive number (of sane size), got {scale:g}")
            # a length-1 axis is no dimension of the data (a TIFF's trailing axis): it stays
            factors = [scale if s > 1 else 1.0 for s in layout.shape]
            target = [max(1, _round(s * f)) for s, f in zip(layout.shape, factors)]
        # blocks must cover the target even where rounding shrinks them
        block = tuple(max(_round(b * f), -(-t // g), 1) for b, f, t, g in zip(layout.block_shape, factors, target, layout.grid))
        elements = math.prod(target) * self.channels
        if elements > self.max_voxels:
            raise TincConfigError(f"the resampled output {tuple(target)} has {elements} elements, more than the {self.max_voxels} allowed "
                                  "(pass max_voxels= or --max-voxels to decode more)")
        return Sampling(block, tuple(target))

    def _spatial_target(self, shape: Sequence[int] | str) -> list[int]:
        if isinstance(shape, str):
            try:
                shape = [int(x) for x in shape.split(",")]
            except ValueError:
                raise TincConfigError(f"shape must be comma-separated integers, got {shape!r}") from None
        shape = list(shape)
        if len(shape) != len(self.shape):
            raise TincConfigError(f"shape {tuple(shape)} has {len(shape)} axes; the array {self.shape} has {len(self.shape)}")
        if any(not isinstance(s, (int, np.integer)) or s < 1 for s in shape):
            raise TincConfigError(f"shape {tuple(shape)} must be positive integers")
        if self.channel_axis is not None and shape[self.channel_axis] != self.channels:
            raise TincConfigError(f"shape {tuple(shape)}: the channel axis {self.channel_axis} keeps its {self.channels} channels")
        return [int(s) for i, s in enumerate(shape) if i != self.channel_axis]

    def output_shape(self, sampling: Sampling) -> tuple[int, ...]:
        """The full output shape on `sampling`, channel axis (if any) where the original had it."""
        shape = list(sampling.shape)
        if self.channel_axis is not None:
            shape.insert(self.channel_axis, self.channels)
        return tuple(shape)

    # ------------------------------------------------------------------ decoding
    def decode(self, roi=None, scale: float | None = None, shape: Sequence[int] | str | None = None) -> np.ndarray:
        """The array (or the `roi` of it, on the grid of `scale` / `shape`) in memory."""
        sampling = self.sampling(scale, shape)
        full = self.output_shape(sampling)
        box = parse_roi(roi, full)
        if sampling == self.sampling() and box == tuple((0, s) for s in full):
            return self._decode_all()
        out = np.empty(tuple(b - a for a, b in box), dtype=self.dtype)
        self.decode_into(out, box, sampling)
        return out

    def _decode_all(self) -> np.ndarray:
        """Every leaf in one pass, fastest when all is wanted (`TincCodec.decode` comes here)."""
        correction = None if self.correction is None else self.correction.values()
        return restore(self.network_values(), self.header, correction)

    def network_values(self) -> np.ndarray:
        """The networks' float32 output on the training grid, channels last, normalised:
        what the decode (and the encoder's correction) starts from."""
        layout = self.plan.layout
        coords = torch.as_tensor(layout.block_coordinates(), device=self.device)
        blocks = self.model.render(coords).cpu().numpy()
        self.leaves_evaluated = layout.leaves
        return layout.from_blocks(blocks)

    def decode_into(self, out: np.ndarray, box: Box, sampling: Sampling, group_bytes: int | None = None) -> None:
        """Write the `box` (full-array axes, output grid) of the decode into `out`, which has
        the box's shape (an ndarray or a memory map), `group_bytes` of leaf blocks at a time."""
        group_bytes = GROUP_BYTES if group_bytes is None else group_bytes
        spatial = [i for i in range(len(box)) if i != self.channel_axis]
        start = np.array([box[i][0] for i in spatial])
        stop = np.array([box[i][1] for i in spatial])
        channels = slice(*box[self.channel_axis]) if self.channel_axis is not None else None
        block = np.array(sampling.block)
        low = self.plan.layout.leaf_positions * block  # each leaf's block in output coordinates
        high = np.minimum(low + block, sampling.shape)
        first, last = np.maximum(low, start), np.minimum(high, stop)  # its part of the box
        selected = np.flatnonzero(np.all(first < last, axis=1))
        self.leaves_evaluated = len(selected)
        needed = self._needed_coordinates(selected, first - low, last - low, sampling.block)
        coords = torch.as_tensor(sampling.coordinates(), device=self.device)
        group = max(1, group_bytes // (needed.size * self.channels * 4))
        # the correction belongs to the training grid: a resampled decode has no bound
        correction = self.correction if self.correction is not None and sampling == self.sampling() else None
        for g in range(0, len(selected), group):
            leaves = selected[g:g + group]
            values = self.model.render_leaves(coords, leaves, needed).cpu().numpy()
            values = values.reshape((len(leaves),) + sampling.block + (self.channels,))
            for leaf, value in zip(leaves, values):
                local = tuple(slice(a, b) for a, b in zip(first[leaf] - low[leaf], last[leaf] - low[leaf]))
                target = [slice(a, b) for a, b in zip(first[leaf] - start, last[leaf] - start)]
                residual = None
                if correction is not None:  # on the training grid, output and array coordinates agree
                    residual = correction.values(tuple(slice(a, b) for a, b in zip(first[leaf], last[leaf])) + (slice(None),))
                piece = restore(value[local], self.header, residual)
                if channels is not None:
                    index = [slice(None)] * piece.ndim
                    index[self.channel_axis] = channels
                    piece = piece[tuple(index)]
                    target.insert(self.channel_axis, slice(None))
                out[tuple(target)] = piece
            _release_written_pages(out)

    @staticmethod
    def _needed_coordinates(leaves: np.ndarray, first: np.ndarray, last: np.ndarray, block: tuple[int, ...]) -> np.ndarray:
        """Bool per local coordinate: needed by some selected block (per-axis unions, so a
        superset). Chunks of coordinates nobody needs are skipped, e.g. for a thin slice."""
        mask = np.ones((), dtype=bool)
        for axis, extent in enumerate(block):
            wanted = np.zeros(extent, dtype=bool)
            for a, b in {(int(first[leaf, axis]), int(last[leaf, axis])) for leaf in leaves}:
                wanted[a:b] = True
            mask = np.logical_and.outer(mask, wanted)
        return mask.ravel()


def parse_roi(roi: str | slice | Sequence[slice] | None, shape: tuple[int, ...]) -> Box:
    """`roi` ("10:50,0:64,:" or a tuple of slices, one per axis of `shape`) as (start, stop) pairs.

    An empty or ":" entry, or a missing start or stop, means the whole axis or its end.
    Entries must lie inside the array and be non-empty; steps other than 1 are refused.
    """
    if roi is None:
        return tuple((0, s) for s in shape)
    if isinstance(roi, str):
        entries = [_parse_entry(text) for text in roi.split(",")]
    else:
        entries = list(roi) if isinstance(roi, (tuple, list)) else [roi]
    if len(entries) != len(shape):
        raise TincConfigError(f"roi has {len(entries)} entries; the array {tuple(shape)} has {len(shape)} axes (one start:stop each)")
    box = []
    for axis, (entry, size) in enumerate(zip(entries, shape)):
        if not isinstance(entry, slice):
            raise TincConfigError(f"roi axis {axis}: expected a slice, got {entry!r}")
        if entry.step not in (None, 1):
            raise TincConfigError(f"roi axis {axis}: only step 1 is supported, got {entry.step}")
        a = 0 if entry.start is None else entry.start
        b = size if entry.stop is None else entry.stop
        if not isinstance(a, (int, np.integer)) or not isinstance(b, (int, np.integer)):
            raise TincConfigError(f"roi axis {axis}: start and stop must be integers")
        if not 0 <= a < b <= size:
            problem = "is empty" if 0 <= b <= a <= size else f"is outside 0:{size}"
            raise TincConfigError(f"roi axis {axis}: {a}:{b} {problem}")
        box.append((int(a), int(b)))
    return tuple(box)


def _parse_entry(text: str) -> slice:
    text = text.strip()
    if text in ("", ":"):
        return slice(None)
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        return slice(*(int(p) if p.strip() else None for p in parts))
    except ValueError:
        raise TincConfigError(f"roi entry {text!r}: expected START:STOP") from None


def _release_written_pages(out: np.ndarray) -> None:
    """Write a memory-mapped output's dirty pages back and drop them from this process, so
    its resident memory holds one group of blocks rather than every page written so far."""
    mapping = getattr(out, "_mmap", None)
    if mapping is not None:
        mapping.flush()
        mapping.madvise(mmap.MADV_DONTNEED)


def write_decoded(path, decoder: Decoder, roi=None, scale: float | None = None, shape: Sequence[int] | str | None = None,
                  stream_bytes: int | None = None) -> tuple[tuple[int, ...], np.dtype]:
    """Decode into the file `path` (format by extension); returns the written shape and dtype.

    `.npy` and TIFF outputs above `stream_bytes` (as float32) are filled a group of leaf
    blocks at a time through a memory map, so memory stays bounded by the group, not the
    volume. Other formats and smaller outputs are decoded in memory. A `.zarr` path gets
    an OME-Zarr multiscale group, streamed one chunk of leaf blocks at a time.
    """
    if is_zarr_path(path):
        from .chunked import write_ome_zarr  # zarr and dask load only when needed

        sampling = decoder.sampling(scale, shape)
        return write_ome_zarr(path, decoder, parse_roi(roi, decoder.output_shape(sampling)), sampling)
    kind = format_of(path)
    stream_bytes = STREAM_BYTES if stream_bytes is None else stream_bytes
    sampling = decoder.sampling(scale, shape)
    box = parse_roi(roi, decoder.output_shape(sampling))
    out_shape = tuple(b - a for a, b in box)
    metadata = _nifti_cropped(decoder, box) if roi is not None and sampling == decoder.sampling() else decoder.metadata
    if sampling != decoder.sampling():  # a DICOM input's spacing follows the new grid
        metadata = resampled_metadata(metadata, decoder.sampling().shape, sampling.shape)
    if kind not in ("npy", "tiff") or math.prod(out_shape) * 4 <= stream_bytes:
        array = decoder.decode(roi, scale, shape)
        write(path, array, metadata)
        return array.shape, array.dtype
    dtype = decoder.dtype.newbyteorder("=") if kind == "tiff" else decoder.dtype  # TIFF maps only native order
    with atomic_path(path) as temporary:
        try:
            if kind == "npy":
                out = np.lib.format.open_memmap(temporary, mode="w+", dtype=dtype, shape=out_shape)
            else:
                import tifffile

                out = tifffile.memmap(temporary, shape=out_shape, dtype=dtype)
            decoder.decode_into(out, box, sampling)
            out.flush()
            del out  # unmap before the file is renamed into place
        except (TincError, OSError):  # atomic_path names an OSError (disk full, permissions)
            raise
        except Exception as error:
            raise TincInputError(f"{path}: cannot write {kind} ({error})") from None
    return out_shape, np.dtype(dtype)


def _nifti_cropped(decoder: Decoder, box: Box) -> dict:
    """Metadata whose NIfTI header describes the region: its shape, and an affine moved to
    the region's first voxel, so a cropped volume keeps its world coordinates."""
    metadata = dict(decoder.metadata)
    if "nifti_header" not in metadata:
        return metadata
    import nibabel

    header = nibabel.Nifti1Header(binaryblock=bytes(metadata["nifti_header"]))
    affine = header.get_best_affine()
    corner = np.zeros(4)
    corner[3] = 1
    spatial = min(3, len(box))
    corner[:spatial] = [a for a, _ in box[:spatial]]
    moved = affine.copy()
    moved[:, 3] = affine @ corner
    header.set_data_shape(tuple(b - a for a, b in box))
    for code, setter in ((header["sform_code"], header.set_sform), (header["qform_code"], header.set_qform)):
        if int(code) > 0:
            setter(moved, code=int(code))
    metadata["nifti_header"] = header.binaryblock
    return metadata


class TincArray:
    """A `.tinc` file opened lazily: indexing decodes only the leaf blocks it touches.

    Supports `.shape`, `.dtype`, `.ndim`, `len()`, `np.asarray(...)` and `[...]` with
    integers, step-1 slices and `...`; other indices raise `TincConfigError`.
    """

    def __init__(self, data: bytes, device: str = "cpu", max_voxels: int = MAX_DECODE_VOXELS):
        self._decoder = Decoder(data, device, max_voxels)
        self._digest = hashlib.sha1(bytes(data)).hexdigest()[:16]  # names the file's Dask tasks
        self.shape = self._decoder.shape
        self.dtype = self._decoder.dtype
        self.ndim = len(self.shape)
        self.size = math.prod(self.shape)
        self.metadata = self._decoder.metadata

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

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"TincArray(shape={self.shape}, dtype={self.dtype})"

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = self._decoder.decode()
        return array if dtype is None else array.astype(dtype)

    def __getitem__(self, key) -> np.ndarray:
        box, drop = _index_box(key, self.shape)
        if any(a >= b for a, b in box):  # an empty selection, as numpy gives it
            return np.empty(tuple(max(b - a, 0) for a, b in box), dtype=self.dtype)[drop]
        return self._decoder.decode(roi=tuple(slice(a, b) for a, b in box))[drop]

    def to_dask(self, scale: float | None = None) -> "dask.array.Array":
        """A `dask.array.Array` of the decode (on the grid of `scale`, as `decompress`),
        chunked in groups of whole leaf blocks of about 2^21 voxels; computing a chunk, or
        any slice of one, evaluates only the leaf blocks it touches."""
        return _Region(self._decoder, self._decoder.sampling(scale), self._digest).to_dask()

    def _to_dask_ordered(self, order: Sequence[int], scale: float | None = None) -> "dask.array.Array":
        """`to_dask` with axes permuted by `order`, length-1 axes left out of it dropped (the
        napari reader's view)."""
        return _Region(self._decoder, self._decoder.sampling(scale), self._digest, order).to_dask()


class TincStore:
    """A chunked tinc Zarr array (`tinc compress ... -o OUT.zarr`) opened lazily: each Zarr
    chunk is one tree, decoded when a read touches it. Same surface as `TincArray`."""

    def __init__(self, path):
        from .chunked import open_compressed  # zarr loads only for stores

        self.path = str(path)
        self._array = open_compressed(self.path)
        self.shape = tuple(int(s) for s in self._array.shape)
        self.dtype = np.dtype(self._array.dtype)
        self.ndim = len(self.shape)
        self.size = math.prod(self.shape)
        self.metadata: dict = {}
        self.chunks = tuple(int(c) for c in self._array.chunks)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"TincStore({self.path!r}, shape={self.shape}, dtype={self.dtype})"

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = np.asarray(self._array[...])
        return array if dtype is None else array.astype(dtype)

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


def _round(x: float) -> int:
    """Half away from zero (Python's round() halves to even, which would shrink 4.5 to 4)."""
    return int(math.floor(x + 0.5))
