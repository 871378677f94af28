"""How a chunked store's budget is shared: each chunk's ratio, so that the whole store,
chunk files and `zarr.json` together, is at most the array's raw bytes / `ratio`.

Chunks share the bytes by their voxels times the spread of their values (standard
deviation), rounded to a power of two of the mean spread: a flat chunk (background) needs
few bytes, a busy one many. At 64x, 300 steps per chunk and 64^3 chunks this gave +2.35 dB
on the ultrasound cine of `benchmarks/scale.py` and +2.50 dB on the grey-matter map against
shares by voxels alone (benchmarks/RESULTS.md, chunked compression). The power-of-two
classes keep chunks of similar spread on one budget, and so on one tree shape, which
learned starts need (`tinc.chunk_starts`).

The statistics the budget needs (each chunk's range and spread) come from one pass over the
chunks, run as tasks on the cluster (`measure_chunk`), which also gives the whole array's
range for a `--max-error-rel`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .boxes import Box, box_shape, clipped
from .errors import TincConfigError
from .volume import Volume
from .zarr_codec import TincNumcodec
from .zarr_store import final_attributes, metadata_bytes_with

_SEARCH_CEILING = 8192  # bytes: every chunk's tree fits in this, however small its budget
# a float's longest JSON form: the final attributes take at most this much room
_WIDEST_FLOAT = -1.2345678901234567e-300


@dataclass(frozen=True)
class ChunkStats:
    """What the budget needs of one chunk: the range and the spread (standard deviation) of its values."""

    low: float
    high: float
    spread: float


def measure_chunk(volume: Volume, box: Box, number: int) -> tuple[int, ChunkStats]:
    """Dask task: chunk `number`'s statistics, over its voxels inside the array."""
    values = volume.read(clipped(box, volume.shape))
    return number, ChunkStats(float(np.min(values)), float(np.max(values)), float(np.std(values, dtype=np.float64)))


def absolute_error_options(options: dict, stats: Sequence[ChunkStats]) -> dict:
    """`options` with a `max_error_rel` turned into the `max_error` it means: one bound for
    the whole array, as for a single file, of its range rather than each chunk's."""
    if options.get("max_error_rel") is None:
        return options
    span = max(s.high for s in stats) - min(s.low for s in stats)
    return {**options, "max_error_rel": None, "max_error": float(options["max_error_rel"]) * span}


def chunk_ratios(array, volume: Volume, codec: TincNumcodec, tasks: list, stats: Sequence[ChunkStats],
                 source: str) -> list[float | None]:
    """The ratio each chunk is fitted to, so that the whole store, metadata included, is raw
    bytes / `ratio`. The metadata is counted with the attributes the run ends with at their
    widest values (`source`: the input as the user named it; the input file's metadata, e.g.
    a NIfTI header); the chunks share what it leaves in proportion to their voxels inside
    the array times the class of their spreads
    (`spread_classes`), except that no chunk gets less than the smallest file that holds a
    tree (a flat chunk, a sliver at the array's edge), which the others pay for. A constant
    chunk is planned at that floor but counted at the size of its file, which is written
    without a fit (`TincNumcodec.encode_with_halo`)."""
    ratio = codec.tinc.config.ratio
    if ratio is None:  # a --max-error alone: each chunk searches its own smallest file
        return [None] * len(tasks)
    widest = final_attributes(False, source, 10 ** 18, _WIDEST_FLOAT, _WIDEST_FLOAT,
                              {key: _WIDEST_FLOAT for _, _, key in tasks}, volume.metadata)
    metadata = metadata_bytes_with(array, widest)
    boxes = [clipped(box, volume.shape) for _, box, _ in tasks]
    shapes = [box_shape(box) for box in boxes]
    raw = np.array([math.prod(shape) * volume.dtype.itemsize for shape in shapes], dtype=np.float64)
    left = raw.sum() / ratio - metadata
    spreads = np.array([s.spread for s in stats])
    weight = raw * spread_classes(spreads)
    floors = {shape: _smallest_budget(shape, volume.dtype, codec) for shape in set(shapes)}
    floor = np.array([floors[shape] for shape in shapes], dtype=np.float64)
    # a constant chunk is planned at its floor but stored without a fit, in fewer bytes (its
    # value among them: the header holds the range)
    constant = spreads == 0
    kinds = {(shape, s.low) for shape, s, c in zip(shapes, stats, constant) if c}
    sizes = {kind: _constant_bytes(*kind, volume.dtype, codec, floors[kind[0]]) for kind in kinds}
    taken = np.array([sizes[shape, s.low] if c else f for shape, s, c, f in zip(shapes, stats, constant, floor)],
                     dtype=np.float64)
    floored = np.zeros(len(shapes), dtype=bool)
    while True:  # chunks whose share is below their floor take the floor; the rest share what remains
        budget = np.where(floored, floor, weight * max(left - taken[floored].sum(), 0.0) / max(weight[~floored].sum(), 1e-300))
        newly = ~floored & (budget < floor)
        if not newly.any():
            break
        floored |= newly
    if left <= 0 or np.where(floored, taken, budget).sum() > left * 1.000001 or not budget.all():
        raise TincConfigError(f"ratio {ratio:g} leaves {int(raw.sum() / ratio)} bytes for the store, too few for its "
                              f"metadata ({metadata} bytes) and {len(shapes)} chunks; use a lower --ratio or larger chunks")
    return [float(r / b) for r, b in zip(raw, budget)]


