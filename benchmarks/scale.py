"""Chunked compression at scale: throughput on 1 and 2 Dask workers, learned against random
starts, SZ3 at the same ratio, and the seams.

The volume is real data of 19.7 M values: the first 64 frames of pydicom-data's ultrasound
cine `color3d_jpeg_baseline.dcm` (64 x 480 x 640, its red channel; the three channels
differ by 0.3-1.2 grey levels on average), stored as Zarr in CHUNK^3 chunks. 480 is not a
multiple of 64, so edge chunks are part of every run. `--input FILE` uses any other 3-D
array tinc reads (e.g. `nilearn:mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz`), and
`--size N` the 64^3 brain crop mirrored to N^3 (the volume of earlier measurements).

It is compressed several times in one run, so that all figures share the machine's load:
random starts (`--start-samples 0`) on 1 and 2 workers, learned starts (the default:
`START_SAMPLES` chunks fitted first, the others from their mean weights) on 1 and 2
workers, and random starts with 3x the steps on 2 workers (does the learned start reach
their PSNR in a third of the time?). SZ3, SPERR and HEVC (slices as
grey frames) are then run at the store's ratio.
For each result it prints the PSNR of the voxels within 2 of an internal chunk face
("border") and of the voxels farther than 2 from any chunk face ("interior"), the median
seconds of a fitted chunk's task in its worker ("s/chunk") and the lowest PSNR of a fitted
chunk ("worst").

    .venv/bin/python benchmarks/scale.py --chunk 64 --steps 100 --ratio 64

`--runs` picks the runs; `learned-2:400` is learned starts on 2 workers with 400 steps, and
`learned-2:300:4` the same with 300 steps and samples fitted 4x as long as the others.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
import tifffile
import zarr

from tinc import chunked, io, metrics
from tinc.bench.classic import SperrCodec, Sz3Codec
from tinc.bench.video import HevcCodec
from tinc.bench.sweep import run_one
from tinc.config import TincConfig
from scoreboard import machine

try:  # older trees (results.sh runs this script on them) have no learned starts
    from tinc import chunk_starts
except ImportError:
    chunk_starts = None
DEFAULT_EFFORT = getattr(chunk_starts, "SAMPLE_EFFORT", 0)

BORDER = 2  # voxels either side of a chunk face that count as "border"
CINE, FRAMES = "pydicom-data:color3d_jpeg_baseline.dcm", 64


def cine_volume(frames: int = FRAMES) -> np.ndarray:
    cine, _ = io.read_with_metadata(CINE)  # frames x rows x columns x RGB, uint8
    return np.ascontiguousarray(cine[:frames, ..., 0])


def mirrored_volume(size: int) -> np.ndarray:
    brain = tifffile.imread(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "brain64.tif"))[..., 0]
    reps = -(-size // 64)
    volume = brain
    for axis in range(3):
        tiles = [np.flip(volume, axis) if i % 2 else volume for i in range(reps)]
        volume = np.concatenate(tiles, axis=axis)
    return np.ascontiguousarray(volume[:size, :size, :size])


def seam_psnr(original: np.ndarray, restored: np.ndarray, chunk: int) -> tuple[float, float]:
    """PSNR of the voxels within BORDER of an internal chunk face, and of those at least
    BORDER from every chunk face (the array's own faces included)."""
    border = np.zeros(original.shape, dtype=bool)
    near_face = np.zeros(original.shape, dtype=bool)
    for axis, size in enumerate(original.shape):
        index = np.arange(size)
        at_seam = np.zeros(size, dtype=bool)
        for face in range(chunk, size, chunk):
            at_seam[max(face - BORDER, 0):face + BORDER] = True
        chunk_end = np.minimum((index // chunk + 1) * chunk, size)
        at_face = (index % chunk < BORDER) | (chunk_end - index <= BORDER)
        view = [1] * original.ndim
        view[axis] = size
        border |= at_seam.reshape(view)
        near_face |= at_face.reshape(view)
    interior = ~near_face
    peak = metrics.peak_value(original)
    return (metrics.psnr(original[border], restored[border], peak), metrics.psnr(original[interior], restored[interior], peak))


def fitted_chunks(results) -> list:
    """The chunks that were fitted: constant chunks are stored without a fit."""
    return [r for r in results if r.high > r.low]


def chunk_seconds(results) -> float:
    """The median seconds of a fitted chunk's task, in its worker (fit, coding, decoding and
    measuring it)."""
    fitted = fitted_chunks(results)
    return float(np.median([r.seconds for r in fitted])) if fitted else float("nan")


def worst_chunk(results) -> float:
    """The lowest PSNR of a fitted chunk: one collapsed fit sinks a store's PSNR."""
    fitted = fitted_chunks(results)
    return min(r.psnr for r in fitted) if fitted else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=None, help="a 3-D array file instead of the cine")
    parser.add_argument("--size", type=int, default=None, help="the brain crop mirrored to SIZE^3 instead of the cine")
    parser.add_argument("--frames", type=int, default=FRAMES, help=f"frames of the cine (default {FRAMES})")
    parser.add_argument("--chunk", type=int, default=64, help="chunk edge (default 64)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=TincConfig.batch, help=f"voxels per step (default {TincConfig.batch}, tinc's)")
    parser.add_argument("--ratio", type=float, default=64)
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate of every chunk's fit (default: tinc's automatic one)")
    parser.add_argument("--halo", type=int, default=chunked.DEFAULT_HALO)
    # getattr: results.sh runs this script on older code too, from before learned starts
    parser.add_argument("--start-samples", type=int, default=getattr(chunked, "DEFAULT_START_SAMPLES", 0))
    parser.add_argument("--runs", default="random-1,random-2,learned-1,learned-2,random3x-2",
                        help="which runs, in order: random|learned|random3x - workers, optionally :STEPS (instead of "
                             "--steps) and :EFFORT (a learned run's samples fit EFFORT x the steps; default tinc's)")
    args = parser.parse_args()

    if args.input:
        volume = np.ascontiguousarray(io.read_with_metadata(args.input)[0])
    else:
        volume = mirrored_volume(args.size) if args.size else cine_volume(args.frames)
    chunks_per_volume = int(np.prod([-(-s // args.chunk) for s in volume.shape]))
    print(f"volume {volume.shape} {volume.dtype} ({volume.size / 1e6:.1f} M values), {chunks_per_volume} chunks of {args.chunk}^3, "
          f"halo {args.halo}, ratio {args.ratio:g}, steps of {args.batch} voxels, {args.steps} per chunk unless a run names its own, "
          f"peak rate {'automatic' if args.lr is None else args.lr}")
    print(f"machine: {machine()}")
    options = dict(ratio=args.ratio, batch=args.batch, halo=args.halo, lr=args.lr, quiet=True)  # lr None: tinc's automatic rate
    ratios = []
    with tempfile.TemporaryDirectory(dir=".") as work:
        source = os.path.join(work, "volume.zarr")
        zarr.create_array(source, shape=volume.shape, chunks=(args.chunk,) * 3, dtype=volume.dtype)[:] = volume
        print(f"{'run':<40}{'s':>8}{'Mvoxel/s':>10}{'ratio':>8}{'PSNR':>8}{'border':>8}{'interior':>10}{'diff':>7}{'peak RSS/worker':>17}{'learned':>9}"
              f"{'s/chunk':>9}{'worst':>7}")
        for number, run in enumerate(args.runs.split(",")):
            kind, workers, *more = run.replace(":", "-").split("-")
            steps = int(more[0]) if more else args.steps
            steps = 3 * steps if kind == "random3x" else steps
            effort = int(more[1]) if len(more) > 1 else DEFAULT_EFFORT
            if chunk_starts is not None:
                chunk_starts.SAMPLE_EFFORT = effort  # read in this process, where each sample's settings are made
            samples = args.start_samples if kind == "learned" else 0
            output = os.path.join(work, f"{number}.zarr")  # a run named twice must not resume the first's store
            starts = {"start_samples": samples} if hasattr(chunked, "DEFAULT_START_SAMPLES") else {}
            summary = chunked.compress(source, output, chunks=args.chunk, workers=int(workers), steps=steps, **starts, **options)
            restored = zarr.open(output, mode="r")[:]
            border, interior = seam_psnr(volume, restored, args.chunk)
            peak = max(summary.worker_peak_rss.values()) / 2**20
            name = f"{'learned' if samples else 'random'} starts, {steps} steps, {workers} w" + (f", samples {effort}x" if samples else "")
            print(f"{name:<40}{summary.seconds:8.1f}{summary.voxels_per_second / 1e6:10.3f}{summary.ratio:8.1f}{summary.psnr:8.2f}"
                  f"{border:8.2f}{interior:10.2f}{border - interior:7.2f}{peak:13.0f} MiB"
                  f"{sum(getattr(r, 'learned_start', False) for r in summary.results):9d}{chunk_seconds(summary.results):9.2f}"
                  f"{worst_chunk(summary.results):7.2f}", flush=True)
            ratios.append(summary.ratio)
    ratio = min(ratios)
    for codec in (Sz3Codec(), SperrCodec(), HevcCodec()):  # the best setting at the ratio or above, as `tinc bench` finds it
        row = run_one(codec, volume, ratio)
        print(f"{codec.name} at {ratio:.1f}x or above: {row.get('actual_ratio', float('nan')):.1f}x, PSNR {row.get('psnr', float('nan')):.2f}"
              + ("" if row["status"] == "ok" else f" ({row['note']})"))


if __name__ == "__main__":
    main()
