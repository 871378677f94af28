import numpy as np
import pytest

from tinc.allocation import allocate, level_energy, level_weights, node_shares, plan_tree
from tinc.nodes.sine_mlp import node_params, solve_width
from tinc.config import TincConfig
from tinc.errors import TincConfigError
from tinc.partition import TreeLayout, choose_splits


@pytest.mark.parametrize("params, fan_in, layers, fan_out", [(1000, 3, 2, 0), (5000, 20, 3, 1), (77, 3, 1, 1), (10**6, 64, 4, 3)])
def test_solve_width_is_the_largest_fitting_width(params, fan_in, layers, fan_out):
    width = solve_width(params, fan_in, layers, fan_out)
    assert node_params(width, fan_in, layers, fan_out) <= params < node_params(width + 1, fan_in, layers, fan_out)


def test_plan_stays_within_budget_and_sums_per_level():
    plan, note = plan_tree((64, 64, 64), 20000, TincConfig(levels=2), 1)
    assert note is None
    assert plan.params <= 20000 and plan.params > 0.9 * 20000
    assert sum(plan.params_per_level()) == plan.params


def test_requested_depth_too_deep_falls_back_and_says_so():
    plan, note = plan_tree((64, 64, 64), 8000, TincConfig(levels=3), 1)
    assert plan.depth < 3
    assert "depth 3" in note and f"using depth {plan.depth}" in note
    assert min(int(w.min()) for w in plan.widths) >= 8


def test_auto_depth_grows_with_budget():
    small, _ = plan_tree((128, 128, 128), 5000, TincConfig(), 1)
    large, _ = plan_tree((128, 128, 128), 500000, TincConfig(), 1)
    assert large.depth > small.depth


def test_budget_too_small_for_any_network_is_an_error():
    with pytest.raises(TincConfigError, match="ratio too high"):
        plan_tree((64, 64), 50, TincConfig(), 1)


def test_level_weights_move_parameters_between_levels():
    layout = TreeLayout((64, 64, 64), choose_splits((64, 64, 64), 1))
    ones = [np.ones(n) for n in layout.nodes_per_level]
    shallow = allocate(layout, 20000, (2, 2), (4.0, 1.0), ones, 1)
    deep = allocate(layout, 20000, (2, 2), (1.0, 4.0), ones, 1)
    assert shallow.widths[0][0] > deep.widths[0][0]
    assert shallow.widths[1][0] < deep.widths[1][0]


def test_variance_shares_favour_busy_regions():
    layout = TreeLayout((32, 32), choose_splits((32, 32), 1))
    data = np.zeros((32, 32, 1), np.float32)
    data[:16, :16] = np.random.default_rng(0).normal(size=(16, 16, 1))
    shares = node_shares(layout, layout.to_blocks(data), layout.valid_mask(), "variance", None)
    leaf_shares = shares[1]
    busy = int(np.argmax(leaf_shares))
    assert tuple(layout.leaf_positions[busy]) == (0, 0)
    assert np.isclose(leaf_shares.mean(), 1)
    aoi = node_shares(layout, layout.to_blocks(data), layout.valid_mask(), "aoi", 0.5)[1]
    assert tuple(layout.leaf_positions[int(np.argmax(aoi))]) == (0, 0)


def test_uneven_shares_keep_min_width_and_the_budget():
    layout_shape = (64, 64, 64)
    config = TincConfig(levels=2, intra="variance", min_width=8)
    data = np.random.default_rng(0).normal(size=layout_shape + (1,)).astype(np.float32)
    data[:32] *= 0.01  # half the volume nearly flat: its nodes would starve without the floor

    def blocks(layout):
        return layout.to_blocks(data), layout.valid_mask()

    plan, _ = plan_tree(layout_shape, 60000, config, 1, blocks)
    assert min(int(w.min()) for w in plan.widths) >= 8
    assert plan.params <= 60000
    assert len(set(plan.widths[2].tolist())) > 1


