"""Chunked compression at scale: throughput on 1 and 2 Dask workers, and the seams.

The volume is the 64^3 brain crop mirrored to SIZE^3 (continuous across the mirror
planes, so chunk borders fall inside tissue, not on tiling cliffs), stored as Zarr in
CHUNK^3 chunks. It is compressed three times in one run, so that all figures share the
machine's load: without halo on 1 worker and on 2 workers (throughput), and with a halo
on 2 workers. For each result it prints the PSNR of the voxels within 2 of an internal
chunk face ("border") and of the voxels farther than 2 from any chunk face ("interior").

    .venv/bin/python benchmarks/scale.py --size 128 --chunk 64 --steps 300 --ratio 64
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
import tifffile
import zarr

from tinc import chunked, metrics

BORDER = 2  # voxels either side of a chunk face that count as "border"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="edge of the cubic volume (default 128)")
    parser.add_argument("--chunk", type=int, default=64, help="chunk edge (default 64)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16384)
    parser.add_argument("--ratio", type=float, default=64)
    parser.add_argument("--halo", type=int, default=chunked.DEFAULT_HALO)
    args = parser.parse_args()

    volume = mirrored_volume(args.size)
    chunks_per_volume = (-(-args.size // args.chunk)) ** 3
    print(f"volume {volume.shape} {volume.dtype} ({volume.nbytes / 2**20:.1f} MiB), {chunks_per_volume} chunks of {args.chunk}^3, "
          f"ratio {args.ratio:g}, {args.steps} steps of {args.batch} per chunk, {os.cpu_count()} cores")
    options = dict(ratio=args.ratio, steps=args.steps, batch=args.batch, quiet=True)
    with tempfile.TemporaryDirectory(dir=".") as work:
        source = os.path.join(work, "volume.zarr")
        zarr.create_array(source, shape=volume.shape, chunks=(args.chunk,) * 3, dtype=volume.dtype)[:] = volume
        print(f"{'run':<22}{'s':>8}{'Mvoxel/s':>10}{'ratio':>8}{'PSNR':>8}{'border':>8}{'interior':>10}{'diff':>7}{'peak RSS/worker':>17}")
        for name, workers, halo in (("halo 0, 1 worker", 1, 0), ("halo 0, 2 workers", 2, 0), (f"halo {args.halo}, 2 workers", 2, args.halo)):
            output = os.path.join(work, f"{workers}-{halo}.zarr")
            summary = chunked.compress(source, output, chunks=args.chunk, halo=halo, workers=workers, **options)
            restored = zarr.open(output, mode="r")[:]
            border, interior = seam_psnr(volume, restored, args.chunk)
            peak = max(summary.worker_peak_rss.values()) / 2**20
            print(f"{name:<22}{summary.seconds:8.1f}{summary.voxels_per_second / 1e6:10.3f}{summary.ratio:8.1f}{summary.psnr:8.2f}"
                  f"{border:8.2f}{interior:10.2f}{border - interior:7.2f}{peak:13.0f} MiB")


if __name__ == "__main__":
    main()
