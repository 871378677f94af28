"""OME-Zarr axis names come from what the input said (TIFF series axes, NIfTI dimensions,
a channel axis); a trailing length-1 sample axis is a channel of 1, never space. Outputs
are read back with ome-zarr-py's reader, which refuses axes out of NGFF order."""

import os

import nibabel
import numpy as np
import pytest
import tifffile
import zarr

import tinc
from tinc import container
from tinc.axes import default_axes, from_ngff, from_tiff, input_axes, ngff_order
from tinc.cli import main
from tinc.io import read_with_metadata

pytest.importorskip("ome_zarr")
from ome_zarr.io import parse_url  # noqa: E402
from ome_zarr.reader import Reader  # noqa: E402

FAST = ["--ratio", "8", "--steps", "20", "--batch", "2048", "--starts", "1", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_thread")


def ome_axes(path) -> tuple[list[tuple[str, str | None]], tuple[int, ...], list]:
    """(name, type) per axis, level 0's shape and level 0's scale, as ome-zarr-py reads them."""
    node = next(iter(Reader(parse_url(str(path)))()))
    axes = [(a["name"], a.get("type")) for a in node.metadata["axes"]]
    scale = node.metadata["coordinateTransformations"][0][0]["scale"]
    return axes, tuple(node.data[0].shape), scale


def roundtrip(tmp_path, source, *options) -> tuple[list, tuple, list]:
    assert main(["compress", str(source), "-o", str(tmp_path / "a.tinc"), *FAST, *options]) == 0, options
    assert main(["decompress", str(tmp_path / "a.tinc"), "-o", str(tmp_path / "a.zarr"), "--quiet"]) == 0
    return ome_axes(tmp_path / "a.zarr")


SPACE = "space"


def test_default_names_follow_the_shape():
    assert default_axes((5, 6)) == "YX"
    assert default_axes((4, 5, 6)) == "ZYX"
    assert default_axes((4, 5, 6, 1)) == "ZYXC"  # brain64.tif: tifffile's trailing sample axis
    assert default_axes((3, 4, 5, 6)) == "TZYX"
    assert default_axes((4, 3, 5, 6), channel_axis=1) == "ZCYX"
    assert default_axes((2, 3, 4, 5, 6)) == "QTZYX"
    assert ngff_order("ZYXC") == [3, 0, 1, 2] and ngff_order("XYZT") == [3, 2, 1, 0]


def test_tiff_axes_are_kept_only_where_they_add_something():
    assert from_tiff("QYXQ", (64, 64, 64, 1)) is None  # the default already says Z, Y, X, C
    assert from_tiff("ZCYX", (4, 3, 5, 6)) == "ZCYX"
    assert from_tiff("YXS", (5, 6, 3)) == "YXC"
    assert from_tiff("TZYX", (3, 4, 5, 6)) is None
    assert from_tiff("ZZYX", (3, 4, 5, 6)) is None  # contradictory: ignored
    # a file whose metadata section says otherwise, and the compress option overrides it
    assert input_axes((4, 3, 5, 6), None, {"axes": b"ZCYX"}) == "ZCYX"
    assert input_axes((4, 3, 5, 6), 0, {"axes": b"ZCYX"}) == "CQYX"
    assert input_axes((4, 3, 5, 6), None, {"axes": b"bogus"}) == "TZYX"


def test_brain64_trailing_sample_axis_is_a_channel_not_time(tmp_path):
    """The issue's case: tifffile reads brain64.tif as 64x64x64x1 (series axes QYXQ)."""
    source = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "brain64.tif")
    volume = tifffile.imread(source)[16:32, 16:48, 16:48]  # 16x32x32x1, same axes
    tifffile.imwrite(tmp_path / "v.tif", volume)
    assert read_with_metadata(tmp_path / "v.tif")[1] == {"format": "tiff"}  # nothing extra stored
    axes, shape, _ = roundtrip(tmp_path, tmp_path / "v.tif")
    assert axes == [("c", "channel"), ("z", SPACE), ("y", SPACE), ("x", SPACE)]
    assert shape == (1, 16, 32, 32)
    # tinc reads its own output back in the input's order
    assert tinc.read(tmp_path / "a.zarr").shape == volume.shape
    assert np.array_equal(tinc.read(tmp_path / "a.zarr"), tinc.decompress((tmp_path / "a.tinc").read_bytes()))


@pytest.mark.parametrize("shape, expected", [
    ((24, 20), [("y", SPACE), ("x", SPACE)]),
    ((6, 24, 20), [("z", SPACE), ("y", SPACE), ("x", SPACE)]),
    ((3, 6, 24, 20), [("t", "time"), ("z", SPACE), ("y", SPACE), ("x", SPACE)]),
])
def test_plain_arrays_get_spatial_names_from_the_end(tmp_path, shape, expected):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "v.npy", rng.random(shape, dtype=np.float32))
    axes, stored, _ = roundtrip(tmp_path, tmp_path / "v.npy")
    assert axes == expected and stored == shape