def test_auto_depth_splits_once_at_min_width_and_deeper_only_at_four_times_it():
    shape = (64, 64, 64)
    # 3000 parameters: depth 1 is 11-15 wide, enough for a first split (min_width 8)...
    plan, _ = plan_tree(shape, 3000, TincConfig(), 1)
    assert plan.depth == 1 and min(int(w.min()) for w in plan.widths) < 16
    # ...but not with min_width 12
    assert plan_tree(shape, 3000, TincConfig(min_width=12), 1)[0].depth == 0
    # 20000: depth 2 would be 10-14 wide (feasible when asked for), under 4 x min_width
    assert plan_tree(shape, 20000, TincConfig(levels=2), 1)[0].depth == 2
    assert plan_tree(shape, 20000, TincConfig(), 1)[0].depth == 1
    # depth 2's plain widths: narrowest 28 at 150000 parameters, 32 at 200000
    assert plan_tree(shape, 150000, TincConfig(), 1)[0].depth == 1
    assert plan_tree(shape, 200000, TincConfig(), 1)[0].depth == 2


def test_a_second_split_of_two_axes_needs_three_times_min_width():
    # 4 children per node: depth 2's plain widths are 23 at 30000 parameters, 25 at 35000
    assert plan_tree((512, 512), 30000, TincConfig(), 1)[0].depth == 1
    assert plan_tree((512, 512), 35000, TincConfig(), 1)[0].depth == 2
    # the same widths with 8 children per node stay at depth 1 (64^3 at 150000: 28 wide)
    assert plan_tree((64, 64, 64), 150000, TincConfig(), 1)[0].depth == 1


def test_the_shape_is_chosen_for_its_own_budget_and_the_widths_for_the_whole_one():
    shape = (64, 64, 64)
    # 200000 parameters would make depth 2; chosen for 150000, the tree stays at depth 1
    plan, _ = plan_tree(shape, 200000, TincConfig(), 1, shape_params=150000)
    smaller, _ = plan_tree(shape, 150000, TincConfig(), 1)
    assert plan.depth == smaller.depth == 1 and plan.layers == smaller.layers
    assert all((w > s).all() for w, s in zip(plan.widths, smaller.widths))
    assert 0.9 * 200000 < plan.params <= 200000
    # a shape budget above the real one is capped: it cannot pick a tree the budget cannot feed
    capped, _ = plan_tree(shape, 150000, TincConfig(), 1, shape_params=400000)
    assert capped.depth == 1 and all((c == s).all() for c, s in zip(capped.widths, smaller.widths))


def test_auto_level_weights_give_each_level_the_same_share():
    shape = (128, 96, 24)  # splits y and x twice: 1 + 4 + 16 nodes
    layout = TreeLayout(shape, choose_splits(shape, 2))
    assert level_weights(layout, TincConfig()) == pytest.approx((16.0, 4.0, 1.0))
    assert level_weights(layout, TincConfig(level_weights="equal")) == (1.0, 1.0, 1.0)
    auto, _ = plan_tree(shape, 12000, TincConfig(levels=2), 1)
    equal, _ = plan_tree(shape, 12000, TincConfig(levels=2, level_weights="equal"), 1)
    per_node = [p / n for p, n in zip(auto.params_per_level(), layout.nodes_per_level)]
    assert per_node[0] > per_node[1] > per_node[2]
    assert auto.widths[0][0] > equal.widths[0][0] and auto.widths[2][0] < equal.widths[2][0]
    assert 0.9 * 12000 < auto.params <= 12000


def test_automatic_depth_does_not_depend_on_the_level_weights():
    for params in (3000, 20000, 200000):
        depths = {plan_tree((64, 64, 64), params, TincConfig(level_weights=rule), 1)[0].depth for rule in ("auto", "equal")}
        assert len(depths) == 1


def test_unknown_level_weight_rule_is_refused():
    with pytest.raises(TincConfigError, match="level_weights"):
        TincConfig(level_weights="similar")
    with pytest.raises(TincConfigError, match="positive"):
        TincConfig(level_weights=(1.0, 0.0))


