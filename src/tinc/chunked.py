"""Volumes larger than one machine's fit: one tree per Zarr chunk, fitted on a Dask cluster.

This module only schedules chunk work: reading the input (`tinc.volume`), the store and its
chunk files (`tinc.zarr_store`), the budget of each chunk (`tinc.chunk_budget`) and OME-Zarr
output (`tinc.ome_zarr`) live in their own modules, and so do the sample chunks that
learn the others' start (`tinc.chunk_starts`) and what a run measured (`tinc.chunk_report`).

`compress` first reads every chunk once for its range and spread, which its budget needs
(`tinc.chunk_budget`), then runs one `dask.distributed` task per chunk; both passes run on
the cluster. A fitting task reads its chunk plus a halo
from the memory-mapped or chunked input (never the whole volume), fits a tree with the
`tinc` Zarr codec's configuration and writes the chunk's bytes straight into the output
Zarr array, atomically (temporary file, then rename). A chunk already in the store is
kept, so a killed run restarted with the same command finishes the rest; the array's
attribute `tinc.complete` turns true only once every chunk is written. The output is a
plain Zarr v3 array: `zarr.open(path)[...]` decodes only the chunks it touches.

Chunks start from the weights learned on a few sample chunks fitted first (`tinc.chunk_starts`).

`decompress` decodes chunk by chunk on Dask too, into an OME-Zarr multiscale group
(NGFF 0.5: level 0 plus 2x downsampled levels) or a memory-mapped TIFF / .npy.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import metrics
from .axes import input_axes, spacing_for
from .boxes import Box, chunk_boxes, chunk_shape, clipped
from .chunk_budget import ChunkStats, absolute_error_options, chunk_ratios, measure_chunk
from .chunk_report import ChunkResult, CompressSummary
from .chunk_starts import (DEFAULT_START_SAMPLES, START_FOLDER, load_start, sample_chunks, sample_config, save_start,
                           start_count, start_files)
from .encoder import LearnedStart
from .errors import TincConfigError, TincError, first_line
from .io import atomic_path, check_fits_format, check_writable, format_of, memmap_output, region_volume, write
from .ome_zarr import ome_zarr_output
from .volume import Volume, is_zarr_path, read_with_halo
from .zarr_codec import TincNumcodec
from .zarr_store import (codec_channel_axis, final_attributes, input_metadata, metadata_bytes_with, open_compressed, open_output,
                         stored_chunk, write_atomically)

if TYPE_CHECKING:
    from distributed import Client

DEFAULT_CHUNK = 128
DEFAULT_HALO = 4
# the variable that makes glibc trim its heap after every free, and the Dask setting whose
# None keeps Dask's nanny from setting it in the workers it starts (`_client`)
TRIM_VARIABLE = "MALLOC_TRIM_THRESHOLD_"
GLIBC_TRIM = f"distributed.nanny.pre-spawn-environ.{TRIM_VARIABLE}"


# ---------------------------------------------------------------------- compress
def compress(source, output, chunks: int | Sequence[int] = DEFAULT_CHUNK, halo: int = DEFAULT_HALO,
             scheduler: str | None = None, workers: int | None = None, start_samples: int = DEFAULT_START_SAMPLES,
             **options: Any) -> CompressSummary:
    """Compress the array file `source` into the Zarr array `output`, one tree per chunk.

    Zarr, TIFF and .npy inputs are read region by region; any other input `tinc.read`
    takes is read whole once and staged beside `output` (`tinc.io.region_volume`).

    `options` are `tinc.TincConfig` fields, applied to every chunk (`ratio`, `steps`,
    `time_limit` per chunk, `seed`, ...); `quiet` also hides the progress bar. Without
    `scheduler` (a `dask.distributed` address) a local cluster of `workers` processes
    (default: one per core) does the work. `start_samples` chunks are fitted first and
    the others start from their mean weights (0: every chunk from random weights). If
    `output` holds the same array from an earlier, interrupted run of the same settings,
    only its missing chunks are fitted.
    """
    _check_compress_options(source, output, options)
    start_samples = start_count(start_samples)
    with region_volume(source, output, bool(options.get("quiet"))) as volume:
        return _compress_volume(volume, str(source), output, chunks, halo, scheduler, workers, start_samples, options)


def _compress_volume(volume: Volume, source: str, output, chunks, halo: int, scheduler: str | None, workers: int | None,
                     start_samples: int, options: dict) -> CompressSummary:
    from .values import check_array

    check_array(np.zeros(1, dtype=volume.dtype))  # the dtype, before any work starts
    chunks = chunk_shape(chunks, volume.shape)
    if options.get("channel_axis") is None and volume.channel_axis is not None:  # a colour image's samples
        options = {**options, "channel_axis": volume.channel_axis}
    codec = _chunk_codec(volume, chunks, halo, options)  # every option checked before the cluster starts
    quiet, relative = bool(options.get("quiet")), options.get("max_error_rel") is not None
    existed, fitting = os.path.exists(output), False
    try:
        # an existing store of other settings is refused before the cluster starts, unless the
        # settings hold the array's range (a --max-error-rel), which the statistics pass gives
        array = None if relative else open_output(output, volume.shape, volume.dtype, chunks, codec)
        with _client(scheduler, workers) as client:
            if scheduler is not None and not quiet:
                _note_trimming_workers(client)
            started = time.perf_counter()  # the cluster's work, the statistics pass included, not its start-up
            stats = _measure_chunks(client, volume, chunks, quiet) if relative or codec.tinc.config.ratio is not None else []
            if relative:
                codec = _chunk_codec(volume, chunks, halo, absolute_error_options(options, stats))
                array = open_output(output, volume.shape, volume.dtype, chunks, codec)
            tasks = [(index, box, array.metadata.encode_chunk_key(index)) for index, box in chunk_boxes(volume.shape, chunks)]
            ratios = chunk_ratios(array, volume, codec, tasks, stats, source)
            fitting = True  # from here on a failure keeps the chunks written, for a rerun to resume
            results = _fit_all(client, volume, output, tasks, ratios, codec, start_samples, started, quiet)
            peak_rss = client.run(metrics.peak_memory)
    except BaseException:
        if not existed and not fitting:  # refused or failed before any chunk: leave nothing behind
            shutil.rmtree(output, ignore_errors=True)
        raise
    summary = CompressSummary(source, str(output), volume.shape, volume.dtype, chunks, sorted(results, key=lambda r: r.index),
                              time.perf_counter() - started, peak_rss)
    _write_final_attributes(array, summary, volume.metadata)
    shutil.rmtree(os.path.join(output, START_FOLDER), ignore_errors=True)  # the store is complete: no run will resume it
    return summary


def _measure_chunks(client: Client, volume: Volume, chunks: tuple[int, ...], quiet: bool) -> list[ChunkStats]:
    """Every chunk's range and spread, in chunk order: one pass over the input, on the cluster."""
    boxes = [box for _, box in chunk_boxes(volume.shape, chunks)]
    calls = ((measure_chunk, volume, box, number) for number, box in enumerate(boxes))
    measured = dict(_drain(run_windowed(client, calls), len(boxes), quiet, "measuring chunks"))  # in the order they finish
    return [measured[number] for number in range(len(boxes))]


