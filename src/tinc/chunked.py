"""Volumes larger than one machine's fit: one tree per Zarr chunk, fitted on a Dask cluster.

`compress` runs one `dask.distributed` task per chunk. A task reads its chunk plus a halo
from the memory-mapped or chunked input (never the whole volume), fits a tree with the
`tinc` Zarr codec's configuration and writes the chunk's bytes straight into the output
Zarr array, atomically (temporary file, then rename). A chunk already in the store is
kept, so a killed run restarted with the same command finishes the rest; the array's
attribute `tinc.complete` turns true only once every chunk is written. The output is a
plain Zarr v3 array: `zarr.open(path)[...]` decodes only the chunks it touches.

`decompress` decodes chunk by chunk on Dask too, into an OME-Zarr multiscale group
(NGFF 0.5: level 0 plus 2x downsampled levels) or a memory-mapped TIFF / .npy, and
`write_ome_zarr` streams a `.tinc` file's leaf blocks into the same kind of group.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import container, metrics
from .errors import TincConfigError, TincError, TincFormatError, TincInputError
from .io import is_zarr_path
from .zarr_codec import CODEC_NAME, TincNumcodec, TincZarrCodec

if TYPE_CHECKING:
    from distributed import Client

    from .decode import Box, Decoder, Sampling

DEFAULT_CHUNK = 128
DEFAULT_HALO = 4
TEMPORARY_PREFIX = ".tinc-part-"  # chunk files being written; a killed run may leave them, a resume removes them
MAX_LEVELS = 8


# ---------------------------------------------------------------------- input
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
                raise TincInputError(f"{self.path}: cannot read as {self.kind} ({_first_line(error)})") from None
        return self._array

    def read(self, box: Box) -> np.ndarray:
        """The region `box` ((start, stop) per axis, inside the array) as an ndarray."""
        return np.asarray(self.array[tuple(slice(a, b) for a, b in box)])


def _volume_kind(path: str) -> str:
    if is_zarr_path(path) or os.path.isfile(os.path.join(path, "zarr.json")) or os.path.isfile(os.path.join(path, ".zarray")):
        return "zarr"
    name = path.lower()
    if name.endswith((".tif", ".tiff")):
        return "tiff"
    if name.endswith(".npy"):
        return "npy"
    raise TincInputError(f"{path}: chunked compression reads .zarr, .tif/.tiff or .npy, not {Path(path).suffix or 'this file'}")


def _open_zarr(path: str):
    import zarr

    node = zarr.open(path, mode="r")
    if isinstance(node, zarr.Array):
        return node
    multiscales = node.attrs.get("ome", {}).get("multiscales") or node.attrs.get("multiscales")
    if multiscales:  # OME-Zarr: the full-resolution level
        return node[multiscales[0]["datasets"][0]["path"]]
    raise TincInputError(f"{path}: is a Zarr group without OME multiscales; name the array inside it ({path}/NAME)")


def _open_tiff(path: str):
    import tifffile

    try:
        return tifffile.memmap(path, mode="r")
    except ValueError:  # compressed or tiled: read through tifffile's chunked Zarr store
        import zarr

        return zarr.open(tifffile.imread(path, aszarr=True), mode="r")


def _open_npy(path: str):
    return np.load(path, mmap_mode="r", allow_pickle=False)


_OPENERS = {"zarr": _open_zarr, "tiff": _open_tiff, "npy": _open_npy}


def chunk_shape(chunks: int | Sequence[int], shape: tuple[int, ...]) -> tuple[int, ...]:
    """`chunks` (one size for every axis, or one per axis) clipped to the array."""
    sizes = (chunks,) * len(shape) if isinstance(chunks, (int, np.integer)) else tuple(chunks)
    if len(sizes) != len(shape):
        raise TincConfigError(f"chunks {tuple(sizes)} has {len(sizes)} entries; the array {shape} has {len(shape)} axes")
    if any(int(c) < 1 for c in sizes):
        raise TincConfigError(f"chunk sizes must be positive, got {tuple(sizes)}")
    return tuple(min(int(c), s) for c, s in zip(sizes, shape))


def chunk_boxes(shape: tuple[int, ...], chunks: tuple[int, ...]) -> Iterator[tuple[tuple[int, ...], Box]]:
    """(chunk index, full chunk box) over the grid; edge boxes reach past the array."""
    grid = [range(math.ceil(s / c)) for s, c in zip(shape, chunks)]
    for index in itertools.product(*grid):
        yield index, tuple((i * c, (i + 1) * c) for i, c in zip(index, chunks))


def read_with_halo(volume: Volume, box: Box, halo: Sequence[int]) -> np.ndarray:
    """The box grown by `halo[axis]` on each side; what lies outside the array repeats its edge."""
    grown = [(a - h, b + h) for (a, b), h in zip(box, halo)]
    inside = tuple((max(a, 0), min(b, s)) for (a, b), s in zip(grown, volume.shape))
    region = volume.read(inside)
    pad = [(ia - a, b - ib) for (a, b), (ia, ib) in zip(grown, inside)]
    return np.pad(region, pad, mode="edge") if any(p != (0, 0) for p in pad) else region


# ---------------------------------------------------------------------- compress
@dataclass
class ChunkResult:
    """One chunk's outcome: its error against the input and what it cost."""

    index: tuple[int, ...]
    nbytes: int
    voxels: int  # inside the array (edge chunks have fewer)
    squared_error: float  # summed over those voxels
    low: float
    high: float
    psnr: float  # with the chunk's own peak (`metrics.peak_value`)
    seconds: float
    resumed: bool  # already in the store from an earlier run


