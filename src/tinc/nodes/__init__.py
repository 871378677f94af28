"""Node kinds: what one node of the tree is, behind one small interface.

Every node of a tree is a stack of dense layers ending, in a leaf, in a linear head; the
tree (`tinc.model.TreeINR`) stacks one level's nodes into batched products. A kind decides
the rest: how many parameters a width costs, how layers start, the activation, and the
symmetries that let the coder store one canonical form of many equal networks. The kind
is recorded in the file's header by its `kind_id`; adding a kind is one module whose class is
registered here, plus its tests.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from ..errors import TincFormatError
from .sine_mlp import SineMLP


class NodeKind(Protocol):
    kind_id: int
    """Recorded in the header; 0 (the sine MLP) is what every file before kinds existed holds."""
    name: str

    def params(self, width: int, fan_in: int, layers: int, fan_out: int) -> int:
        """Parameters of one node: `layers` hidden layers of `width`, plus a head of `fan_out` (0: none)."""

    def width_for(self, params: float, fan_in: int, layers: int, fan_out: int) -> int:
        """Largest width whose node has at most `params` parameters (0 if none fits)."""

    def initial_layer(self, fan_in: np.ndarray, fan_out: np.ndarray, in_pad: int, out_pad: int, first_bounds: np.ndarray | None,
                      w0: float, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(weight [nodes, in_pad, out_pad], bias [nodes, 1, out_pad], their masks) of one
        level's layer; `first_bounds` (per input axis) for the root's first layer."""

    def first_layer_bounds(self, block_shape: tuple[int, ...], w0: float) -> np.ndarray:
        """Per coordinate axis, the initial bound of the root's first-layer weights."""

    def scale(self, w0: float, head: bool) -> float:
        """Factor a layer's stored weights and bias are multiplied by before use."""

    def activation(self, h: torch.Tensor) -> torch.Tensor:
        """The hidden layers' nonlinearity (in place when autograd is off)."""

    def canonical_order(self, stored: list[np.ndarray], bias_masks: list[np.ndarray], levels: list[int],
                        children: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """(index, sign) over the flat tensors: `flat[index] * sign` is the same function in canonical form."""


_KINDS: dict[int, NodeKind] = {}


def register(kind: NodeKind) -> NodeKind:
    if kind.kind_id in _KINDS:
        raise ValueError(f"node kind {kind.kind_id} is registered twice")
    _KINDS[kind.kind_id] = kind
    return kind


def node_kind(kind_id: int) -> NodeKind:
    """The registered kind, or a TincFormatError for a file naming a kind this tinc lacks."""
    try:
        return _KINDS[kind_id]
    except (KeyError, TypeError):
        raise TincFormatError(f"the .tinc file uses node kind {kind_id}, which this tinc does not know; upgrade tinc") from None


SINE_MLP = register(SineMLP()).kind_id
