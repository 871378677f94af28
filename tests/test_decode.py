"""Partial, resampled, lazy and streaming decodes (tinc.decode) against the full decode."""

import numpy as np
import pytest
import skimage.data
import tifffile
import torch

import tinc
import tinc.decode
import tinc.decoder
from tinc.tree import TreePlan
from tinc.cli import main
from tinc.decode import write_decoded
from tinc.decoder import Decoder, parse_roi
from tinc.errors import TincConfigError
from tinc.model import TreeINR
from tinc.partition import TreeLayout, choose_splits

FAST = dict(steps=30, batch=8192, min_width=4, quiet=True)


def coded(array, **options):
    data = tinc.compress(array, **{"ratio": 8, "levels": 2, **FAST, **options})
    return data, tinc.decompress(data)


@pytest.fixture(scope="module")
def volume(brain64):
    """An odd-shaped 3-D crop: its edge blocks are padded, 4x4x4 leaves."""
    return coded(np.ascontiguousarray(brain64[:37, :42, :46]))


@pytest.fixture(scope="module")
def series():
    """A smooth 4-D float series; the short last axis is split once, the others twice."""
    grids = np.meshgrid(*[np.linspace(0, 1, n) for n in (20, 18, 16, 10)], indexing="ij")
    array = np.sin(3 * grids[0] + grids[3]) * np.cos(2 * grids[1]) + grids[2] ** 2
    return coded(array.astype(np.float32))


@pytest.fixture(scope="module", params=[-1, 0])
def rgb(request):
    image = skimage.data.astronaut()[:50, :60]
    if request.param == 0:
        image = np.ascontiguousarray(np.moveaxis(image, -1, 0))
    return coded(image, ratio=4, channel_axis=request.param)


def leaves_touching(decoder: Decoder, box) -> int:
    """Leaves whose block meets `box` (spatial axes), counted the slow obvious way."""
    layout = decoder.plan.layout
    spatial = [b for i, b in enumerate(box) if i != decoder.channel_axis]
    count = 0
    for position in layout.leaf_positions:
        lows = position * np.array(layout.block_shape)
        count += all(lo < stop and min(lo + b, s) > start
                     for lo, b, s, (start, stop) in zip(lows, layout.block_shape, layout.shape, spatial))
    return count


