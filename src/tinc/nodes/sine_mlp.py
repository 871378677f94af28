"""The sine MLP (SIREN) node: sine layers of one width and, in a leaf, a linear head."""

from __future__ import annotations

import math

import numpy as np
import torch

# The root's first layer starts with frequencies of at most this fraction of each axis's
# Nyquist frequency. SIREN's 1/fan_in bound puts a thin axis (8 slices of a stack, in a
# block of 8 x 64 x 64) at 0.9 of it, near aliasing; capping it gained tinc_test 2 dB
# (RESULTS-ARCHIVE.md, section 11) and leaves axes longer than about 20 voxels unchanged.
NYQUIST_FRACTION = 0.5


def first_layer_bounds(block_shape: tuple[int, ...], w0: float) -> np.ndarray:
    """Per coordinate axis, the init bound of the root's first-layer weights (before `w0`)."""
    fan = len(block_shape)
    if fan == 0 or not w0:  # no coordinates (a channel-only header), or a degenerate w0
        return np.full(fan, 1 / max(fan, 1), dtype=np.float32)
    nyquist = np.pi * (np.asarray(block_shape, dtype=np.float64) - 1) / 2  # rad per unit of the [-1, 1] coordinate
    with np.errstate(over="ignore"):  # a tiny w0 overflows to inf: the SIREN bound is the smaller
        capped = np.minimum(1 / fan, NYQUIST_FRACTION * nyquist / abs(w0))
    return np.where(nyquist > 0, capped, 1 / fan).astype(np.float32)


def node_params(width: int, fan_in: int, layers: int, fan_out: int) -> int:
    """Parameters of one node: `layers` sine layers of `width`, plus a linear head of `fan_out`."""
    return fan_in * width + width + (layers - 1) * (width * width + width) + fan_out * width + fan_out


def solve_width(params: float, fan_in: int, layers: int, fan_out: int) -> int:
    """Largest width whose node has at most `params` parameters (0 if none fits)."""
    a = layers - 1
    b = fan_in + 1 + (layers - 1) + fan_out
    c = fan_out - params
    if a == 0:
        width = -c / b
    else:
        width = (-b + math.sqrt(max(b * b - 4 * a * c, 0.0))) / (2 * a)
    width = max(int(math.floor(width)), 0)
    while width > 0 and node_params(width, fan_in, layers, fan_out) > params:
        width -= 1
    return width


class SineMLP:
    """sin(w0 (W x + b)) layers, SIREN's initialisation, and sin's symmetries for the coder."""

    kind_id = 0
    name = "sine-mlp"

    params = staticmethod(node_params)
    width_for = staticmethod(solve_width)
    first_layer_bounds = staticmethod(first_layer_bounds)

    @staticmethod
    def initial_layer(fan_in, fan_out, in_pad, out_pad, first_bounds, w0, generator):
        nodes = len(fan_out)
        weight_mask = torch.zeros(nodes, in_pad, out_pad)
        bias_mask = torch.zeros(nodes, 1, out_pad)
        for node, (i, o) in enumerate(zip(fan_in, fan_out)):
            weight_mask[node, :i, :o] = 1
            bias_mask[node, :, :o] = 1
        fan = torch.as_tensor(np.asarray(fan_in, dtype=np.float32)).view(-1, 1, 1)
        # SIREN initialisation: the first layer spreads coordinates over many periods, later
        # layers keep pre-activations of unit-ish scale after the w0 multiplier.
        if first_bounds is not None:
            bound = torch.zeros(1, in_pad, 1)
            bound[0, :, 0] = torch.as_tensor(first_bounds)
        else:
            bound = torch.sqrt(6 / fan) / w0
        uniform = torch.rand(nodes, in_pad, out_pad, generator=generator) * 2 - 1
        weight = uniform * bound * weight_mask
        bias = (torch.rand(nodes, 1, out_pad, generator=generator) * 2 - 1) / torch.sqrt(fan) / w0 * bias_mask
        return weight, bias, weight_mask, bias_mask

    @staticmethod
    def scale(w0: float, head: bool) -> float:
        return 1.0 if head else w0

    @staticmethod
    def activation(h: torch.Tensor) -> torch.Tensor:
        # decoding (no autograd) updates fresh activations in place: one memory pass less per
        # layer, with the same kernel and so the same values as training's out-of-place op
        return torch.sin(h) if torch.is_grad_enabled() else h.sin_()

    @staticmethod
    def canonical_order(stored, bias_masks, levels, children):
        """Every hidden neuron's bias non-negative and each node's neurons in ascending order of bias.

        sin is odd, so negating a neuron's incoming weights and bias negates its output, which
        negating its outgoing weights undoes; and a layer's neurons can be listed in any order
        if the next layer's inputs follow. The coder codes the canonical biases as sorted runs
        (`coding.SORTED`), which saves the bits those freedoms would spend. Rounding to a
        tensor's step commutes with both, so the rounded weights stay canonical."""
        n_layers = len(stored) // 2
        offsets = np.cumsum([0] + [piece.size for piece in stored])
        index, sign = np.empty(offsets[-1], dtype=np.int64), np.empty(offsets[-1], dtype=np.float32)
        previous = None  # the last hidden layer's neuron order and signs, per node
        for layer in range(n_layers):
            weight, bias = stored[2 * layer], stored[2 * layer + 1]
            nodes, fan_in, width = weight.shape
            if previous is None:  # the root reads coordinates, which keep their order
                rows, row_signs = np.broadcast_to(np.arange(fan_in), (nodes, fan_in)), np.ones((nodes, fan_in), np.float32)
            else:
                same_level = levels[layer] == levels[layer - 1]
                parent = np.arange(nodes) // (1 if same_level else children[levels[layer - 1]])
                rows, row_signs = previous[0][parent], previous[1][parent]
            if layer < n_layers - 1:
                values, real = bias[:, 0, :], bias_masks[layer][:, 0, :]
                columns = np.argsort(np.where(real, np.abs(values), np.inf), axis=1, kind="stable")
                column_signs = np.take_along_axis(np.where(values < 0, -1, 1).astype(np.float32), columns, axis=1)
            else:  # the output channels keep their order
                columns, column_signs = np.broadcast_to(np.arange(width), (nodes, width)), np.ones((nodes, width), np.float32)
            node = np.arange(nodes)[:, None, None]
            weights = slice(offsets[2 * layer], offsets[2 * layer + 1])
            index[weights] = (offsets[2 * layer] + (node * fan_in + rows[:, :, None]) * width + columns[:, None, :]).ravel()
            sign[weights] = (row_signs[:, :, None] * column_signs[:, None, :]).ravel()
            biases = slice(offsets[2 * layer + 1], offsets[2 * layer + 2])
            index[biases] = (offsets[2 * layer + 1] + node[:, 0] * width + columns).ravel()
            sign[biases] = column_signs.ravel()
            previous = (columns, column_signs)
        return index, sign