def test_tiff_channel_axis_in_the_middle_is_named_and_moved_first(tmp_path):
    rng = np.random.default_rng(1)
    volume = rng.integers(0, 255, (6, 2, 24, 20), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "v.tif", volume, metadata={"axes": "ZCYX"})
    axes, shape, _ = roundtrip(tmp_path, tmp_path / "v.tif")
    assert axes == [("c", "channel"), ("z", SPACE), ("y", SPACE), ("x", SPACE)] and shape == (2, 6, 24, 20)
    data = (tmp_path / "a.tinc").read_bytes()
    assert container.unpack(data).metadata == {"axes": b"ZCYX"}
    stored = zarr.open_group(str(tmp_path / "a.zarr"), mode="r")["0"][:]
    assert np.array_equal(stored, np.moveaxis(tinc.decompress(data), 1, 0))


def test_rgb_channel_axis_goes_first(tmp_path):
    import imagecodecs

    rng = np.random.default_rng(2)
    (tmp_path / "rgb.png").write_bytes(imagecodecs.png_encode(rng.integers(0, 255, (24, 20, 3), dtype=np.uint8)))
    axes, shape, _ = roundtrip(tmp_path, tmp_path / "rgb.png")
    assert axes == [("c", "channel"), ("y", SPACE), ("x", SPACE)] and shape == (3, 24, 20)


