"""Tree geometry: how the array is split into nested blocks, and moving data in and out of blocks.

A tree of depth L splits the array L times. At each level every axis long enough (at
least half the longest one, and at least `MIN_SPLIT_EXTENT` voxels) is halved, so cubes get
the paper's 2^N children per node while thin volumes, images and short time axes are
split only where it makes sense. Leaves are numbered so that the children of one parent
are contiguous: node i of level l has children i*c .. i*c + c - 1 at level l + 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

MIN_SPLIT_EXTENT = 8  # splitting blocks below 4 voxels per axis leaves nothing to learn


def choose_splits(shape: tuple[int, ...], depth: int) -> tuple[tuple[int, ...], ...]:
    """Per level, the split factor (1 or 2) of every axis. May return fewer than `depth` levels."""
    grid = [1] * len(shape)
    splits = []
    for _ in range(depth):
        extents = [math.ceil(size / g) for size, g in zip(shape, grid)]
        longest = max(extents)
        split = tuple(2 if e >= MIN_SPLIT_EXTENT and 2 * e > longest else 1 for e in extents)
        if max(split) == 1:
            break
        grid = [g * s for g, s in zip(grid, split)]
        splits.append(split)
    return tuple(splits)


def grid_coordinates(block: tuple[int, ...]) -> np.ndarray:
    """[prod(block), ndim] float32: `block` samples per axis spanning [-1, 1], row-major."""
    axes = [np.linspace(-1.0, 1.0, b) if b > 1 else np.zeros(1) for b in block]
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=-1).astype(np.float32)


@dataclass(frozen=True)
class TreeLayout:
    """Spatial shape and per-level splits; everything else derives from them."""

    shape: tuple[int, ...]
    splits: tuple[tuple[int, ...], ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def depth(self) -> int:
        return len(self.splits)

    @cached_property
    def children(self) -> tuple[int, ...]:
        """Children per node, for each level below the root."""
        return tuple(int(np.prod(s)) for s in self.splits)

    @cached_property
    def nodes_per_level(self) -> tuple[int, ...]:
        counts = [1]
        for c in self.children:
            counts.append(counts[-1] * c)
        return tuple(counts)

    @property
    def leaves(self) -> int:
        return self.nodes_per_level[-1]

    @cached_property
    def grid(self) -> tuple[int, ...]:
        """Leaf blocks along each axis."""
        grid = np.ones(self.ndim, dtype=np.int64)
        for s in self.splits:
            grid *= s
        return tuple(int(g) for g in grid)

    @cached_property
    def block_shape(self) -> tuple[int, ...]:
        return tuple(math.ceil(size / g) for size, g in zip(self.shape, self.grid))

    @property
    def block_voxels(self) -> int:
        return int(np.prod(self.block_shape))

    @property
    def padded_shape(self) -> tuple[int, ...]:
        return tuple(g * b for g, b in zip(self.grid, self.block_shape))

    @cached_property
    def leaf_positions(self) -> np.ndarray:
        """[leaves, ndim] grid position of each leaf, in tree order."""
        positions = np.zeros((1, self.ndim), dtype=np.int64)
        for split in self.splits:
            offsets = np.indices(split).reshape(self.ndim, -1).T
            positions = (positions[:, None, :] * np.array(split) + offsets[None]).reshape(-1, self.ndim)
        return positions

    @cached_property
    def _leaf_order(self) -> np.ndarray:
        """Row-major grid index of each leaf."""
        return np.ravel_multi_index(tuple(self.leaf_positions.T), self.grid)

    def block_coordinates(self) -> np.ndarray:
        """[block_voxels, ndim] float32 local coordinates in [-1, 1], shared by every leaf."""
        return grid_coordinates(self.block_shape)

    def to_blocks(self, array: np.ndarray, fill=None) -> np.ndarray:
        """[*shape, C] -> [leaves, block_voxels, C]; padding replicates edges, or is `fill`."""
        channels = array.shape[-1]
        pad = [(0, p - s) for p, s in zip(self.padded_shape, self.shape)] + [(0, 0)]
        if any(p[1] for p in pad):
            array = np.pad(array, pad, mode="edge") if fill is None else np.pad(array, pad, constant_values=fill)
        interleaved = [n for g, b in zip(self.grid, self.block_shape) for n in (g, b)]
        x = array.reshape(interleaved + [channels])
        n = self.ndim
        x = x.transpose([2 * i for i in range(n)] + [2 * i + 1 for i in range(n)] + [2 * n])
        x = x.reshape(int(np.prod(self.grid)), self.block_voxels, channels)
        return x[self._leaf_order]

    def valid_mask(self) -> np.ndarray:
        """[leaves, block_voxels] True where a block voxel lies inside the array (not padding)."""
        return self.to_blocks(np.ones(self.shape + (1,), dtype=bool), fill=False)[..., 0]

    def from_blocks(self, blocks: np.ndarray) -> np.ndarray:
        """[leaves, block_voxels, C] -> [*shape, C], padding cropped away."""
        channels = blocks.shape[-1]
        ordered = np.empty_like(blocks)
        ordered[self._leaf_order] = blocks
        n = self.ndim
        x = ordered.reshape(tuple(self.grid) + tuple(self.block_shape) + (channels,))
        x = x.transpose([j for i in range(n) for j in (i, n + i)] + [2 * n])
        x = x.reshape(self.padded_shape + (channels,))
        return x[tuple(slice(0, s) for s in self.shape)]
