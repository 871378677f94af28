"""`tinc.open(...).to_dask()`: chunks are groups of whole leaf blocks, reductions equal the
full decode's, and nothing is decoded until a chunk (or a slice of one) is computed."""

import numpy as np
import pytest
import zarr

import tinc
from tinc import decode
from tinc.zarr_codec import TincZarrCodec

FAST = dict(ratio=8, steps=20, batch=2048, starts=1, quiet=True)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    data = np.random.default_rng(0).random((40, 36, 20), dtype=np.float32)
    path = tmp_path_factory.mktemp("dask") / "v.tinc"
    path.write_bytes(tinc.compress(data, levels=2, **FAST))
    return path


def test_mean_equals_the_full_decode_and_chunks_are_leaf_block_groups(volume, monkeypatch):
    monkeypatch.setattr(decode, "CHUNK_VOXELS_LOG2", 10)  # ~10^3-voxel chunks: several per axis
    opened = tinc.open(volume)
    array = opened.to_dask()
    full = np.asarray(opened)
    block = opened._decoder.plan.layout.block_shape
    assert array.shape == full.shape and array.dtype == full.dtype
    assert all(len(c) > 1 for c in array.chunks)
    for sizes, b in zip(array.chunks, block):
        assert all(size % b == 0 for size in sizes[:-1])  # whole leaf blocks, the edge excepted
    assert float(array.mean().compute()) == pytest.approx(float(full.astype(np.float64).mean()), rel=1e-6)
    assert np.array_equal(array.compute(), full)


def test_map_blocks_stays_lazy_and_decodes_only_the_chunks_computed(volume, decodes, monkeypatch):
    monkeypatch.setattr(decode, "CHUNK_VOXELS_LOG2", 10)
    opened = tinc.open(volume)
    doubled = opened.to_dask().map_blocks(lambda block: block * 2)
    assert decodes == []  # building the graph decodes nothing
    first = doubled.blocks[0, 0, 0].compute()
    assert len(decodes) == 1
    box = decodes[0]
    assert np.array_equal(first, 2 * opened[tuple(slice(a, b) for a, b in box)])
    assert opened.leaves_evaluated < opened._decoder.plan.layout.leaves


def test_a_plane_evaluates_only_that_plane(volume, decodes):
    opened = tinc.open(volume)
    plane = opened.to_dask()[7].compute()  # one chunk, but Dask fuses the slice into the read
    assert decodes == [((7, 8), (0, 36), (0, 20))]
    assert np.array_equal(plane, opened[7])


def test_scale_gives_the_resampled_decode(volume):
    data = volume.read_bytes()
    coarse = tinc.open(volume).to_dask(scale=0.5)
    assert np.array_equal(coarse.compute(), tinc.decompress(data, scale=0.5))


def test_zarr_store_to_dask(tmp_path):
    data = np.random.default_rng(1).random((16, 12, 8), dtype=np.float32)
    path = str(tmp_path / "s.zarr")
    store = zarr.create_array(path, shape=data.shape, chunks=(8, 12, 8), dtype=data.dtype, compressors=None,
                              serializer=TincZarrCodec(ratio=8, steps=20, batch=2048, starts=1, halo=0))
    store[:] = data
    store.attrs["tinc"] = {"complete": True}
    opened = tinc.open(path)
    array = opened.to_dask()
    assert array.chunks == ((8, 8), (12,), (8,))
    full = zarr.open_array(path, mode="r")[:]
    assert float(array.mean().compute()) == pytest.approx(float(full.astype(np.float64).mean()), rel=1e-6)
    assert np.array_equal(opened[8:], full[8:])


def test_open_refuses_a_plain_zarr_array(tmp_path):
    path = str(tmp_path / "plain.zarr")
    zarr.create_array(path, shape=(4, 4), dtype="f4")[:] = 1
    with pytest.raises(tinc.TincInputError, match="not compressed with the tinc codec"):
        tinc.open(path)