@pytest.mark.parametrize("planar", [False, True])
def test_a_colour_tiffs_samples_are_fitted_as_channels(tmp_path, planar):
    """As a PNG's are: the tree splits only the image's two axes and the header names the
    channel axis, so nothing else needs storing; planar samples (SYX) too."""
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 255, (3, 24, 20) if planar else (24, 20, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb", planarconfig="separate" if planar else "contig")
    _, metadata = read_with_metadata(tmp_path / "rgb.tif")
    assert metadata == {"channel_axis": -3 if planar else -1, "format": "tiff"}
    axes, shape, _ = roundtrip(tmp_path, tmp_path / "rgb.tif")
    assert axes == [("c", "channel"), ("y", SPACE), ("x", SPACE)] and shape == (3, 24, 20)
    parsed = container.unpack((tmp_path / "a.tinc").read_bytes())
    assert parsed.header["channel_axis"] == (-3 if planar else -1) and parsed.metadata == {}
    assert all(len(split) == 2 for split in parsed.header["splits"])


def test_a_grey_tiff_stack_of_three_slices_stays_a_volume(tmp_path):
    tifffile.imwrite(tmp_path / "v.tif", np.zeros((3, 24, 20), np.uint8), photometric="minisblack")
    assert read_with_metadata(tmp_path / "v.tif")[1] == {"format": "tiff"}


def test_scikit_image_samples_by_name_keep_their_colour_samples_as_channels(tmp_path):
    """`skimage:astronaut` is a colour image: its samples are channels, as `tinc compress`
    reads the PNG scikit-image ships; a grey sample stays as loaded."""
    skimage_data = pytest.importorskip("skimage.data")
    astronaut, metadata = read_with_metadata("skimage:astronaut")
    assert np.array_equal(astronaut, skimage_data.astronaut()) and metadata["channel_axis"] == -1
    cell, metadata = read_with_metadata("skimage:cell")
    assert np.array_equal(cell, skimage_data.cell()) and "channel_axis" not in metadata
    assert main(["compress", "skimage:astronaut", "-o", str(tmp_path / "a.tinc"), *FAST]) == 0
    assert container.unpack((tmp_path / "a.tinc").read_bytes()).header["channel_axis"] == -1


def test_nifti_axes_time_first_and_spacing_as_scale(tmp_path):
    rng = np.random.default_rng(3)
    image = nibabel.Nifti1Image(rng.random((12, 10, 8, 3), dtype=np.float32), np.diag([2.0, 3.0, 4.0, 1.0]))
    image.header.set_zooms((2.0, 3.0, 4.0, 1.5))
    nibabel.save(image, tmp_path / "v.nii.gz")
    axes, shape, scale = roundtrip(tmp_path, tmp_path / "v.nii.gz")
    assert axes == [("t", "time"), ("z", SPACE), ("y", SPACE), ("x", SPACE)]
    assert shape == (3, 8, 10, 12) and scale == [1.0, 4.0, 3.0, 2.0]
    data = tinc.decompress((tmp_path / "a.tinc").read_bytes())
    assert np.array_equal(tinc.read(tmp_path / "a.zarr"), data)  # read back in NIfTI's order


def test_dicom_frames_are_slices_with_their_spacing(tmp_path):
    pytest.importorskip("pydicom")
    from test_dicom import write_dicom

    frames = (np.arange(4 * 24 * 20, dtype=np.uint16).reshape(4, 24, 20) * 97) % 4000
    source = write_dicom(tmp_path / "m.dcm", frames, between=2.0)
    axes, shape, scale = roundtrip(tmp_path, source, "--ratio", "4")
    assert axes == [("z", SPACE), ("y", SPACE), ("x", SPACE)] and shape == (4, 24, 20) and scale == [2.0, 0.5, 0.25]


def test_an_ome_zarr_levels_axes_and_scale_become_metadata():
    """Only what the default does not say is kept: axes unlike the shape's default, and the
    spatial axes' scale where it is not all 1; malformed entries are no metadata."""
    names = [{"name": "c", "type": "channel"}, {"name": "z"}, {"name": "y"}, {"name": "x"}]
    assert from_ngff(names, [1, 2.0, 0.5, 0.25], (2, 10, 20, 30)) == {"axes": "CZYX", "spacing": (2.0, 0.5, 0.25)}
    assert from_ngff(["t", "z", "y", "x"], [9, 2, 0.5, 0.25], (5, 10, 20, 30)) == {"spacing": (2.0, 0.5, 0.25)}
    assert from_ngff(["z", "y", "x"], [1, 1, 1], (10, 20, 30)) == {}
    assert from_ngff(["z", "y", "x"], ["a", 1, 1], (10, 20, 30)) == {}
    assert from_ngff(["z", "y", "x"], [0, 1, 1], (10, 20, 30)) == {}
    assert from_ngff(["z", "z", "x"], [2, 1, 1], (10, 20, 30)) == {}  # two z axes
    assert from_ngff(["y", "x"], [2, 1], (10, 20, 30)) == {}  # not one entry per axis


def test_ome_and_imagej_tiffs_voxel_sizes_are_kept_and_written_back(tmp_path):
    """OME-XML PhysicalSize* or ImageJ spacing and resolution become `spacing`; a TIFF output
    of such an input is an OME-TIFF with the sizes, and an OME-Zarr output has them as its
    scale. A plain TIFF's resolution (a print density) is no voxel size."""
    z, y, x = np.meshgrid(np.arange(12), np.arange(20), np.arange(16), indexing="ij")
    data = (1000 + 500 * np.sin(z / 3) * np.cos(y / 4) + 9 * x).astype(np.uint16)
    tifffile.imwrite(tmp_path / "ome.tif", data, ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 2.0})
    tifffile.imwrite(tmp_path / "ij.tif", data, imagej=True, resolution=(4, 2), metadata={"spacing": 2.0, "unit": "um", "axes": "ZYX"})
    tifffile.imwrite(tmp_path / "plain.tif", data, resolution=(300, 300))
    assert read_with_metadata(tmp_path / "ome.tif")[1]["spacing"] == (2.0, 0.5, 0.25)
    assert read_with_metadata(tmp_path / "ij.tif")[1]["spacing"] == (2.0, 0.5, 0.25)
    assert "spacing" not in read_with_metadata(tmp_path / "plain.tif")[1]
    tifffile.imwrite(tmp_path / "ij-uncalibrated.tif", data, imagej=True)
    assert "spacing" not in read_with_metadata(tmp_path / "ij-uncalibrated.tif")[1]
    for name in ("ome", "ij"):
        assert main(["compress", str(tmp_path / f"{name}.tif"), "-o", str(tmp_path / f"{name}.tinc"), "--ratio", "8", "--steps", "20", "--quiet"]) == 0
        assert main(["decompress", str(tmp_path / f"{name}.tinc"), "-o", str(tmp_path / f"{name}-back.tif"), "--quiet"]) == 0
        assert read_with_metadata(tmp_path / f"{name}-back.tif")[1]["spacing"] == (2.0, 0.5, 0.25)
    assert main(["decompress", str(tmp_path / "ome.tinc"), "-o", str(tmp_path / "back.zarr"), "--quiet"]) == 0
    multiscales = zarr.open_group(str(tmp_path / "back.zarr"), mode="r").attrs["ome"]["multiscales"][0]
    assert multiscales["datasets"][0]["coordinateTransformations"][0]["scale"] == [2.0, 0.5, 0.25]
    # colour samples last: no OME axes fit them, so the TIFF output is a plain colour one
    rgb = np.stack([data // 16, data // 32, data // 64], axis=-1).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, ome=True, photometric="rgb",
                     metadata={"axes": "ZYXS", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 2.0})
    assert read_with_metadata(tmp_path / "rgb.tif")[1] == {"channel_axis": -1, "spacing": (2.0, 0.5, 0.25), "format": "tiff"}
    assert main(["compress", str(tmp_path / "rgb.tif"), "-o", str(tmp_path / "rgb.tinc"), "--ratio", "8", "--steps", "20", "--quiet"]) == 0
    assert main(["decompress", str(tmp_path / "rgb.tinc"), "-o", str(tmp_path / "rgb-back.tif"), "--quiet"]) == 0
    assert tifffile.imread(tmp_path / "rgb-back.tif").shape == rgb.shape
    assert main(["compress", str(tmp_path / "plain.tif"), "-o", str(tmp_path / "plain.tinc"), "--ratio", "8", "--steps", "20", "--quiet"]) == 0
    assert main(["decompress", str(tmp_path / "plain.tinc"), "-o", str(tmp_path / "plain-back.tif"), "--quiet"]) == 0
    with tifffile.TiffFile(tmp_path / "plain-back.tif") as tiff:
        assert not tiff.is_ome
