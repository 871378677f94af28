"""The tree's network, evaluated level by level as batched matrix products; what each node
computes (its activation, initialisation and symmetries) is its kind's (`tinc.nodes`).

Every level keeps its nodes' weights stacked as [nodes, fan_in, width], zero-padded to the
level's widest node so nodes of unequal width share one `bmm`; masks mark the real entries
for the coder. A level's first layer reads its parent's output: the children of one parent
are laid side by side in the output dimension, so the parent's activations are read once.
Activations are feature-major, [nodes, features, samples], which makes that side-by-side
output a stack of per-child blocks without a copy.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .tree import TreePlan


# Activations per level per `render` call. On CPU, 8 MiB of float32 stays in cache (2 MiB L2
# per core, 32 MiB L3 here), where the sine runs about twice as fast as from memory; a GPU
# wants large launches instead.
MAX_ELEMENTS = {"cpu": 1 << 21, "cuda": 1 << 26}

class TreeINR(nn.Module):
    """f(local coordinate) -> [leaves, samples, channels] for a `TreePlan`."""

    def __init__(self, plan: TreePlan, w0: float = 30.0, generator: torch.Generator | None = None,
                 output_mean: torch.Tensor | None = None):
        """`output_mean` [channels]: every leaf's head starts with this bias (the data's mean)
        rather than near 0, the middle of the data's range."""
        super().__init__()
        self.plan = plan
        self.node = plan.node
        self.w0 = w0
        self.output_mean = output_mean
        initial: list[torch.Tensor] = []  # weight, bias per layer: the order of `tensors()`
        masks = []
        for level, widths in enumerate(plan.widths):
            fan_in = plan.fan_in(level)
            width_pad = int(widths.max())
            in_pad = int(fan_in.max())
            for layer in range(plan.layers[level]):
                layer_in = fan_in if layer == 0 else widths
                layer_in_pad = in_pad if layer == 0 else width_pad
                first = level == 0 and layer == 0
                masks.append(self._add_layer(layer_in, widths, layer_in_pad, width_pad, first, generator, initial))
        leaf_widths = plan.widths[-1]
        masks.append(self._add_layer(leaf_widths, np.full(len(leaf_widths), plan.channels), int(leaf_widths.max()), plan.channels, False,
                                     generator, initial))
        if output_mean is not None:
            # drawn all the same, so every other weight is the one the generator gives anyway
            initial[-1] = output_mean.detach().to(initial[-1].dtype).cpu().reshape(1, 1, -1).expand_as(initial[-1]).clone()
        # One flat parameter, viewed per tensor: the optimiser then updates one tensor per step
        # instead of two per layer (11-17% more steps in the same time, RESULTS-ARCHIVE.md section 12)
        self.tensor_shapes = [tuple(t.shape) for t in initial]
        self.flat = nn.Parameter(torch.cat([t.ravel() for t in initial]))
        for index, (weight_mask, bias_mask) in enumerate(masks):
            self.register_buffer(f"weight_mask_{index}", weight_mask)
            self.register_buffer(f"bias_mask_{index}", bias_mask)
        self.n_layers = len(masks)
        inputs = plan.input_axes
        self.register_buffer("input_axes", None if inputs == tuple(range(plan.layout.ndim)) else torch.as_tensor(inputs), persistent=False)

    def _add_layer(self, fan_in, fan_out, in_pad, out_pad, first, generator, initial):
        bounds = None
        if first:
            block = self.plan.layout.block_shape
            bounds = self.node.first_layer_bounds(tuple(block[a] for a in self.plan.input_axes), self.w0)
        weight, bias, weight_mask, bias_mask = self.node.initial_layer(fan_in, fan_out, in_pad, out_pad, bounds, self.w0, generator)
        initial += [weight, bias]
        return weight_mask, bias_mask

    def masks(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"weight_mask_{index}"), getattr(self, f"bias_mask_{index}")

    def split(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """`flat` (the parameter, or anything shaped like it, e.g. its gradient) as one view
        per stored tensor: weight, bias, layer by layer."""
        sizes = [math.prod(shape) for shape in self.tensor_shapes]
        return [piece.view(shape) for piece, shape in zip(torch.split(flat, sizes), self.tensor_shapes)]

    def forward(self, coords: torch.Tensor, stored: list[torch.Tensor] | None = None) -> torch.Tensor:
        """coords [samples, ndim] -> [leaves, samples, channels]; `stored` replaces the model's
        own tensors (`split(flat)`), e.g. by their rounded values (`tinc.entropy`)."""
        return self._evaluate(coords, self.layer_tensors(stored=stored))

    def layer_tensors(self, kept: list[np.ndarray] | None = None,
                      stored: list[torch.Tensor] | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(weight [nodes, out, in], bias [nodes, out, 1]) per layer, w0 applied, for `_evaluate`.

        Padding entries start at zero and only ever meet zero activations or zero weights, so
        their gradients are exactly zero and no mask is needed. A level's first layer lays
        all children of a parent side by side, [parents, children * out, in]: one product
        per parent feeds every child. `kept` (sorted nodes per level) restricts every level
        to those nodes, keeping all children of kept parents in the first layer.
        """
        plan, children = self.plan, self.plan.layout.children
        device = self.flat.device
        stored = self.split(self.flat) if stored is None else stored
        tensors, index = [], 0
        for level in range(plan.depth + 1):
            nodes = None if kept is None else torch.as_tensor(kept[level], device=device)
            for layer in range(plan.layers[level] + (level == plan.depth)):
                weight, bias = stored[2 * index], stored[2 * index + 1]
                scale = self.node.scale(self.w0, head=index == self.n_layers - 1)
                if layer == 0 and level > 0:
                    c = children[level - 1]
                    if kept is not None:
                        siblings = (kept[level - 1][:, None] * c + np.arange(c)).ravel()
                        weight = weight.index_select(0, torch.as_tensor(siblings, device=device))
                    fan_in, out = weight.shape[1:]
                    weight = weight.view(-1, c, fan_in, out).transpose(2, 3).reshape(-1, c * out, fan_in) * scale
                else:
                    weight = (weight if nodes is None else weight.index_select(0, nodes)).transpose(1, 2) * scale
                bias = (bias if nodes is None else bias.index_select(0, nodes)).transpose(1, 2) * scale
                tensors.append((weight, bias))
                index += 1
        return tensors

    def _evaluate(self, coords: torch.Tensor, tensors: list[tuple[torch.Tensor, torch.Tensor]],
                  rows: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Run `layer_tensors` on coords [samples, ndim] -> [nodes, samples, channels]; the
        columns of `plan.input_axes` are the root's inputs.

        Activations are feature-major, [nodes, features, samples]: the children laid side
        by side by a first layer are then already one contiguous block each, with no copy.
        `rows` picks, per level, the kept children out of the kept parents' products.
        """
        plan = self.plan
        samples = coords.shape[0]
        if self.input_axes is not None:
            coords = coords.index_select(1, self.input_axes)
        h = coords.t().contiguous().unsqueeze(0)  # one parent (a virtual one above the root)
        index = 0
        for level in range(plan.depth + 1):
            for layer in range(plan.layers[level]):
                weight, bias = tensors[index]
                if layer == 0 and level > 0:
                    h = torch.bmm(weight, h).view(-1, bias.shape[1], samples)
                    if rows is not None:
                        h = h.index_select(0, rows[level])
                    h = self.node.activation(_add(h, bias))
                else:
                    h = self.node.activation(torch.baddbmm(bias, weight, h))
                index += 1
        weight, bias = tensors[index]
        return torch.baddbmm(bias, weight, h).transpose(1, 2)

    def tensors(self, canonical: bool = False) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Every weight and bias as (name, values, mask) in a fixed order, for the coder;
        `canonical`: those of the canonical form (`canonical_order`), the model unchanged."""
        flat = self.flat.detach().cpu()
        if canonical:
            index, sign = self.canonical_order()
            flat = flat[index] * sign
        stored = self.split(flat)
        result = []
        for index in range(self.n_layers):
            weight_mask, bias_mask = self.masks(index)
            result.append((f"w{index}", stored[2 * index].numpy(), weight_mask.cpu().numpy().astype(bool)))
            result.append((f"b{index}", stored[2 * index + 1].numpy(), bias_mask.cpu().numpy().astype(bool)))
        return result

    def canonical_order(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(index, sign) such that `flat[index] * sign` is the same function in the node
        kind's canonical form (`SineMLP.canonical_order`), which the coder stores cheaper."""
        stored = [piece.numpy() for piece in self.split(self.flat.detach().cpu())]
        bias_masks = [self.masks(layer)[1].cpu().numpy().astype(bool) for layer in range(self.n_layers)]
        levels = [level for level, count in enumerate(self.plan.layers) for _ in range(count)] + [self.plan.depth]
        index, sign = self.node.canonical_order(stored, bias_masks, levels, self.plan.layout.children)
        return torch.as_tensor(index), torch.as_tensor(sign)

    @torch.no_grad()
    def canonicalise(self) -> None:
        """Set the weights to their canonical form (`canonical_order`): the same function."""
        index, sign = self.canonical_order()
        self.flat.copy_(self.flat[index.to(self.flat.device)] * sign.to(self.flat.device))

    def bias_runs(self) -> list[np.ndarray | None]:
        """Per stored tensor, the runs the coder may code as sorted: each node's neuron count
        for a hidden layer's biases (ascending in the canonical form), None elsewhere."""
        runs: list[np.ndarray | None] = []
        for layer in range(self.n_layers):
            counts = self.masks(layer)[1].sum(dim=(1, 2)).cpu().numpy().astype(np.int64)
            runs += [None, counts if layer < self.n_layers - 1 else None]
        return runs

    @torch.no_grad()
    def load_tensors(self, values: list[np.ndarray]) -> None:
        """Inverse of `tensors`: set weights and biases (padded arrays) in the same order."""
        for view, value in zip(self.split(self.flat), values, strict=True):
            view.copy_(torch.as_tensor(value, dtype=view.dtype))

    def _selection(self, leaves: np.ndarray) -> tuple[list[np.ndarray], list[torch.Tensor | None], torch.Tensor | None]:
        """Per level the sorted nodes on some selected leaf's root path; per level the rows of
        the kept children among all children of the kept parents; the selected leaves' rows."""
        plan, children = self.plan, self.plan.layout.children
        counts = plan.layout.nodes_per_level
        leaves = np.asarray(leaves, dtype=np.int64)
        kept = [_at_least_two(leaves, counts[-1])]
        for level in range(plan.depth - 1, -1, -1):
            kept.insert(0, _at_least_two(np.unique(kept[0] // children[level]), counts[level]))
        device = self.flat.device
        rows: list[torch.Tensor | None] = [None]
        for level in range(1, plan.depth + 1):
            c, parents = children[level - 1], kept[level - 1]
            rows.append(torch.as_tensor(np.searchsorted(parents, kept[level] // c) * c + kept[level] % c, device=device))
        order = None if len(kept[-1]) == len(leaves) else torch.as_tensor(np.searchsorted(kept[-1], leaves), device=device)
        return kept, rows, order

    def chunk_size(self, max_elements: int | None = None) -> int:
        """Coordinates per `render` call: a multiple of `ALIGN_ROWS`, and a function of the tree
        and device alone, so partial decodes split coordinates exactly like full ones."""
        if max_elements is None:
            max_elements = MAX_ELEMENTS.get(self.flat.device.type, MAX_ELEMENTS["cpu"])
        widest = max(int(w.max()) for w in self.plan.widths)
        chunk = max_elements // (self.plan.layout.leaves * max(widest, self.plan.channels))
        return max(ALIGN_ROWS, chunk // ALIGN_ROWS * ALIGN_ROWS)

    @torch.no_grad()
    def render(self, coords: torch.Tensor, max_elements: int | None = None) -> torch.Tensor:
        """Evaluate every leaf on `coords` in chunks that keep activations under `max_elements`."""
        return self.render_leaves(coords, None, max_elements=max_elements)

    @torch.no_grad()
    def render_leaves(self, coords: torch.Tensor, leaves: np.ndarray | None, needed: np.ndarray | None = None,
                      max_elements: int | None = None) -> torch.Tensor:
        """`render` restricted to sorted unique `leaves` (None: all) -> [k, samples, channels].

        Only the selected leaves and their ancestors are evaluated, each ancestor once. Every
        node runs the same float32 ops as in a full render (a bmm of the same per-node shape
        over fewer nodes, on the same chunks of coordinates, a multiple of `ALIGN_ROWS`), so on
        CPU each selected leaf is bit-identical to its row of the full render. `needed` (bool
        per coordinate) skips chunks holding no needed coordinate, left uninitialised.
        """
        chunk, samples = self.chunk_size(max_elements), coords.shape[0]
        coords = _pad_rows(coords)
        kept, rows, order = (None, None, None) if leaves is None else self._selection(leaves)
        tensors = self.layer_tensors(kept)
        count = self.plan.layout.leaves if leaves is None else len(leaves)
        out = torch.empty(count, coords.shape[0], self.plan.channels, device=coords.device)
        for start in range(0, coords.shape[0], chunk):
            if needed is None or needed[start:start + chunk].any():
                values = self._evaluate(coords[start:start + chunk], tensors, rows)
                out[:, start:start + chunk] = values if order is None else values.index_select(0, order)
        return out[:, :samples]


# Decoding (no autograd) updates fresh activations in place: one memory pass less per layer,
# with the same kernels and so the same values as training's out-of-place ops.
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
