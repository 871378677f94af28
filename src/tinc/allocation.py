"""Parameter allocation: tree depth, per-level and per-node shares, and MLP widths."""

from __future__ import annotations

import numpy as np

from .config import TincConfig
from .errors import TincConfigError
from .nodes import SINE_MLP, node_kind
from .partition import TreeLayout, choose_splits
from .tree import TreePlan, input_axes

MAX_AUTO_DEPTH = 6
# `auto_floor`: how many times `min_width` every MLP of a tree deeper than 1 must reach
DEEP_FLOOR = 4  # where its nodes have 8 or more children (3-D splits)
DEEP_FLOOR_FEW_CHILDREN = 3  # where they have fewer (2-D splits)
SHARE_CLIP = 4.0  # no node gets more than 4x (or less than 1/4) of its level's mean share
# Under "balanced" a node weighs (leaves below it) ** this; 1 gives every level the same
# share of the parameters. 0.5 (each level in proportion to the square root of its node
# count, RESULTS-ARCHIVE.md section 11) gave up to 0.5 dB less in 15 of 16 fits at
# 64x-512x and 0.17 dB more in one (section 20); 1.5 lost up to 0.42 dB on example4d.
AUTO_LEVEL_EXPONENT = 1.0
# Under "auto" each level's share is proportional to (its part of the data's variance,
# `level_energy`) ** this; 0 would be "balanced".
SIMILARITY_EXPONENT = 0.5


def allocate(
    layout: TreeLayout,
    params: float,
    layers: tuple[int, ...],
    level_weights: tuple[float, ...],
    shares: list[np.ndarray],
    channels: int,
    kind: int = SINE_MLP,
) -> TreePlan:
    """Split `params` over levels by weight and over nodes by share, then solve each width."""
    width_for = node_kind(kind).width_for
    counts = layout.nodes_per_level
    denominator = sum(w * n for w, n in zip(level_weights, counts))
    widths: list[np.ndarray] = []
    for level, count in enumerate(counts):
        fan_out = channels if level == layout.depth else 0
        if level == 0:
            fan_in = np.array([len(input_axes(layout.shape))])
        else:
            fan_in = np.repeat(widths[-1], layout.children[level - 1])
        per_node = params * level_weights[level] * shares[level] / denominator
        widths.append(np.array([width_for(p, int(f), layers[level], fan_out) for p, f in zip(per_node, fan_in)], dtype=np.int64))
    return TreePlan(layout, layers, tuple(widths), channels)


def node_shares(layout: TreeLayout, blocks: np.ndarray | None, valid: np.ndarray | None, mode: str, aoi_threshold: float | None) -> list[np.ndarray]:
    """Relative parameter share of every node within its level (mean 1 per level).

    `blocks` is the normalised data as [leaves, block_voxels, C]; a node's region is the
    union of its leaves, so statistics are summed up the tree.
    """
    counts = layout.nodes_per_level
    if mode == "equal" or blocks is None:
        return [np.ones(n) for n in counts]
    values = blocks.astype(np.float64).mean(axis=-1)
    weight = valid.astype(np.float64)
    if mode == "aoi":
        threshold = float(np.sum(values * weight) / weight.sum()) if aoi_threshold is None else aoi_threshold
        leaf_stat = np.stack([((values > threshold) * weight).sum(1), weight.sum(1)], axis=1)
    else:
        leaf_stat = np.stack([(values * weight).sum(1), (values * values * weight).sum(1), weight.sum(1)], axis=1)
    shares = []
    for n in counts:
        stat = leaf_stat.reshape(n, -1, leaf_stat.shape[1]).sum(axis=1)
        if mode == "aoi":
            importance = stat[:, 0] / np.maximum(stat[:, 1], 1) + 0.05
        else:
            mean = stat[:, 0] / np.maximum(stat[:, 2], 1)
            importance = np.sqrt(np.maximum(stat[:, 1] / np.maximum(stat[:, 2], 1) - mean * mean, 0)) + 1e-3
        share = np.clip(importance / importance.mean(), 1 / SHARE_CLIP, SHARE_CLIP)
        shares.append(share / share.mean())
    return shares