def _fit_all(client: Client, volume: Volume, output: str, tasks: list, ratios: Sequence[float | None], codec: TincNumcodec,
             start_samples: int, started: float, quiet: bool) -> list[ChunkResult]:
    """Fit the sample chunks, then every other chunk from the samples' mean weights."""
    config = {**codec.get_config(), **codec.runtime_options()}  # how to run travels with each task
    samples = sample_chunks(volume.shape, [box for _, box, _ in tasks], ratios, start_samples)
    start_folder = os.path.join(output, START_FOLDER)

    def calls(chosen: Iterable[int], starts: Sequence[LearnedStart] = ()) -> Iterator[tuple]:
        for i in chosen:
            index, box, key = tasks[i]
            chunk_config, keep = {**config, "ratio": ratios[i]}, None
            if i in samples:
                chunk_config, keep = sample_config(chunk_config), os.path.join(start_folder, key.replace("/", ".") + ".npz")
            yield _compress_chunk, volume, output, key, index, box, chunk_config, starts, keep

    bar = _progress(len(tasks), f"fitting {len(samples)} sample chunks" if samples else "compressing", quiet)
    try:
        results = _fit_chunks(client, calls(samples), bar, started)
        starts = LearnedStart.means([load_start(path) for path in start_files(start_folder)])
        if bar is not None:
            bar.set_description_str("compressing")
        return results + _fit_chunks(client, calls((i for i in range(len(tasks)) if i not in samples), starts), bar, started, results)
    finally:
        if bar is not None:
            bar.close()


def _check_compress_options(source, output, options: dict) -> None:
    """Refuse, before any reading, what chunked compression cannot do."""
    if not is_zarr_path(output):
        raise TincConfigError(f"{output}: chunked compression writes a .zarr directory")
    if os.path.abspath(source) == os.path.abspath(output):
        raise TincConfigError(f"{output}: the output must not be the input")
    if options.get("checkpoint"):
        raise TincConfigError("chunked compression does not take --checkpoint: every chunk is written as soon as it is "
                              "fitted, and rerunning the same command resumes from the chunks already written")