def test_auto_layers_give_a_single_network_four_layers_where_they_are_at_least_12_wide():
    shape = (64, 64, 64)
    tree, _ = plan_tree(shape, 3000, TincConfig(), 1)
    assert tree.depth == 1 and tree.layers == (2, 2)
    single, _ = plan_tree(shape, 3000, TincConfig(min_width=12), 1)
    assert single.depth == 0 and single.layers == (4,) and single.widths[0][0] >= 12
    # 4 layers of width 8 need 257 parameters: below that, a 2-layer network is still possible
    small, _ = plan_tree(shape, 200, TincConfig(), 1)
    assert small.depth == 0 and small.layers == (2,) and small.widths[0][0] >= 8
    # 4 layers 12 wide need 529: 400 would make them 10 wide, where 2 layers (17 wide) fit better
    assert plan_tree(shape, 400, TincConfig(), 1)[0].layers == (2,)
    assert plan_tree(shape, 600, TincConfig(), 1)[0].layers == (4,)
    assert plan_tree(shape, 400, TincConfig(levels=0, layers=4), 1)[0].layers == (4,)
    assert plan_tree(shape, 3000, TincConfig(min_width=12, layers=2), 1)[0].layers == (2,)
    with pytest.raises(TincConfigError, match="layers"):
        TincConfig(layers="deep")


def _tiled_and_noisy(shape=(32, 32, 32), seed=0):
    """The same random tile in every leaf block of a depth-1 layout, and independent noise."""
    layout = TreeLayout(shape, choose_splits(shape, 1))
    rng = np.random.default_rng(seed)
    tile = rng.standard_normal(layout.block_shape)
    tiled = np.tile(tile, tuple(s // b for s, b in zip(shape, layout.block_shape)))
    return layout, tiled, rng.standard_normal(shape)


def test_level_energy_gives_the_root_what_every_block_shares():
    layout, tiled, noise = _tiled_and_noisy()
    shared = level_energy(layout, layout.to_blocks(tiled[..., None]), layout.valid_mask())
    assert shared.sum() == pytest.approx(1.0) and shared[0] > 0.99
    unlike = level_energy(layout, layout.to_blocks(noise[..., None]), layout.valid_mask())
    # independent blocks: only chance (1 / leaves of the variance) is common to all of them
    assert unlike.sum() == pytest.approx(1.0) and unlike[-1] > 0.8
    assert unlike[0] == pytest.approx(1 / layout.leaves, abs=0.05)


def test_level_energy_ignores_the_padding_of_edge_blocks():
    shape = (30, 17)
    layout = TreeLayout(shape, choose_splits(shape, 2))
    data = np.random.default_rng(1).standard_normal(shape)[..., None]
    clean = level_energy(layout, layout.to_blocks(data), layout.valid_mask())
    blocks = layout.to_blocks(data).copy()
    blocks[~layout.valid_mask()] = 1e6  # whatever fills the padding must not count
    assert level_energy(layout, blocks, layout.valid_mask()) == pytest.approx(clean)


def test_similarity_weights_move_parameters_to_the_levels_that_hold_the_variance():
    layout, tiled, noise = _tiled_and_noisy()
    config = TincConfig(level_weights="auto")
    counts = layout.nodes_per_level

    def shares(energy):
        weights = level_weights(layout, config, np.asarray(energy))
        return np.array([w * n for w, n in zip(weights, counts)]) / sum(w * n for w, n in zip(weights, counts))

    assert shares([0.5, 0.5]) == pytest.approx([0.5, 0.5])
    assert shares([0.1, 0.9]) == pytest.approx([0.25, 0.75])  # square roots of the parts
    assert level_weights(layout, config) == level_weights(layout, TincConfig(level_weights="balanced"))

    def plan_for(array):
        return plan_tree(array.shape, 20000, TincConfig(levels=1, level_weights="auto"), 1,
                         lambda lay: (lay.to_blocks(array[..., None]), lay.valid_mask()))[0]

    alike, unlike = plan_for(tiled), plan_for(noise)
    assert alike.widths[0][0] > unlike.widths[0][0] and alike.widths[1][0] < unlike.widths[1][0]
    assert 0.9 * 20000 < unlike.params <= 20000
