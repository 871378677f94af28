"""The tree of sine MLPs, evaluated level by level as batched matrix products.

Every level keeps its nodes' weights stacked as [nodes, fan_in, width], zero-padded to the
level's widest node; a mask keeps the padding at zero so nodes of unequal width share one
`bmm`. A level's first layer reads its parent's output: the children of one parent are
laid side by side in the output dimension, so the parent's activations are read once.
"""

from __future__ import annotations


import numpy as np
import torch
from torch import nn

from .allocation import TreePlan


class TreeINR(nn.Module):
    """f(local coordinate) -> [leaves, samples, channels] for a `TreePlan`."""

    def __init__(self, plan: TreePlan, w0: float = 30.0, generator: torch.Generator | None = None):
        super().__init__()
        self.plan = plan
        self.w0 = w0
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.shapes: list[tuple[int, int, int]] = []  # (level, layer, kind) bookkeeping per tensor
        masks = []
        for level, widths in enumerate(plan.widths):
            fan_in = plan.fan_in(level)
            width_pad = int(widths.max())
            in_pad = int(fan_in.max())
            for layer in range(plan.layers[level]):
                layer_in = fan_in if layer == 0 else widths
                layer_in_pad = in_pad if layer == 0 else width_pad
                first = level == 0 and layer == 0
                masks.append(self._add_layer(layer_in, widths, layer_in_pad, width_pad, first, generator))
        leaf_widths = plan.widths[-1]
        masks.append(self._add_layer(leaf_widths, np.full(len(leaf_widths), plan.channels), int(leaf_widths.max()), plan.channels, False, generator))
        for index, (weight_mask, bias_mask) in enumerate(masks):
            self.register_buffer(f"weight_mask_{index}", weight_mask)
            self.register_buffer(f"bias_mask_{index}", bias_mask)
        self.n_layers = len(masks)

    def _add_layer(self, fan_in, fan_out, in_pad, out_pad, first, generator):
        nodes = len(fan_out)
        weight_mask = torch.zeros(nodes, in_pad, out_pad)
        bias_mask = torch.zeros(nodes, 1, out_pad)
        for node, (i, o) in enumerate(zip(fan_in, fan_out)):
            weight_mask[node, :i, :o] = 1
            bias_mask[node, :, :o] = 1
        fan = torch.as_tensor(np.asarray(fan_in, dtype=np.float32)).view(-1, 1, 1)
        # SIREN initialisation: the first layer spreads coordinates over many periods, later
        # layers keep pre-activations of unit-ish scale after the w0 multiplier.
        bound = 1 / fan if first else torch.sqrt(6 / fan) / self.w0
        uniform = torch.rand(nodes, in_pad, out_pad, generator=generator) * 2 - 1
        weight = uniform * bound * weight_mask
        bias = (torch.rand(nodes, 1, out_pad, generator=generator) * 2 - 1) / torch.sqrt(fan) / self.w0 * bias_mask
        self.weights.append(nn.Parameter(weight))
        self.biases.append(nn.Parameter(bias))
        return weight_mask, bias_mask

    def masks(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"weight_mask_{index}"), getattr(self, f"bias_mask_{index}")

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """coords [samples, ndim] -> [leaves, samples, channels]."""
        plan = self.plan
        h = coords.unsqueeze(0)  # one parent (a virtual one above the root)
        index = 0
        for level in range(plan.depth + 1):
            for layer in range(plan.layers[level]):
                weight_mask, bias_mask = self.masks(index)
                weight = self.weights[index] * (weight_mask * self.w0)
                bias = self.biases[index] * (bias_mask * self.w0)
                if layer == 0 and level > 0:
                    h = self._spread_to_children(h, weight, plan.layout.children[level - 1])
                    h = _sine(_add(h, bias))
                else:
                    h = _sine(torch.baddbmm(bias, h, weight))
                index += 1
        weight_mask, bias_mask = self.masks(index)
        return torch.baddbmm(self.biases[index] * bias_mask, h, self.weights[index] * weight_mask)

    @staticmethod
    def _spread_to_children(h: torch.Tensor, weight: torch.Tensor, children: int) -> torch.Tensor:
        """[parents, S, in] x [parents*children, in, out] -> [parents*children, S, out] in one bmm."""
        parents, samples, fan_in = h.shape
        out = weight.shape[-1]
        stacked = weight.view(parents, children, fan_in, out).permute(0, 2, 1, 3).reshape(parents, fan_in, children * out)
        y = torch.bmm(h, stacked).view(parents, samples, children, out)
        return y.permute(0, 2, 1, 3).reshape(parents * children, samples, out)

    def tensors(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Every weight and bias as (name, values, mask) in a fixed order, for the coder."""
        result = []
        for index in range(self.n_layers):
            weight_mask, bias_mask = self.masks(index)
            result.append((f"w{index}", self.weights[index].detach().cpu().numpy(), weight_mask.cpu().numpy().astype(bool)))
            result.append((f"b{index}", self.biases[index].detach().cpu().numpy(), bias_mask.cpu().numpy().astype(bool)))
        return result

    @torch.no_grad()
    def load_tensors(self, values: list[np.ndarray]) -> None:
        """Inverse of `tensors`: set weights and biases (padded arrays) in the same order."""
        params = [p for index in range(self.n_layers) for p in (self.weights[index], self.biases[index])]
        for param, value in zip(params, values, strict=True):
            param.copy_(torch.as_tensor(value, dtype=param.dtype))

    def forward_leaves(self, coords: torch.Tensor, leaves: np.ndarray) -> torch.Tensor:
        """coords [samples, ndim], sorted unique leaf indices [k] -> [k, samples, channels].

        Evaluates only the selected leaves and their ancestors, each ancestor once and shared
        by its selected children. Every node runs the same float32 ops as in `forward` (a bmm
        of the same per-node shape, only over fewer nodes), so on CPU each selected leaf's
        output is bit-identical to its row of `forward(coords)` when the samples are a
        multiple of `ALIGN_ROWS` (as `render` and `render_leaves` arrange).
        """
        plan, children = self.plan, self.plan.layout.children
        counts = plan.layout.nodes_per_level
        leaves = np.asarray(leaves, dtype=np.int64)
        # per level, the sorted nodes on some selected leaf's root path
        kept = [_at_least_two(leaves, counts[-1])]
        for level in range(plan.depth - 1, -1, -1):
            kept.insert(0, _at_least_two(np.unique(kept[0] // children[level]), counts[level]))
        device = coords.device

        def pick(tensor: torch.Tensor, nodes: np.ndarray) -> torch.Tensor:
            return tensor.index_select(0, torch.as_tensor(nodes, device=device))

        h = coords.unsqueeze(0)
        index = 0
        for level in range(plan.depth + 1):
            nodes = kept[level]
            for layer in range(plan.layers[level]):
                weight_mask, bias_mask = self.masks(index)
                bias = pick(self.biases[index], nodes) * (pick(bias_mask, nodes) * self.w0)
                if layer == 0 and level > 0:
                    # the spread reads all children of a kept parent, exactly as `forward`
                    # does (a narrower matrix could change the float results); then keep
                    # only the children on a selected path
                    c, parents = children[level - 1], kept[level - 1]
                    siblings = (parents[:, None] * c + np.arange(c)).ravel()
                    weight = pick(self.weights[index], siblings) * (pick(weight_mask, siblings) * self.w0)
                    h = self._spread_to_children(h, weight, c)
                    rows = np.searchsorted(parents, nodes // c) * c + nodes % c
                    h = _sine(_add(pick(h, rows), bias))
                else:
                    weight = pick(self.weights[index], nodes) * (pick(weight_mask, nodes) * self.w0)
                    h = _sine(torch.baddbmm(bias, h, weight))
                index += 1
        weight_mask, bias_mask = self.masks(index)
        nodes = kept[-1]
        bias = pick(self.biases[index], nodes) * pick(bias_mask, nodes)
        out = torch.baddbmm(bias, h, pick(self.weights[index], nodes) * pick(weight_mask, nodes))
        return out if len(nodes) == len(leaves) else pick(out, np.searchsorted(nodes, leaves))

    def chunk_size(self, max_elements: int = 1 << 25) -> int:
        """Coordinates per `render` call: a multiple of `ALIGN_ROWS`, and a function of the tree
        alone, so partial decodes split coordinates exactly like full ones."""
        widest = max(int(w.max()) for w in self.plan.widths)
        chunk = max_elements // (self.plan.layout.leaves * max(widest, self.plan.channels))
        return max(ALIGN_ROWS, chunk // ALIGN_ROWS * ALIGN_ROWS)

    @torch.no_grad()
    def render(self, coords: torch.Tensor, max_elements: int = 1 << 25) -> torch.Tensor:
        """Evaluate every leaf on `coords` in chunks that keep activations under `max_elements`."""
        chunk, samples = self.chunk_size(max_elements), coords.shape[0]
        coords = _pad_rows(coords)
        parts = [self(coords[start:start + chunk]) for start in range(0, coords.shape[0], chunk)]
        return torch.cat(parts, dim=1)[:, :samples]

    @torch.no_grad()
    def render_leaves(self, coords: torch.Tensor, leaves: np.ndarray, needed: np.ndarray | None = None,
                      max_elements: int = 1 << 25) -> torch.Tensor:
        """`render` restricted to `leaves` -> [k, samples, channels], bit-identical on CPU.

        Same chunks as `render`; `needed` (bool per coordinate) skips chunks holding no
        needed coordinate, whose entries are left uninitialised.
        """
        chunk, samples = self.chunk_size(max_elements), coords.shape[0]
        coords = _pad_rows(coords)
        out = torch.empty(len(leaves), coords.shape[0], self.plan.channels, device=coords.device)
        for start in range(0, samples, chunk):
            if needed is None or needed[start:start + chunk].any():
                out[:, start:start + chunk] = self.forward_leaves(coords[start:start + chunk], leaves)
        return out[:, :samples]


# Decoding (no autograd) updates fresh activations in place: one memory pass less per layer,
# with the same kernels and so the same values as training's out-of-place ops.
def _sine(h: torch.Tensor) -> torch.Tensor:
    return torch.sin(h) if torch.is_grad_enabled() else h.sin_()


def _add(h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return h + bias if torch.is_grad_enabled() else h.add_(bias)


# MKL rounds a matrix product differently when its output does not start on a 64-byte
# boundary. Node i of a batched product starts i * samples * width floats into the output,
# so samples per call are kept a multiple of 16 floats: every node's product is then
# aligned whether it is computed among all nodes or among a few (partial decodes).
ALIGN_ROWS = 16


def _pad_rows(coords: torch.Tensor) -> torch.Tensor:
    """`coords` with zero rows appended up to a multiple of `ALIGN_ROWS` (outputs dropped later)."""
    pad = -coords.shape[0] % ALIGN_ROWS
    return torch.cat([coords, coords.new_zeros(pad, coords.shape[1])]) if pad else coords


def _at_least_two(nodes: np.ndarray, level_nodes: int) -> np.ndarray:
    """`nodes`, plus a neighbour when it is a single node of a level that has more.

    A batch of one matrix takes another BLAS route than a batch of several (a single
    gemm, or a gemv when the output is one channel), which rounds differently; padding
    the batch keeps partial decodes bit-identical to full ones.
    """
    if len(nodes) != 1 or level_nodes == 1:
        return nodes
    node = int(nodes[0])
    return np.array(sorted((node, node + 1 if node + 1 < level_nodes else node - 1)), dtype=np.int64)


def count_parameters(model: TreeINR) -> int:
    return int(sum(int(m.sum()) for index in range(model.n_layers) for m in model.masks(index)))