def _chunk_codec(volume: Volume, chunks: tuple[int, ...], halo: int, options: dict) -> TincNumcodec:
    """The codec every chunk is fitted with: `options` and a halo of `halo` voxels."""
    if not isinstance(halo, (int, np.integer)) or halo < 0:
        raise TincConfigError(f"halo must be a non-negative integer, got {halo!r}")
    # no halo along an axis held by one chunk (there is no neighbour to meet) or along channels
    channel = options.get("channel_axis")
    if channel is not None:
        if not isinstance(channel, (int, np.integer)) or not -volume.ndim <= channel < volume.ndim:
            raise TincConfigError(f"channel_axis {channel!r} is not an axis of the {volume.ndim}-D input")
        channel %= volume.ndim
    return TincNumcodec(halo=[int(halo) if c < s and axis != channel else 0 for axis, (c, s) in enumerate(zip(chunks, volume.shape))],
                        **options)


def _fit_chunks(client: Client, calls: Iterator[tuple], bar, started: float, done: Sequence[ChunkResult] = ()) -> list[ChunkResult]:
    """Run the chunk tasks, advancing `bar` (if any) with the throughput of the chunks fitted
    since `started`, `done` included (those kept from an earlier run cost nothing)."""
    results: list[ChunkResult] = []
    fitted_voxels = sum(r.voxels for r in done if not r.resumed)
    for result in run_windowed(client, calls):
        results.append(result)
        fitted_voxels += 0 if result.resumed else result.voxels
        if bar is not None:
            rate = fitted_voxels / max(time.perf_counter() - started, 1e-9)
            bar.set_postfix_str(f"{rate / 1e6:.3f} Mvoxel/s", refresh=False)
            bar.update()
    return results


def _write_final_attributes(array, summary: CompressSummary, input_metadata: dict) -> None:
    """Mark the store complete, with what the run measured and the input's metadata. The
    store's bytes include these attributes: their size is measured with them in, then again
    with the figures that size gives (a digit more or less in a number is the only
    difference), and they are written once."""
    chunk_psnr = {array.metadata.encode_chunk_key(r.index): r.psnr for r in summary.results}
    for _ in range(2):
        attributes = final_attributes(True, summary.source, summary.nbytes, summary.ratio, summary.psnr, chunk_psnr,
                                      input_metadata)
        summary.metadata_bytes = metadata_bytes_with(array, attributes)
    array.update_attributes(attributes)


def _compress_chunk(volume: Volume, store: str, key: str, index: tuple[int, ...], box: Box, config: dict,
                    starts: Sequence[LearnedStart] = (), keep_start: str | None = None) -> ChunkResult:
    """Dask task: fit one chunk, from the one of `starts` its plan matches if any, unless a
    valid one is already stored; measure its error. With `keep_start` (a sample chunk) the
    fitted weights are saved there before the chunk is written."""
    started = time.perf_counter()
    codec = TincNumcodec.from_config(config)
    halo = codec.halo_per_axis(volume.ndim)
    # an edge chunk is fitted, and budgeted, on the voxels inside the array; decoding pads it
    box = clipped(box, volume.shape)
    region = read_with_halo(volume, box, halo)
    inside = tuple(slice(h, h + b - a) for (a, b), h in zip(box, halo))
    original = region[inside]
    path = os.path.join(store, *key.split("/"))
    data = stored_chunk(path)
    if data is not None and keep_start is not None and not os.path.exists(keep_start):
        data = None  # a sample without its weights: fitted again, to the same bytes
    resumed, learned = data is not None, False
    if data is None:
        try:
            data, report = codec.encode_with_halo(region, starts)
        except TincError as error:  # say which chunk, as the one line the CLI prints
            raise type(error)(f"chunk {tuple(index)} ({key}): {error}") from None
        if keep_start is not None and report.fitted is not None:
            save_start(keep_start, report.fitted)
        learned = report.learned_start
        write_atomically(path, data)
    decoded = codec.decode(data)[tuple(slice(0, s.stop - s.start) for s in inside)]
    error = original.astype(np.float64) - decoded.astype(np.float64)
    return ChunkResult(
        index=tuple(index), nbytes=len(data), voxels=original.size, squared_error=float(np.sum(error * error)),
        low=float(original.min()), high=float(original.max()), psnr=metrics.psnr(original, decoded),
        seconds=time.perf_counter() - started, resumed=resumed, learned_start=learned,
    )