# --------------------------------------------------------------------- the model
def test_forward_leaves_is_bit_identical_to_forward():
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    for shape, depth, channels in [((16, 16, 16), 2, 1), ((40, 24), 3, 3), ((12, 12, 12, 8), 1, 2)]:
        layout = TreeLayout(shape, choose_splits(shape, depth))
        widths = tuple(rng.integers(3, 12, size=n) for n in layout.nodes_per_level)
        model = TreeINR(TreePlan(layout, (2,) * (layout.depth + 1), widths, channels))
        coords = torch.as_tensor(layout.block_coordinates())
        full = model.render(coords)
        for k in (1, 2, 3, layout.leaves // 2, layout.leaves):
            leaves = np.sort(rng.choice(layout.leaves, k, replace=False))
            assert torch.equal(model.render_leaves(coords, leaves), full[leaves])


# --------------------------------------------------------------------- regions
@pytest.mark.parametrize("roi", ["3:9,10:20,:", "0:37,0:42,0:46", "36:37,41:42,45:46", "10:11,,", ":,5:30,20:21", "9:12,10:12,11:13"])
def test_roi_equals_crop_of_full_decode_3d(volume, roi):
    data, full = volume
    decoder = Decoder(data)
    box = parse_roi(roi, full.shape)
    region = decoder.decode(roi)
    assert region.dtype == full.dtype
    assert np.array_equal(region, full[tuple(slice(a, b) for a, b in box)])
    assert decoder.leaves_evaluated == leaves_touching(decoder, box)


def test_small_roi_evaluates_few_leaves(volume):
    data, full = volume
    decoder = Decoder(data)
    assert decoder.plan.layout.leaves == 64
    decoder.decode("2:5,3:6,4:8")
    assert decoder.leaves_evaluated == 1
    decoder.decode("8:12,:,0:3")  # crosses one block border on the first axis
    assert decoder.leaves_evaluated == 2 * 4


def test_roi_equals_crop_4d(series):
    data, full = series
    decoder = Decoder(data)
    for roi in ["0:6,4:5,3:16,2:9", "12:20,:,:,5:6", ":,:,:,:"]:
        box = tuple(slice(a, b) for a, b in parse_roi(roi, full.shape))
        assert np.array_equal(decoder.decode(roi), full[box])
    assert np.array_equal(tinc.decompress(data, roi=(slice(1, 4), slice(None), slice(2, 3), slice(0, 10))), full[1:4, :, 2:3])


def test_roi_equals_crop_rgb_with_channel_axis(rgb):
    data, full = rgb
    decoder = Decoder(data)
    axis = decoder.channel_axis
    for spatial, channels in [((slice(5, 17), slice(30, 60)), slice(0, 3)), ((slice(40, 50), slice(0, 1)), slice(1, 3))]:
        key = list(spatial)
        key.insert(axis, channels)
        key = tuple(key)
        assert np.array_equal(decoder.decode(key), full[key])


@pytest.mark.parametrize("roi, message", [
    ("0:5,0:5", "3 axes"),
    ("0:5,0:5,0:5,0:5", "3 axes"),
    ("0:50,:,:", "outside 0:37"),
    ("-3:5,:,:", "outside"),
    ("5:5,:,:", "empty"),
    ("9:4,:,:", "empty"),
    ("a:b,:,:", "START:STOP"),
    ("1:2:3,:,:", "START:STOP"),
    ((slice(0, 9, 2), slice(None), slice(None)), "step"),
])
def test_bad_roi_is_a_one_line_config_error(volume, roi, message):
    data, _ = volume
    with pytest.raises(TincConfigError, match=message) as info:
        tinc.decompress(data, roi=roi)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------- resampling
def test_scale_one_and_original_shape_are_the_normal_decode(volume):
    data, full = volume
    decoder = Decoder(data)
    assert np.array_equal(decoder.decode(scale=1), full)
    assert np.array_equal(decoder.decode(shape=full.shape), full)
    # the leaf-group path (a whole-array box) gives the same numbers as the one-pass path
    out = np.empty_like(full)
    decoder.decode_into(out, parse_roi(None, full.shape), decoder.sampling(scale=1.0), group_bytes=1)
    assert np.array_equal(out, full)


def test_scale_two_shape_block_endpoints_and_smoothness(volume):
    data, full = volume
    decoder = Decoder(data)
    up = tinc.decompress(data, scale=2)
    assert up.shape == (74, 84, 92) and up.dtype == full.dtype
    assert tinc.decompress(data, scale=0.5).shape == (19, 21, 23)
    # local coordinates -1 and 1 are on both grids: every block's corners must agree
    layout, sampling = decoder.plan.layout, decoder.sampling(scale=2)
    old, new = [], []
    for g, b, b2, size in zip(layout.grid, layout.block_shape, sampling.block, layout.shape):
        pairs = [(p * b + o, p * b2 + o2) for p in range(g) for o, o2 in ((0, 0), (b - 1, b2 - 1)) if p * b + o < size]
        old.append([i for i, _ in pairs])
        new.append([j for _, j in pairs])
    corners = np.abs(full[np.ix_(*old)].astype(int) - up[np.ix_(*new)].astype(int))
    assert corners.max() <= 1  # the same coordinates; only a rounding of the last float bit may differ
    # the finer grid samples the same smooth function: nearest neighbours track the decode
    nearest = up[np.ix_(*[np.arange(s) * 2 for s in full.shape])].astype(float)
    assert np.corrcoef(nearest.ravel(), full.ravel().astype(float))[0, 1] > 0.95


def test_roi_on_a_resampled_grid_equals_its_crop(series):
    data, _ = series
    up = tinc.decompress(data, shape=(30, 27, 24, 15))
    assert up.shape == (30, 27, 24, 15)
    assert np.array_equal(tinc.decompress(data, shape="30,27,24,15", roi="4:20,:,10:11,3:7"), up[4:20, :, 10:11, 3:7])


def test_bad_scale_or_shape(volume, rgb):
    data, _ = volume
    for options, message in [(dict(scale=0), "positive"), (dict(scale=float("nan")), "positive"),
                             (dict(shape=(10, 10)), "has 3"), (dict(shape=(10, 0, 10)), "positive"),
                             (dict(scale=2, shape=(10, 10, 10)), "not both"), (dict(scale=1e4), "more than")]:
        with pytest.raises(TincConfigError, match=message):
            tinc.decompress(data, **options)
    data, full = rgb
    wrong = list(full.shape)
    wrong[Decoder(data).channel_axis] = 1
    with pytest.raises(TincConfigError, match="channels"):
        tinc.decompress(data, shape=tuple(wrong))


# --------------------------------------------------------------------- tinc.open
def test_open_is_lazy_and_slices_like_the_decoded_array(tmp_path, volume):
    data, full = volume
    path = tmp_path / "v.tinc"
    path.write_bytes(data)
    array = tinc.open(path)
    assert (array.shape, array.dtype, array.ndim, len(array)) == (full.shape, full.dtype, 3, 37)
    for key in [np.s_[3:10, :, 5], np.s_[-1], np.s_[..., -3:], np.s_[2, 4, 6], np.s_[5:5], np.s_[:, 40:100, 1:2]]:
        got = array[key]
        assert got.shape == full[key].shape and np.array_equal(got, full[key]), key
    array[2, 4, 6]
    assert array.leaves_evaluated == 1
    assert np.array_equal(np.asarray(array), full)
    with pytest.raises(TincConfigError, match="step"):
        array[::2]
    with pytest.raises(TincConfigError, match="not supported"):
        array[[1, 2]]
    with pytest.raises(IndexError):
        array[37]


# --------------------------------------------------------------------- streaming
@pytest.mark.filterwarnings("ignore:.*separate component planes:DeprecationWarning")  # tifffile on (3, H, W)
def test_streaming_output_equals_in_memory_decode(tmp_path, volume, rgb, monkeypatch):
    mapped = []
    open_memmap = np.lib.format.open_memmap
    monkeypatch.setattr(np.lib.format, "open_memmap", lambda *a, **k: mapped.append(1) or open_memmap(*a, **k))
    monkeypatch.setattr(tinc.decoder, "GROUP_BYTES", 1)  # one leaf block per group
    for data, full in (volume, rgb):
        decoder = Decoder(data)
        write_decoded(tmp_path / "s.npy", decoder, stream_bytes=0)
        assert np.array_equal(np.load(tmp_path / "s.npy"), full)
        write_decoded(tmp_path / "s.tif", decoder, stream_bytes=0)
        assert np.array_equal(tifffile.imread(tmp_path / "s.tif"), full)
        roi = (slice(None), slice(1, 30)) + (slice(None),) * (full.ndim - 2)  # axis 1 is spatial in every case
        write_decoded(tmp_path / "r.npy", decoder, roi=roi, stream_bytes=0)
        assert np.array_equal(np.load(tmp_path / "r.npy"), full[roi])
    assert len(mapped) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.npy", "s.npy", "s.tif"]  # no temporaries left


# --------------------------------------------------------------------- command line
def test_cli_roi_scale_and_streaming(tmp_path, volume, monkeypatch, capsys):
    data, full = volume
    source = tmp_path / "v.tinc"
    source.write_bytes(data)
    assert main(["decompress", str(source), "-o", str(tmp_path / "roi.npy"), "--roi", "10:30,0:42,20:40"]) == 0
    assert "24 of 64 leaf blocks" in capsys.readouterr().out
    assert np.array_equal(np.load(tmp_path / "roi.npy"), full[10:30, :, 20:40])
    assert main(["decompress", str(source), "-o", str(tmp_path / "up.tif"), "--scale", "2", "--quiet"]) == 0
    assert np.array_equal(tifffile.imread(tmp_path / "up.tif"), tinc.decompress(data, scale=2))
    assert main(["decompress", str(source), "-o", str(tmp_path / "s.npy"), "--shape", "20,21,23", "--roi", ":,:,3:4", "--quiet"]) == 0
    assert np.load(tmp_path / "s.npy").shape == (20, 21, 1)
    monkeypatch.setattr(tinc.decode, "STREAM_BYTES", 1024)
    assert main(["decompress", str(source), "-o", str(tmp_path / "big.npy"), "--quiet"]) == 0
    assert np.array_equal(np.load(tmp_path / "big.npy"), full)
    before = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()
    assert main(["decompress", str(source), "-o", str(tmp_path / "bad.npy"), "--roi", "0:99,:,:"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tinc: error: roi axis 0") and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    with pytest.raises(SystemExit):
        main(["decompress", str(source), "-o", str(tmp_path / "x.npy"), "--scale", "2", "--shape", "1,2,3"])


def test_cli_roi_keeps_nifti_world_coordinates(tmp_path):
    import nibabel
    from nibabel.testing import data_path

    source = tmp_path / "a.tinc"
    assert main(["compress", f"{data_path}/anatomical.nii", "-o", str(source), "--ratio", "32", "--steps", "20", "--batch", "8192", "--quiet"]) == 0
    assert main(["decompress", str(source), "-o", str(tmp_path / "full.nii"), "--quiet"]) == 0
    assert main(["decompress", str(source), "-o", str(tmp_path / "roi.nii"), "--roi", "5:20,10:30,7:8", "--quiet"]) == 0
    whole, crop = nibabel.load(tmp_path / "full.nii"), nibabel.load(tmp_path / "roi.nii")
    assert np.array_equal(np.asarray(crop.dataobj), np.asarray(whole.dataobj)[5:20, 10:30, 7:8])
    assert np.allclose(crop.affine, whole.affine @ np.array([[1, 0, 0, 5], [0, 1, 0, 10], [0, 0, 1, 7], [0, 0, 0, 1]]))
