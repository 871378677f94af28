"""Regions of an array as boxes, (start, stop) per axis, and the chunk grid that tiles an
array with them: what chunked compression, OME-Zarr output and partial decodes share."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

import numpy as np

from .errors import TincConfigError

Box = tuple[tuple[int, int], ...]  # (start, stop) per axis


def chunk_shape(chunks: int | Sequence[int], shape: tuple[int, ...]) -> tuple[int, ...]:
    """`chunks` (one size for every axis, or one per axis) clipped to the array."""
    sizes = (chunks,) * len(shape) if isinstance(chunks, (int, np.integer)) else tuple(chunks)
    if len(sizes) != len(shape):
        raise TincConfigError(f"chunks {tuple(sizes)} has {len(sizes)} entries; the array {shape} has {len(shape)} axes")
    if any(int(c) < 1 for c in sizes):
        raise TincConfigError(f"chunk sizes must be positive, got {tuple(sizes)}")
    return tuple(min(int(c), s) for c, s in zip(sizes, shape))


def clipped(box: Box, shape: tuple[int, ...]) -> Box:
    """The part of `box` inside an array of `shape` (an edge chunk's box reaches past it)."""
    return tuple((a, min(b, s)) for (a, b), s in zip(box, shape))


def box_shape(box: Box) -> tuple[int, ...]:
    return tuple(b - a for a, b in box)


def chunk_boxes(shape: tuple[int, ...], chunks: tuple[int, ...]) -> Iterator[tuple[tuple[int, ...], Box]]:
    """(chunk index, full chunk box) over the grid; edge boxes reach past the array."""
    grid = [range(math.ceil(s / c)) for s, c in zip(shape, chunks)]
    for index in itertools.product(*grid):
        yield index, tuple((i * c, (i + 1) * c) for i, c in zip(index, chunks))