@dataclass
class CompressSummary:
    """What `compress` did, for the CLI's closing lines and the benchmark."""

    source: str
    output: str
    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...]
    results: list[ChunkResult]
    seconds: float
    worker_peak_rss: dict[str, int] = field(default_factory=dict)  # bytes, per worker address
    metadata_bytes: int = 0  # the store's zarr.json files

    @property
    def nbytes(self) -> int:
        """The whole store: every chunk and its metadata."""
        return sum(r.nbytes for r in self.results) + self.metadata_bytes

    @property
    def ratio(self) -> float:
        return math.prod(self.shape) * self.dtype.itemsize / max(self.nbytes, 1)

    @property
    def psnr(self) -> float:
        """PSNR of the whole array, with the peak `metrics.peak_value` gives the whole input."""
        error = sum(r.squared_error for r in self.results) / sum(r.voxels for r in self.results)
        extremes = np.array([min(r.low for r in self.results), max(r.high for r in self.results)]).astype(self.dtype)
        peak = metrics.peak_value(extremes)
        return float("inf") if error == 0 else 10 * math.log10(peak * peak / error)

    @property
    def voxels_per_second(self) -> float:
        """Throughput over the chunks fitted by this run (not those resumed)."""
        fitted = sum(r.voxels for r in self.results if not r.resumed)
        return fitted / self.seconds if self.seconds > 0 else 0.0

    def worst(self, count: int = 5) -> list[ChunkResult]:
        return sorted(self.results, key=lambda r: r.psnr)[:count]

    def lines(self) -> list[str]:
        resumed = sum(r.resumed for r in self.results)
        psnrs = np.array([r.psnr for r in self.results])
        text = [
            f"{self.source} -> {self.output}: {len(self.results)} chunks of {self.chunks} "
            f"({resumed} kept from an earlier run), {self.nbytes} bytes, ratio {self.ratio:.1f}x, "
            f"PSNR {self.psnr:.2f} dB, {self.seconds:.1f} s, {self.voxels_per_second / 1e6:.3f} Mvoxel/s",
            f"chunk PSNR: min {psnrs.min():.2f}, median {np.median(psnrs):.2f}, max {psnrs.max():.2f} dB; worst: "
            + ", ".join(f"{r.index} {r.psnr:.2f} dB" for r in self.worst()),
        ]
        if self.worker_peak_rss:
            peaks = sorted(self.worker_peak_rss.values())
            text.append(f"peak memory per worker: {peaks[0] / 2**20:.0f}-{peaks[-1] / 2**20:.0f} MiB ({len(peaks)} workers)")
        return text