# ---------------------------------------------------------------------- cluster
@contextlib.contextmanager
def _client(scheduler: str | None, workers: int | None) -> Iterator[Client]:
    """A client of the cluster at `scheduler`, or of a local cluster started (and stopped) here.

    Local workers are processes with one thread each: a fit is single-threaded there
    (Dask's nanny sets OMP_NUM_THREADS=1), so N workers fit N chunks on N cores. The nanny
    would also set MALLOC_TRIM_THRESHOLD_, which makes glibc return freed memory at once:
    every training step's activations then land on fresh pages and a fit runs about 2x
    slower (benchmarks/RESULTS.md), so local workers keep glibc's own threshold.
    """
    import dask
    from distributed import Client, LocalCluster

    if workers is not None and workers < 1:
        raise TincConfigError(f"workers must be >= 1, got {workers}")
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as error:
            raise TincConfigError(f"cannot reach the Dask scheduler at {scheduler} ({first_line(error)})") from None
        with client:
            yield client
        return
    with dask.config.set({GLIBC_TRIM: None}), \
            LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                         dashboard_address=None, silence_logs=logging.CRITICAL) as cluster, Client(cluster) as client:
        # logs silenced: a failed chunk is reported once, as the CLI's one-line error
        yield client


def _note_trimming_workers(client: Client) -> None:
    """Say so when a cluster's workers run with Dask's default MALLOC_TRIM_THRESHOLD_ (see `_client`)."""
    values = sorted({v for v in client.run(os.getenv, TRIM_VARIABLE).values() if v is not None})
    if values:
        print(f"tinc: note: the cluster's workers run with {TRIM_VARIABLE}={', '.join(values)}, which makes "
              "each chunk's fit about 2x slower; docs/zarr.md says how to start them without it", file=sys.stderr)


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
def decompress(source, output, scheduler: str | None = None, workers: int | None = None, quiet: bool = False) -> tuple[tuple[int, ...], np.dtype]:
    """Decode the chunked array `source` into `output`, chunk by chunk on a Dask cluster: an
    OME-Zarr group (`.zarr`), TIFF or .npy (memory-mapped), or any other format `tinc.write`
    writes (NIfTI, PNG; staged as a .npy first). The input file's metadata the store keeps
    names the OME-Zarr axes and scale and makes the NIfTI header. Returns the shape and dtype."""
    array = open_compressed(source)
    metadata, channel = input_metadata(array, str(source)), codec_channel_axis(array)
    if channel is not None:  # names a TIFF output's axes (`tinc.io.ome_tiff_options`)
        metadata["channel_axis"] = channel
    shape, dtype = tuple(array.shape), np.dtype(array.dtype)
    boxes = [clipped(box, shape) for _, box in chunk_boxes(shape, array.chunks)]
    if is_zarr_path(output):
        axes = input_axes(shape, channel, metadata)
        with (ome_zarr_output(output, shape, dtype, array.chunks, axes, spacing_for(axes, metadata)) as level0,
              _client(scheduler, workers) as client):
            calls = ((_copy_chunk, str(source), level0, box) for box in boxes)
            for _ in _drain(run_windowed(client, calls), len(boxes), quiet):
                pass
        return tuple(shape[i] for i in level0.order), dtype
    kind = format_of(output)
    check_fits_format(output, shape, dtype)
    check_writable(output)
    with _client(scheduler, workers) as client:
        if kind in ("tiff", "npy"):
            with atomic_path(output) as temporary:
                _decode_into(temporary, kind, str(source), shape, dtype, boxes, client, quiet, metadata)
            return shape, dtype
        # written from one array: decoded into a memory-mapped .npy beside the output first
        with tempfile.TemporaryDirectory(prefix=f".{Path(output).name}.", dir=Path(output).parent) as folder:
            staged = os.path.join(folder, "decoded.npy")
            _decode_into(staged, "npy", str(source), shape, dtype, boxes, client, quiet)
            write(output, np.load(staged, mmap_mode="r"), metadata)
    return shape, dtype


def _decode_into(path: str, kind: str, source: str, shape: tuple[int, ...], dtype: np.dtype, boxes: list[Box], client,
                 quiet: bool, metadata: dict | None = None) -> None:
    """Decode every chunk into a new memory-mapped .npy or TIFF file at `path` (an OME-TIFF
    where `metadata` gives voxel sizes, `tinc.io.memmap_output`)."""
    out = memmap_output(path, kind, shape, dtype, metadata or {}, bigtiff=math.prod(shape) * dtype.itemsize > 2**31)
    calls = ((_read_chunk, source, box) for box in boxes)
    for box, values in _drain(run_windowed(client, calls), len(boxes), quiet):
        out[tuple(slice(a, b) for a, b in box)] = values
    out.flush()
    del out  # unmap before the file is renamed into place


def _drain(results: Iterator[Any], total: int, quiet: bool, description: str = "decoding") -> Iterator[Any]:
    bar = _progress(total, description, quiet)
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
