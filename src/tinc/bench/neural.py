"""tinc itself as a benchmarked codec, with presets for the authors' settings and one SIREN."""

from __future__ import annotations

import math

import numpy as np

from .. import compress, container, decompress
from ..format import plan_from_header
from .base import Codec


class TincAdapter(Codec):
    """tinc through its Python API; the quality is the target ratio itself."""

    name = "tinc"
    description = "tinc, default configuration"
    direct = True
    preset: dict = {}
    """`TincConfig` fields this variant sets."""

    def __init__(self, time_limit: float | None = None, steps: int | None = None, **options):
        """`options`: further `TincConfig` fields, overriding the preset (e.g. batch=4096)."""
        self.time_limit, self.steps, self.extra = time_limit, steps, options

    def options(self) -> dict:
        """The `tinc.compress` keyword arguments of this adapter."""
        options = dict(self.preset, quiet=True, **self.extra)
        if self.time_limit is not None:
            options["time_limit"] = self.time_limit
        if self.steps is not None:
            options["steps"] = self.steps
        return options

    def for_input(self, channel_axis: int | None) -> "TincAdapter":
        """As `tinc compress` reads the file: its colour samples as channels (unless an
        option already names the axis)."""
        if channel_axis is None or "channel_axis" in self.extra:
            return self
        return type(self)(self.time_limit, self.steps, **self.extra, channel_axis=channel_axis)

    def quality_range(self, array: np.ndarray) -> tuple[float, float]:
        return 1.0, math.inf

    def encode(self, array: np.ndarray, quality: float) -> bytes:
        return bytes(compress(array, ratio=float(quality), **self.options()))

    def decode(self, data: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return decompress(data)  # .tinc bytes hold the shape and dtype themselves

    def note(self, data: bytes) -> str:
        """The tree the file holds: the automatic choices (and a preset's fallbacks) are visible in the table."""
        plan = plan_from_header(container.unpack(data).header)
        return f"depth {plan.depth}, widths {plan.widths_text()}, layers {'/'.join(str(n) for n in plan.layers)}"


class TincReferenceAdapter(TincAdapter):
    name = "tinc-reference"
    description = ("tinc with the authors' published settings (2 levels, 1/.8/1.5, 2/2/3 layers, float32 weights, "
                   "[0,100], adamax at 1e-3, batch 262144) and their tree: widths as the budget solves them, "
                   "however narrow")
    # Every field of the authors' published configuration that TincConfig has. min_width 1:
    # their sizing floors each width at 1, so their tree keeps its depth where the budget
    # leaves it 1-2 wide; tinc's floor of 8 would swap it for a shallower tree of wider
    # networks, which is tinc's fix, not their setting.
    preset = dict(
        levels=2, level_weights=(1.0, 0.8, 1.5), layers=(2, 2, 3), weight_bits=32,
        value_range=(0.0, 100.0), optimizer="adamax", lr=1e-3, batch=262144, starts=1, min_width=1,
    )


class SirenAdapter(TincAdapter):
    name = "siren"
    description = "one SIREN network (tinc with levels=0, 4 layers)"
    preset = dict(levels=0, layers=4)
