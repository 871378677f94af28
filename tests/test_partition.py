import numpy as np
import pytest

from tinc.partition import TreeLayout, choose_splits


@pytest.mark.parametrize(
    "shape, depth",
    [((64, 64, 64), 2), ((197, 23, 19), 2), ((8, 128, 128), 3), ((33, 24, 20, 2), 2), ((37, 53), 2), ((5,), 1), ((300,), 3)],
)
def test_blocks_round_trip_any_shape(shape, depth):
    layout = TreeLayout(shape, choose_splits(shape, depth))
    data = np.random.default_rng(0).random(shape + (2,)).astype(np.float32)
    blocks = layout.to_blocks(data)
    assert blocks.shape == (layout.leaves, layout.block_voxels, 2)
    assert np.array_equal(layout.from_blocks(blocks), data)
    assert layout.valid_mask().sum() == np.prod(shape)


def test_leaves_cover_the_grid_once_and_children_are_contiguous():
    layout = TreeLayout((64, 64, 32), choose_splits((64, 64, 32), 3))
    positions = layout.leaf_positions
    flat = np.ravel_multi_index(tuple(positions.T), layout.grid)
    assert sorted(flat) == list(range(np.prod(layout.grid)))
    # the 2^k children of one parent sit next to each other in space
    children = layout.children[-1]
    first_family = positions[:children]
    assert (first_family.max(0) - first_family.min(0)).max() == 1


def test_splits_skip_short_axes():
    assert choose_splits((128, 128), 2) == ((2, 2), (2, 2))
    # a 2-frame time axis and a thin z are never split; cubes get 2^N children
    splits = choose_splits((128, 96, 24, 2), 3)
    assert all(s[3] == 1 for s in splits)
    assert splits[0] == (2, 2, 1, 1)
    assert choose_splits((4, 4, 4), 2) == ()


def test_block_coordinates_span_minus_one_to_one():
    layout = TreeLayout((10, 7), choose_splits((10, 7), 1))
    coords = layout.block_coordinates()
    assert coords.shape == (layout.block_voxels, 2)
    assert coords.min() == -1 and coords.max() == 1