def level_energy(layout: TreeLayout, blocks: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The part of the data's variance each level's nodes can hold, summing to 1.

    Every node sees its region through local coordinates shared by all the leaf blocks
    below it, so the root holds what all leaf blocks have in common at the same local
    position (their mean block), a node of level l what the blocks below it share beyond
    its parent's mean, and the leaves the rest. Similar distant blocks give the shallow
    levels a large part; unlike ones leave almost all of it to the leaves.
    `blocks` is [leaves, block_voxels, C] in tree order, `valid` [leaves, block_voxels].
    """
    data = blocks.astype(np.float64)
    weight = np.broadcast_to(valid.astype(np.float64)[..., None], data.shape)
    previous = np.full_like(data, (data * weight).sum() / max(weight.sum(), 1.0))
    energy = []
    for count in layout.nodes_per_level:
        grouped, grouped_weight = data.reshape(count, -1, *data.shape[1:]), weight.reshape(count, -1, *data.shape[1:])
        mean = (grouped * grouped_weight).sum(1, keepdims=True) / np.maximum(grouped_weight.sum(1, keepdims=True), 1e-12)
        mean = np.broadcast_to(mean, grouped.shape).reshape(data.shape)
        energy.append(float((((mean - previous) ** 2) * weight).sum()))
        previous = mean
    energy = np.asarray(energy)
    total = energy.sum()
    return energy / total if total > 0 else np.full(len(energy), 1.0 / len(energy))


def level_weights(layout: TreeLayout, config: TincConfig, energy: np.ndarray | None = None) -> tuple[float, ...]:
    """Relative parameters per node of each level.

    "balanced": a node weighs `(leaves below it) ** AUTO_LEVEL_EXPONENT`, so every level gets
    the same share. A shallow node serves every leaf beneath it, and its width is the input
    width of its children; with equal weights a depth-2 tree of 1 + 4 + 16 nodes gives its
    root 5% of the budget. "auto": each level's share follows its part of the data's
    variance (`level_energy`, raised to `SIMILARITY_EXPONENT`), so data whose distant
    blocks are alike gives its shallow levels more; without `energy`, "balanced".
    """
    counts = layout.nodes_per_level
    if config.level_weights == "balanced" or (config.level_weights == "auto" and energy is None):
        return tuple(float(layout.leaves / n) ** AUTO_LEVEL_EXPONENT for n in counts)
    if config.level_weights == "auto":
        shares = np.maximum(np.asarray(energy, dtype=np.float64), 1e-6) ** SIMILARITY_EXPONENT
        return tuple(float(share / shares.sum() * layout.leaves / n) for share, n in zip(shares, counts))
    return config.level_weights_for(layout.depth)


def auto_floor(layout: TreeLayout, min_width: int) -> int:
    """Narrowest MLP the automatic depth accepts in a tree of `layout`'s depth.

    A first split into leaf blocks beats one network by 0.5-3.3 dB even with 8-12 wide MLPs
    (RESULTS-ARCHIVE.md section 8). A second split pays only where its MLPs stay wide, and
    how wide depends on how many children a node has (benchmarks/RESULTS.md, "How deep at
    size"): splitting three axes (8 children), the grey-matter map at 64x lost 1.67 dB at
    plain widths 30 and the small inputs 0.4-2.1 dB at 15-30 (RESULTS-ARCHIVE.md section
    14), so such trees need `min_width` x `DEEP_FLOOR`; splitting two (4 children), the
    real-sized MR image and radiograph gained 0.15-0.51 dB at plain widths 25-28, so
    `min_width` x `DEEP_FLOOR_FEW_CHILDREN` is enough there.
    """
    if layout.depth <= 1:
        return min_width
    return (DEEP_FLOOR if max(layout.children) >= 8 else DEEP_FLOOR_FEW_CHILDREN) * min_width


def plan_tree(shape: tuple[int, ...], params: float, config: TincConfig, channels: int, data=None,
              shape_params: float | None = None) -> tuple[TreePlan, str | None]:
    """Choose the depth and widths for `params` parameters.

    `data(layout) -> (blocks, valid)` supplies the data for intra-level shares. The depth
    is the requested one, or the deepest whose plain widths (equal weights and shares, as
    the floor was measured) all reach `auto_floor(layout)`; a requested depth the budget
    cannot feed falls back to a shallower tree, and the returned note says so. The depth
    and layers are chosen for `shape_params` (at most `params`; default `params`), the
    widths sized for `params`.
    """
    shape_params = params if shape_params is None else min(shape_params, params)
    requested = config.requested_depth()
    note = None
    for depth in range(MAX_AUTO_DEPTH if requested is None else requested, -1, -1):
        layout = TreeLayout(tuple(shape), choose_splits(tuple(shape), depth))
        if layout.depth != depth:
            continue
        equal = [np.ones(n) for n in layout.nodes_per_level]
        floor = config.min_width if requested is not None else auto_floor(layout, config.min_width)
        for layers, narrowest_used in config.layer_choices(depth):
            plain = allocate(layout, shape_params, layers, (1.0,) * (depth + 1), equal, channels)
            narrowest = min(int(w.min()) for w in plain.widths)
            if narrowest >= max(floor, narrowest_used):
                break
        if narrowest < floor:
            if depth == requested:
                note = f"the budget cannot feed depth {requested} (narrowest MLP {narrowest} < {floor})"
            continue
        if requested is not None and depth != requested:
            note = (note or f"the array is too small for depth {requested}") + f"; using depth {depth}"
        needs_data = data is not None and (config.intra != "equal" or (config.level_weights == "auto" and depth > 0))
        blocks, valid = data(layout) if needs_data else (None, None)
        shares = node_shares(layout, blocks, valid, config.intra, config.aoi_threshold)
        energy = level_energy(layout, blocks, valid) if blocks is not None and config.level_weights == "auto" else None
        # Raising starved nodes to min_width spends extra parameters: shrink the rest to pay.
        # Every node at min_width fits (the plain widths reach it), so the shrinking ends.
        target, weights = params, level_weights(layout, config, energy)
        while True:
            plan = allocate(layout, target, layers, weights, shares, channels)
            plan = TreePlan(layout, layers, tuple(np.maximum(w, config.min_width) for w in plan.widths), channels)
            if plan.params <= params:
                return plan, note
            target *= min(params / plan.params, 0.99)
    raise TincConfigError(
        f"ratio too high for this array: {int(params)} parameters cannot make even one network "
        f"{config.min_width} wide; use a lower --ratio"
    )