def compress(source, output, chunks: int | Sequence[int] = DEFAULT_CHUNK, halo: int = DEFAULT_HALO,
             scheduler: str | None = None, workers: int | None = None, **options: Any) -> CompressSummary:
    """Compress the array file `source` into the Zarr array `output`, one tree per chunk.

    `options` are `tinc.TincConfig` fields, applied to every chunk (`ratio`, `steps`,
    `time_limit` per chunk, `seed`, ...); `quiet` also hides the progress bar. Without
    `scheduler` (a `dask.distributed` address) a local cluster of `workers` processes
    (default: one per core) does the work. If `output` holds the same array from an
    earlier, interrupted run of the same settings, only its missing chunks are fitted.
    """
    if not is_zarr_path(output):
        raise TincConfigError(f"{output}: chunked compression writes a .zarr directory")
    if os.path.abspath(source) == os.path.abspath(output):
        raise TincConfigError(f"{output}: the output must not be the input")
    if options.get("channel_axis") is not None:
        raise TincConfigError("chunked compression does not take --channel-axis; chunk channels like any other axis")
    if options.get("checkpoint"):
        raise TincConfigError("chunked compression does not take --checkpoint: every chunk is written as soon as it is "
                              "fitted, and rerunning the same command resumes from the chunks already written")
    quiet = bool(options.get("quiet"))
    volume = Volume(source)
    from .values import check_array

    check_array(np.zeros(1, dtype=volume.dtype))  # the dtype, before any work starts
    chunks = chunk_shape(chunks, volume.shape)
    if options.get("max_error_rel") is not None:
        # one bound for the whole array, as for a single file: of its range, not each chunk's
        TincNumcodec(**options)  # validates the value first
        ranges = [(float(np.min(part)), float(np.max(part))) for part in (volume.read(box) for _, box in chunk_boxes(volume.shape, chunks))]
        span = max(high for _, high in ranges) - min(low for low, _ in ranges)
        options = {**options, "max_error_rel": None, "max_error": float(options["max_error_rel"]) * span}
    if not isinstance(halo, (int, np.integer)) or halo < 0:
        raise TincConfigError(f"halo must be a non-negative integer, got {halo!r}")
    # no halo along an axis held by one chunk: there is no neighbour to meet
    codec = TincNumcodec(halo=[int(halo) if c < s else 0 for c, s in zip(chunks, volume.shape)], **options)
    existed = os.path.exists(output)
    array = _open_output(output, volume, chunks, codec)
    tasks = [(index, box, array.metadata.encode_chunk_key(index)) for index, box in chunk_boxes(volume.shape, chunks)]
    config = codec.get_config()
    try:
        ratios = _chunk_ratios(array, output, volume, codec, tasks)
    except TincError:
        if not existed:  # refused before any chunk: leave nothing behind
            shutil.rmtree(output, ignore_errors=True)
        raise
    results: list[ChunkResult] = []
    with _client(scheduler, workers) as client:
        started = time.perf_counter()  # throughput of the cluster, not of its start-up
        bar = _progress(len(tasks), "compressing", quiet)
        fitted_voxels = 0
        try:
            calls = ((_compress_chunk, volume, output, key, index, box, {**config, "ratio": ratio})
                     for (index, box, key), ratio in zip(tasks, ratios))
            for result in run_windowed(client, calls):
                results.append(result)
                fitted_voxels += 0 if result.resumed else result.voxels
                if bar is not None:
                    rate = fitted_voxels / max(time.perf_counter() - started, 1e-9)
                    bar.set_postfix_str(f"{rate / 1e6:.3f} Mvoxel/s", refresh=False)
                    bar.update()
        finally:
            if bar is not None:
                bar.close()
        peak_rss = client.run(_peak_rss)
    results.sort(key=lambda r: r.index)
    summary = CompressSummary(str(source), str(output), volume.shape, volume.dtype, chunks, results,
                              time.perf_counter() - started, peak_rss)
    chunk_psnr = {array.metadata.encode_chunk_key(r.index): r.psnr for r in results}
    # the store's bytes include these attributes: measured with them written, then written again
    # with the measured figures (a digit more or less in a number is the only difference)
    for _ in range(2):
        array.update_attributes(_final_attributes(True, summary.source, summary.nbytes, summary.ratio, summary.psnr, chunk_psnr))
        summary.metadata_bytes = _metadata_bytes(output)
    return summary