def spread_classes(spreads: np.ndarray) -> np.ndarray:
    """Each chunk's spread relative to the mean, rounded to a power of two (0 for a constant chunk)."""
    mean = spreads.mean()
    if mean <= 0:
        return np.ones_like(spreads)
    relative = spreads / mean
    return np.where(relative > 0, 2.0 ** np.round(np.log2(np.maximum(relative, 1e-300))), 0.0)


def _constant_bytes(shape: tuple[int, ...], value: float, dtype: np.dtype, codec: TincNumcodec, budget: int) -> int:
    """Bytes of a chunk of `shape` holding only `value`, fitted to `budget`: its file, written without a fit."""
    halo = codec.halo_per_axis(len(shape))
    options = {k: v for k, v in codec.tinc.get_config().items() if k != "id"}
    trial = {**options, "ratio": math.prod(shape) * dtype.itemsize / budget}  # the chunk's own options
    region = np.full(tuple(s + 2 * h for s, h in zip(shape, halo)), value, dtype=dtype)
    return len(TincNumcodec(halo=list(halo), **trial).encode_with_halo(region)[0])


def _smallest_budget(shape: tuple[int, ...], dtype: np.dtype, codec: TincNumcodec) -> int:
    """Bytes of the smallest file the codec writes for a chunk of `shape` (with its halo):
    found by planning, not fitting (0 steps), bisecting budgets up to 8 KiB."""
    halo = codec.halo_per_axis(len(shape))
    sample = np.random.default_rng(0).uniform(0, 100, tuple(s + 2 * h for s, h in zip(shape, halo))).astype(dtype)
    if dtype.itemsize == 8 and dtype.kind in "iu":
        # a range beyond 2^53 is held as two doubles, not varints (`format.encode_header`): the
        # floor must hold the widest header a chunk of this dtype can need
        sample.flat[0] = 2**60
    options = {k: v for k, v in codec.tinc.get_config().items() if k != "id"}
    raw = math.prod(shape) * dtype.itemsize
    low, high = 0, min(raw, _SEARCH_CEILING)  # `high` bytes hold a tree, `low` do not
    while high - low > max(16, high // 16):
        middle = (low + high) // 2
        try:
            trial = {**options, "ratio": raw / middle, "steps": 0, "starts": 1, "target_psnr": None,
                     "max_error": None, "max_error_rel": None}
            TincNumcodec(halo=list(halo), **trial).encode_with_halo(sample)
            high = middle
        except TincConfigError:
            low = middle
    return high
