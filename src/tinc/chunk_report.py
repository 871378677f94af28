"""What a chunked compression measured: each chunk's error and cost, and the whole store's."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import metrics


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
    learned_start: bool = False  # fitted from the sample chunks' mean weights


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
        learned = sum(r.learned_start for r in self.results)
        psnrs = np.array([r.psnr for r in self.results])
        text = [
            f"{self.source} -> {self.output}: {len(self.results)} chunks of {self.chunks} "
            f"({resumed} kept from an earlier run, {learned} started from the samples' weights), {self.nbytes} bytes, ratio {self.ratio:.1f}x, "
            f"PSNR {self.psnr:.2f} dB, {self.seconds:.1f} s, {self.voxels_per_second / 1e6:.3f} Mvoxel/s",
            f"chunk PSNR: min {psnrs.min():.2f}, median {np.median(psnrs):.2f}, max {psnrs.max():.2f} dB; worst: "
            + ", ".join(f"{r.index} {r.psnr:.2f} dB" for r in self.worst()),
        ]
        if self.worker_peak_rss:
            peaks = sorted(self.worker_peak_rss.values())
            text.append(f"peak memory per worker: {peaks[0] / 2**20:.0f}-{peaks[-1] / 2**20:.0f} MiB ({len(peaks)} workers)")
        return text
