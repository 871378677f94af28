"""Learned starts for chunked compression: which chunks are fitted first as samples, how
long, and where their weights wait until the store is complete.

Chunks do not start from random weights: a few chunks spread over the volume (from each
group of chunks of one shape and ratio, one per `SAMPLE_GROUP_FACTOR`, at most
`start_samples`) are fitted first, `SAMPLE_EFFORT` times longer, and every other chunk
whose tree has their shape starts from their mean weights (`tinc.encoder.LearnedStart`):
the fit begins where similar data already led, so the same steps reach a higher PSNR
(benchmarks/RESULTS.md, chunked compression). The samples' weights wait in the store's
`START_FOLDER` until the store is complete, so a resumed run starts its chunks from the
same weights.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .boxes import Box, box_shape, clipped
from .config import DEFAULT_STEPS
from .encoder import LearnedStart
from .errors import TincConfigError
from .io import atomic_path

DEFAULT_START_SAMPLES = 4
# A sample chunk trains this many times longer: its weights start the others. At about the
# same wall time 2 beat 4 on all three volumes measured, the others then getting a third
# more steps (benchmarks/RESULTS.md, chunked compression: +0.11 to +0.77 dB).
SAMPLE_EFFORT = 2
SAMPLE_GROUP_FACTOR = 4  # a group of chunks gets one sample per this many chunks, up to the count asked for
START_FOLDER = ".tinc-start"  # inside the output store, removed once every chunk is written


def start_count(start_samples: int) -> int:
    if not isinstance(start_samples, (int, np.integer)) or isinstance(start_samples, bool) or start_samples < 0:
        raise TincConfigError(f"--start-samples must be a non-negative integer, got {start_samples!r}")
    return int(start_samples)


def sample_chunks(shape: tuple[int, ...], boxes: Sequence[Box], ratios: Sequence[float], count: int) -> list[int]:
    """The chunks fitted first to learn the others' start. Chunks of one shape inside the
    array and one ratio are fitted with trees of one shape: each such group gets one sample
    per `SAMPLE_GROUP_FACTOR` chunks, at most `count`, spread evenly in chunk order."""
    groups: dict[tuple, list[int]] = {}
    for i, box in enumerate(boxes):
        groups.setdefault((box_shape(clipped(box, shape)), ratios[i]), []).append(i)
    chosen: set[int] = set()
    for members in groups.values():
        samples = min(count, len(members) // SAMPLE_GROUP_FACTOR)
        if samples:
            chosen.update(members[int(k)] for k in np.linspace(0, len(members) - 1, samples).round())
    return sorted(chosen)


def sample_config(config: dict) -> dict:
    """A sample chunk's settings: `SAMPLE_EFFORT` x the steps (or time) of the others, from
    random biases: samples started at their data's mean (as other fits are) move farther from
    the start they share, and their mean weights start the other chunks worse (the cine of
    benchmarks/scale.py at 64x, 370 steps: 36.30 dB against 38.5, RESULTS.md)."""
    sample = {**config, "random_biases": True}
    if config.get("time_limit") is not None:
        sample["time_limit"] = SAMPLE_EFFORT * config["time_limit"]
    if config.get("steps") is not None or config.get("time_limit") is None:
        sample["steps"] = SAMPLE_EFFORT * (DEFAULT_STEPS if config.get("steps") is None else config["steps"])
    return sample


def start_files(folder: str) -> list[str]:
    return sorted(os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".npz")) if os.path.isdir(folder) else []


def save_start(path: str, start: LearnedStart) -> None:
    """`start` as an .npz file, written atomically."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        np.savez(file, weights=start.weights, signature=np.array(start.signature))


def load_start(path: str) -> LearnedStart:
    with np.load(path, allow_pickle=False) as saved:
        return LearnedStart(str(saved["signature"]), saved["weights"].astype(np.float32))