def _final_attributes(complete: bool, source: str, nbytes: int, ratio: float, psnr: float, chunk_psnr: dict[str, float]) -> dict:
    return {"tinc": {"complete": complete, "source": source, "bytes": nbytes, "ratio": ratio, "psnr": psnr,
                     "chunk_psnr": chunk_psnr}}


def _metadata_bytes(store: str) -> int:
    """Bytes of the store that are not chunks: its `zarr.json` files."""
    return sum(path.stat().st_size for path in Path(store).rglob("zarr.json"))


_SURE_BUDGET = 4096
# a float's longest JSON form: the final attributes take at most this much room
_WIDEST_FLOAT = -1.2345678901234567e-300


def _chunk_ratios(array, store: str, volume: Volume, codec: TincNumcodec, tasks: list) -> list[float | None]:
    """The ratio each chunk is fitted to, so that the whole store, metadata included, is raw
    bytes / `ratio`. The attributes the run ends with are written now with their widest
    values, to be counted; the chunks share what the metadata leaves in proportion to their
    voxels inside the array, except that no chunk gets less than the smallest file that
    holds a tree (a sliver at the array's edge), which the others pay for."""
    ratio = codec.tinc.config.ratio
    if ratio is None:  # a --max-error alone: each chunk searches its own smallest file
        return [None] * len(tasks)
    array.update_attributes(_final_attributes(False, volume.path, 10 ** 18, _WIDEST_FLOAT, _WIDEST_FLOAT,
                                              {key: _WIDEST_FLOAT for _, _, key in tasks}))
    metadata = _metadata_bytes(store)
    shapes = [tuple(min(b, s) - a for (a, b), s in zip(box, volume.shape)) for _, box, _ in tasks]
    raw = np.array([math.prod(shape) * volume.dtype.itemsize for shape in shapes], dtype=np.float64)
    left = raw.sum() / ratio - metadata
    share = dict(zip(shapes, raw * left / raw.sum()))
    # a chunk given a few kilobytes holds a tree: only slivers need the (planning) search
    floors = {shape: _smallest_budget(shape, volume.dtype, codec) if share[shape] < _SURE_BUDGET else 0
              for shape in set(shapes)}
    floor = np.array([floors[shape] for shape in shapes], dtype=np.float64)
    floored = np.zeros(len(shapes), dtype=bool)
    while True:  # chunks whose share is below their floor take the floor; the rest share what remains
        budget = np.where(floored, floor, raw * max(left - floor[floored].sum(), 0.0) / max(raw[~floored].sum(), 1.0))
        newly = ~floored & (budget < floor)
        if not newly.any():
            break
        floored |= newly
    if left <= 0 or budget.sum() > left * 1.000001 or not budget.all():
        raise TincConfigError(f"ratio {ratio:g} leaves {int(raw.sum() / ratio)} bytes for the store, too few for its "
                              f"metadata ({metadata} bytes) and {len(shapes)} chunks; use a lower --ratio or larger chunks")
    return [float(r / b) for r, b in zip(raw, budget)]


def _smallest_budget(shape: tuple[int, ...], dtype: np.dtype, codec: TincNumcodec) -> int:
    """Bytes of the smallest file the codec writes for a chunk of `shape` (with its halo):
    found by planning, not fitting (0 steps), bisecting budgets up to 8 KiB."""
    halo = codec.halo_per_axis(len(shape))
    sample = np.random.default_rng(0).uniform(0, 100, tuple(s + 2 * h for s, h in zip(shape, halo))).astype(dtype)
    options = {k: v for k, v in codec.tinc.get_config().items() if k != "id"}
    raw = math.prod(shape) * dtype.itemsize
    low, high = 0, min(raw, 2 * _SURE_BUDGET)  # `high` bytes hold a tree, `low` do not
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


