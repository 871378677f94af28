"""What a file's architecture is: the tree's layout, and every node's kind, layers and width."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .nodes import SINE_MLP, node_kind
from .partition import TreeLayout


def input_axes(shape: tuple[int, ...], singleton_inputs: bool = False) -> tuple[int, ...]:
    """The spatial axes the root takes as coordinates: those longer than 1 (a trailing
    length-1 axis of a TIFF is no dimension of the data), or all of them in format 1."""
    every = tuple(range(len(shape)))
    if singleton_inputs:
        return every
    return tuple(axis for axis in every if shape[axis] > 1) or every


@dataclass(frozen=True)
class TreePlan:
    """A tree's shape and the width of every node, level by level."""

    layout: TreeLayout
    layers: tuple[int, ...]
    widths: tuple[np.ndarray, ...]
    channels: int
    singleton_inputs: bool = False
    """Format 1 fed length-1 axes to the root as constant coordinates; later formats skip them."""
    node_kind: int = SINE_MLP
    """What every node is (`tinc.nodes`)."""

    @property
    def depth(self) -> int:
        return self.layout.depth

    @property
    def node(self):
        return node_kind(self.node_kind)

    @property
    def input_axes(self) -> tuple[int, ...]:
        return input_axes(self.layout.shape, self.singleton_inputs)

    def fan_in(self, level: int) -> np.ndarray:
        """Input width of every node of `level`: coordinates for the root, else the parent's width."""
        if level == 0:
            return np.array([len(self.input_axes)])
        return np.repeat(self.widths[level - 1], self.layout.children[level - 1])

    def params_per_level(self) -> list[int]:
        totals = []
        for level, widths in enumerate(self.widths):
            fan_out = self.channels if level == self.depth else 0
            fan_in = self.fan_in(level)
            totals.append(int(sum(self.node.params(int(w), int(f), self.layers[level], fan_out) for w, f in zip(widths, fan_in))))
        return totals

    @property
    def params(self) -> int:
        return sum(self.params_per_level())

    @property
    def signature(self) -> str:
        """Everything that fixes the network's weight tensors, as text: two plans of one
        signature can start from each other's weights."""
        widths = [[int(w) for w in ws] for ws in self.widths]
        return (f"shape {list(self.layout.shape)} splits {[list(s) for s in self.layout.splits]} layers {list(self.layers)} "
                f"widths {widths} channels {self.channels} singleton {int(self.singleton_inputs)} kind {self.node_kind}")

    def widths_text(self) -> str:
        """Widths level by level, "36/13"; a level of unequal widths shows its range, "8-13"."""
        return "/".join(width_text(w) for w in self.widths)


def width_text(widths) -> str:
    widths = np.asarray(widths)
    return str(int(widths[0])) if np.all(widths == widths[0]) else f"{int(widths.min())}-{int(widths.max())}"
