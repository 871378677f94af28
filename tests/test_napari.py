"""The napari reader, driven without a display: the npe2 manifest validates and reads through
npe2; layers are lazy (opening decodes nothing, a plane decodes only its plane) and carry
the axes, scale, channel handling and contrast limits the file implies."""

from pathlib import Path

import nibabel
import numpy as np
import pytest
import zarr

import tinc
from tinc import napari_reader
from tinc.io import read_with_metadata
from tinc.zarr_codec import TincZarrCodec
from tinc.zarr_store import final_attributes

npe2 = pytest.importorskip("npe2")

MANIFEST = Path(tinc.__file__).parent / "napari.yaml"
FAST = dict(ratio=8, steps=20, batch=2048, starts=1, quiet=True)


pytestmark = pytest.mark.usefixtures("one_thread")


def write_tinc(path, array, metadata=None, **options) -> Path:
    path.write_bytes(tinc.TincCodec(**{**FAST, **options}).encode(array, metadata=metadata))
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Path:
    """16 x 24 x 20 x 1 uint16: a TIFF stack as tifffile returns it, with its sample axis."""
    rng = np.random.default_rng(0)
    volume = rng.integers(100, 4000, (16, 24, 20, 1)).astype(np.uint16)
    return write_tinc(tmp_path_factory.mktemp("napari") / "stack.tinc", volume)


def test_manifest_is_valid_and_points_at_the_reader():
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    manifest.validate_imports()
    assert manifest.name == "tinc"
    (reader,) = manifest.contributions.readers
    assert set(reader.filename_patterns) == {"*.tinc", "*.zarr"} and reader.accepts_directories
    (command,) = manifest.contributions.commands
    assert command.id == reader.command and command.python_name == "tinc.napari_reader:get_reader"


def test_npe2_reads_a_tinc_file_through_the_manifest(npe2pm, stack):
    npe2pm.register(npe2.PluginManifest.from_file(MANIFEST))
    layers = npe2.read([str(stack)], stack=False, plugin_name="tinc")
    assert len(layers) == 1 and layers[0][2] == "image"


def test_get_reader_claims_only_tinc_data(tmp_path, stack):
    assert napari_reader.get_reader(str(stack)) is napari_reader.read
    assert napari_reader.get_reader([str(stack)]) is napari_reader.read
    assert napari_reader.get_reader([str(stack), str(stack)]) is None
    np.save(tmp_path / "a.npy", np.zeros((4, 4)))
    zarr.create_array(str(tmp_path / "plain.zarr"), shape=(4, 4), dtype="f4")
    for other in ("a.npy", "plain.zarr", "missing.tinc", "missing.zarr"):
        assert napari_reader.get_reader(str(tmp_path / other)) is None


def test_a_stack_opens_lazily_without_its_sample_axis(stack, decodes):
    (data, kwargs, kind), = napari_reader.read(str(stack))
    assert kind == "image" and decodes == []  # opening decodes nothing
    assert data.shape == (16, 24, 20) and kwargs["axis_labels"] == ("z", "y", "x")
    header = tinc.container.unpack(stack.read_bytes()).header
    assert kwargs["contrast_limits"] == header["range"] and kwargs["scale"] == [1.0, 1.0, 1.0]
    plane = np.asarray(data[5])  # what napari asks for the plane it shows
    assert decodes == [((5, 6), (0, 24), (0, 20), (0, 1))]  # the plane alone
    assert np.array_equal(plane, tinc.decompress(stack.read_bytes())[5, ..., 0])


def test_nifti_spacing_is_the_scale_in_viewer_order(tmp_path):
    rng = np.random.default_rng(1)
    image = nibabel.Nifti1Image(rng.random((12, 10, 8), dtype=np.float32), np.diag([2.0, 3.0, 4.0, 1.0]))
    nibabel.save(image, tmp_path / "v.nii.gz")
    array, metadata = read_with_metadata(tmp_path / "v.nii.gz")
    path = write_tinc(tmp_path / "v.tinc", array, {k: v for k, v in metadata.items() if k != "format"})
    (data, kwargs, _), = napari_reader.read(str(path))
    assert data.shape == (8, 10, 12) and kwargs["axis_labels"] == ("z", "y", "x") and kwargs["scale"] == [4.0, 3.0, 2.0]
    assert np.array_equal(np.asarray(data), tinc.decompress(path.read_bytes()).transpose(2, 1, 0))


def test_dicom_spacing_and_channels(tmp_path):
    rng = np.random.default_rng(2)
    volume = rng.random((6, 2, 16, 12), dtype=np.float32)
    path = write_tinc(tmp_path / "c.tinc", volume, {"spacing": (2.5, 0.5, 0.5)}, channel_axis=1)
    (data, kwargs, _), = napari_reader.read(str(path))
    assert data.shape == (2, 6, 16, 12) and kwargs["channel_axis"] == 0  # napari splits it into 2 layers
    assert kwargs["axis_labels"] == ("z", "y", "x") and kwargs["scale"] == [2.5, 0.5, 0.5]


def test_rgb_uint8_is_an_rgb_layer(tmp_path):
    image = np.random.default_rng(3).integers(0, 255, (24, 20, 3), dtype=np.uint8)
    path = write_tinc(tmp_path / "rgb.tinc", image, channel_axis=-1)
    (data, kwargs, _), = napari_reader.read(str(path))
    assert kwargs["rgb"] is True and data.shape == (24, 20, 3) and kwargs["axis_labels"] == ("y", "x")


def test_large_files_open_as_multiscale_from_coarser_grids(stack, monkeypatch):
    monkeypatch.setattr(napari_reader, "MULTISCALE_VOXELS", 1000)
    monkeypatch.setattr(napari_reader, "SMALLEST_LEVEL", 200)
    (levels, kwargs, _), = napari_reader.read(str(stack))
    assert kwargs["multiscale"] is True
    assert [level.shape for level in levels] == [(16, 24, 20), (8, 12, 10), (4, 6, 5)]
    data = stack.read_bytes()
    assert np.array_equal(np.asarray(levels[1]), tinc.decompress(data, scale=0.5)[..., 0])


def test_a_tinc_zarr_store_opens_lazily(tmp_path):
    data = np.random.default_rng(4).random((16, 12, 8), dtype=np.float32)
    path = str(tmp_path / "s.zarr")
    store = zarr.create_array(path, shape=data.shape, chunks=(8, 12, 8), dtype=data.dtype, compressors=None,
                              serializer=TincZarrCodec(ratio=8, steps=20, batch=2048, starts=1, halo=0))
    store[:] = data
    # as `tinc compress` leaves a store of a DICOM series: its spacing among the attributes
    store.attrs.update(final_attributes(True, "series", 0, 8.0, 50.0, {}, {"spacing": (2.0, 0.5, 0.25)}))
    assert napari_reader.get_reader(path) is napari_reader.read
    (array, kwargs, _), = napari_reader.read(path)
    decoded = zarr.open_array(path, mode="r")[:]
    assert array.chunks == ((8, 8), (12,), (8,)) and np.array_equal(np.asarray(array), decoded)
    assert kwargs["scale"] == [2.0, 0.5, 0.25]
    low, high = kwargs["contrast_limits"]
    assert low <= decoded.min() and decoded.max() <= high and high - low < 1.5


def test_a_one_dimensional_file_is_a_one_line_error(tmp_path):
    path = write_tinc(tmp_path / "line.tinc", np.random.default_rng(5).random(512, dtype=np.float32), ratio=4)
    with pytest.raises(tinc.TincInputError, match="napari shows images of 2 or more axes"):
        napari_reader.read(str(path))