def _open_output(path: str, volume: Volume, chunks: tuple[int, ...], codec: TincNumcodec):
    """The output array: created, or reopened to resume when its settings match exactly."""
    import zarr

    serializer = TincZarrCodec(**codec.get_config())
    if os.path.exists(path):
        try:
            array = zarr.open_array(path, mode="r+")
        except Exception:
            raise TincInputError(f"{path}: exists and is not a Zarr array; remove it or choose another output") from None
        stored = [c for c in array.metadata.codecs if isinstance(c, TincZarrCodec)]
        if (array.shape, array.chunks, np.dtype(array.dtype)) != (volume.shape, chunks, volume.dtype.newbyteorder("=")) \
                or not stored or stored[0] != serializer:
            raise TincConfigError(f"{path}: exists with other settings (shape, chunks, dtype or codec options); "
                                  "rerun the command that created it to resume, or remove it to start over")
        for leftover in Path(path).rglob(TEMPORARY_PREFIX + "*"):  # from a killed run
            leftover.unlink(missing_ok=True)
        return array
    from .io import check_writable

    check_writable(path)
    return zarr.create_array(
        store=path, shape=volume.shape, chunks=chunks, dtype=volume.dtype.newbyteorder("="),
        serializer=serializer, compressors=None, fill_value=0,
        attributes={"tinc": {"complete": False}},
    )


def _compress_chunk(volume: Volume, store: str, key: str, index: tuple[int, ...], box: Box, config: dict) -> ChunkResult:
    """Dask task: fit one chunk unless a valid one is already stored; measure its error."""
    started = time.perf_counter()
    codec = TincNumcodec.from_config(config)
    halo = codec.halo_per_axis(volume.ndim)
    # an edge chunk is fitted, and budgeted, on the voxels inside the array; decoding pads it
    box = tuple((a, min(b, s)) for (a, b), s in zip(box, volume.shape))
    region = read_with_halo(volume, box, halo)
    inside = tuple(slice(h, h + b - a) for (a, b), h in zip(box, halo))
    original = region[inside]
    path = os.path.join(store, *key.split("/"))
    data = _stored_chunk(path)
    resumed = data is not None
    if data is None:
        try:
            data = codec.encode_with_halo(region)
        except TincError as error:  # say which chunk, as the one line the CLI prints
            raise type(error)(f"chunk {tuple(index)} ({key}): {error}") from None
        write_atomically(path, data)
    decoded = codec.decode(data)[tuple(slice(0, s.stop - s.start) for s in inside)]
    error = original.astype(np.float64) - decoded.astype(np.float64)
    return ChunkResult(
        index=tuple(index), nbytes=len(data), voxels=original.size, squared_error=float(np.sum(error * error)),
        low=float(original.min()), high=float(original.max()), psnr=metrics.psnr(original, decoded),
        seconds=time.perf_counter() - started, resumed=resumed,
    )


