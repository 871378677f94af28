"""The decoding core: a parsed `.tinc` file that decodes only what is asked, a region, a
finer or coarser grid, or an output too big for memory (`tinc.decode` builds the lazy arrays
and the file outputs on it).

Given its ancestors, a leaf block needs nothing from other blocks, so a request evaluates
only the leaves whose blocks it touches (their ancestors once, shared:
`TreeINR.render_leaves`), a group of leaf blocks at a time, and copies each block's part of
the request into the output, which may be a memory-mapped file. Per leaf the float32
operations are those of a full decode, so on CPU a region equals the same crop of the full
decode exactly (on a GPU the BLAS may round a smaller batch differently in the last bit).
"""

from __future__ import annotations

import math
import mmap
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from . import container
from .boxes import Box, box_shape
from .devices import torch_device
from .format import MAX_DECODE_VOXELS, build_model
from .values import restore
from .errors import TincConfigError
from .partition import grid_coordinates

GROUP_BYTES = 64 << 20  # float32 bytes of leaf blocks evaluated at once: bounds peak memory


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
        self.shape = tuple(int(s) for s in self.header.shape)
        self.dtype = np.dtype(self.header.dtype)
        axis = self.header.channel_axis
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
        out = np.empty(box_shape(box), dtype=self.dtype)
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


def _round(x: float) -> int:
    """Half away from zero (Python's round() halves to even, which would shrink 4.5 to 4)."""
    return int(math.floor(x + 0.5))