def _stored_chunk(path: str) -> bytes | None:
    """A chunk file's bytes if it exists and passes the container's checksum, else None."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        container.unpack(data)
    except (OSError, TincFormatError):
        return None
    return data


def write_atomically(path: str, data: bytes) -> None:
    """Write a file under a temporary name beside it, then rename: readers see all or nothing."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _peak_rss() -> int:
    """This process's peak resident memory in bytes (Linux reports kilobytes)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---------------------------------------------------------------------- cluster
@contextlib.contextmanager
def _client(scheduler: str | None, workers: int | None) -> Iterator[Client]:
    """A client of the cluster at `scheduler`, or of a local cluster started (and stopped) here.

    Local workers are processes with one thread each: a fit is single-threaded there
    (Dask's nanny sets OMP_NUM_THREADS=1), so N workers fit N chunks on N cores.
    """
    from distributed import Client, LocalCluster

    if workers is not None and workers < 1:
        raise TincConfigError(f"workers must be >= 1, got {workers}")
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as error:
            raise TincConfigError(f"cannot reach the Dask scheduler at {scheduler} ({_first_line(error)})") from None
        with client:
            yield client
        return
    with LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.CRITICAL) as cluster, Client(cluster) as client:
        # logs silenced: a failed chunk is reported once, as the CLI's one-line error
        yield client


def run_windowed(client: Client, calls: Iterable[tuple], window: int | None = None) -> Iterator[Any]:
    """Submit `(function, *args)` calls, at most `window` in flight (default: twice the
    cluster's threads), and yield results as they complete: memory on the client and the
    scheduler stays bounded however many chunks there are."""
    from distributed import as_completed

    window = window or 2 * max(sum(client.nthreads().values()), 1)
    calls = iter(calls)
    running = as_completed()
    for call in itertools.islice(calls, window):
        running.add(client.submit(*call, pure=False))
    for future in running:
        try:
            result = future.result()
        except Exception:
            for other in list(running.futures):
                other.cancel()
            raise
        future.release()
        following = next(calls, None)
        if following is not None:
            running.add(client.submit(*following, pure=False))
        yield result


def _progress(total: int, description: str, quiet: bool):
    if quiet:
        return None
    import sys

    from .progress import bar

    return bar(total=total, desc=description, unit="chunk", file=sys.stderr, dynamic_ncols=True)


# ---------------------------------------------------------------------- decompress
def open_compressed(path):
    """A complete chunked tinc array (`zarr.Array`), or a one-line error saying what it is not."""
    import zarr

    if not os.path.isdir(path):
        raise TincInputError(f"{path}: no such Zarr directory")
    try:
        array = zarr.open_array(path, mode="r")
    except Exception as error:
        raise TincInputError(f"{path}: not a Zarr array ({_first_line(error)})") from None
    if not any(isinstance(c, TincZarrCodec) for c in array.metadata.codecs):
        raise TincInputError(f"{path}: not compressed with the {CODEC_NAME} codec")
    if not array.attrs.get("tinc", {}).get("complete"):
        raise TincInputError(f"{path}: incomplete (an interrupted `tinc compress`); rerun that command to finish it")
    return array


def decompress(source, output, scheduler: str | None = None, workers: int | None = None, quiet: bool = False) -> tuple[tuple[int, ...], np.dtype]:
    """Decode the chunked array `source` into `output`: an OME-Zarr group (`.zarr`), TIFF or
    .npy (memory-mapped), chunk by chunk on a Dask cluster. Returns the shape and dtype."""
    from .io import atomic_path, check_writable

    array = open_compressed(source)
    shape, dtype = tuple(array.shape), np.dtype(array.dtype)
    name = str(output).lower()
    boxes = [tuple((a, min(b, s)) for (a, b), s in zip(box, shape)) for _, box in chunk_boxes(shape, array.chunks)]
    if is_zarr_path(output):
        from .axes import default_axes

        channel = _codec_channel_axis(array)
        axes = default_axes(shape, channel)
        with ome_zarr_output(output, shape, dtype, array.chunks, axes) as level0, _client(scheduler, workers) as client:
            calls = ((_copy_chunk, str(source), level0, box) for box in boxes)
            for _ in _drain(run_windowed(client, calls), len(boxes), quiet):
                pass
        return tuple(shape[i] for i in level0.order), dtype
    if not name.endswith((".tif", ".tiff", ".npy")):
        raise TincConfigError(f"{output}: a chunked array decompresses to .zarr (OME-Zarr), .tif or .npy")
    check_writable(output)
    with atomic_path(output) as temporary, _client(scheduler, workers) as client:
        if name.endswith(".npy"):
            out = np.lib.format.open_memmap(temporary, mode="w+", dtype=dtype, shape=shape)
        else:
            import tifffile

            out = tifffile.memmap(temporary, shape=shape, dtype=dtype, bigtiff=math.prod(shape) * dtype.itemsize > 2**31)
        calls = ((_read_chunk, str(source), box) for box in boxes)
        for box, values in _drain(run_windowed(client, calls), len(boxes), quiet):
            out[tuple(slice(a, b) for a, b in box)] = values
        out.flush()
        del out  # unmap before the file is renamed into place
    return shape, dtype


def _codec_channel_axis(array) -> int | None:
    """The channel axis the chunks were compressed with, if any."""
    for codec in array.metadata.codecs:
        if isinstance(codec, TincZarrCodec):
            return codec.codec.tinc.config.channel_axis
    return None


def _drain(results: Iterator[Any], total: int, quiet: bool) -> Iterator[Any]:
    bar = _progress(total, "decoding", quiet)
    try:
        for result in results:
            if bar is not None:
                bar.update()
            yield result
    finally:
        if bar is not None:
            bar.close()


def _read_chunk(source: str, box: Box) -> tuple[Box, np.ndarray]:
    """Dask task: one chunk of the compressed array, decoded by the Zarr codec."""
    import zarr

    return box, zarr.open_array(source, mode="r")[tuple(slice(a, b) for a, b in box)]


def _copy_chunk(source: str, level0, box: Box) -> None:
    """Dask task: decode one chunk into the same chunk of the output's level 0 (a `Level0`)."""
    import zarr

    region = tuple(slice(a, b) for a, b in box)
    level0[region] = zarr.open_array(source, mode="r")[region]


# ---------------------------------------------------------------------- OME-Zarr
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

    from .axes import default_axes, ngff_order

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
    from .io import check_writable

    check_writable(path)
    temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.part-", suffix=".zarr", dir=path.parent if str(path.parent) else "."))
    try:
        group = zarr.open_group(temporary, mode="w")
        level0 = group.create_array("0", shape=stored_shape, chunks=stored_chunks, dtype=dtype.newbyteorder("="), fill_value=0)
        yield Level0(level0, order)
        shapes = pyramid_shapes(stored_shape, stored_chunks, spatial)
        for level in range(1, len(shapes)):
            _downsample(group[str(level - 1)], group.create_array(str(level), shape=shapes[level], chunks=stored_chunks,
                                                                  dtype=dtype.newbyteorder("="), fill_value=0), spatial)
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
    from .axes import ngff_axes

    ndim = len(letters)
    scale = [1.0] * ndim if scale is None else list(scale)
    datasets = [{"path": str(level), "coordinateTransformations": [
        {"type": "scale", "scale": [scale[a] * 2.0 ** level if letters[a] in "ZYX" else scale[a] for a in range(ndim)]}]}
        for level in range(levels)]
    return {"version": "0.5", "multiscales": [{"name": name, "axes": ngff_axes(letters), "datasets": datasets}]}


def write_ome_zarr(path, decoder: Decoder, box: Box, sampling: Sampling) -> tuple[tuple[int, ...], np.dtype]:
    """Stream the `box` of a `.tinc` decode into an OME-Zarr group, one level-0 chunk at a time.

    Chunks are whole numbers of leaf blocks (about 64 voxels a side), so each leaf block
    is evaluated once and memory holds one chunk, not the volume. Axes are named from the
    file's metadata (`tinc.axes.input_axes`); a NIfTI or DICOM spacing becomes the scale.
    Returns the shape as stored (OME-Zarr's axis order) and the dtype.
    """
    from .axes import input_axes, spacing_for
    from .io import resampled_metadata

    shape = tuple(b - a for a, b in box)
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
            local = tuple((a, min(b, s)) for (a, b), s in zip(local, shape))
            out = np.empty(tuple(b - a for a, b in local), dtype=dtype)
            decoder.decode_into(out, tuple((o + a, o + b) for (o, _), (a, b) in zip(box, local)), sampling)
            level0[tuple(slice(a, b) for a, b in local)] = out
    order = level0.order
    return tuple(shape[i] for i in order), np.dtype(dtype)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

