"""DICOM input: single- and multi-frame files, series directories ordered by position,
rescaled values, compressed transfer syntaxes, bad input as one-line errors, the
`pydicom-data:` and `nilearn:` sample names, and the command line on a .dcm file."""

import json

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import (  # noqa: E402
    CTImageStorage,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    MPEG2MPML,
    MRImageStorage,
    generate_uid,
)

from tinc import axes, io  # noqa: E402
from tinc.cli import main  # noqa: E402
from tinc.errors import TincInputError  # noqa: E402

SERIES = "1.2.826.0.1.3680043.8.498.1"


def write_dicom(path, pixels, *, series=SERIES, position=None, orientation=(1, 0, 0, 0, 1, 0), instance=None,
                slope=None, intercept=None, spacing=(0.5, 0.25), between=None, sop_class=CTImageStorage,
                syntax=ExplicitVRLittleEndian, encoded=None, preamble=True, palette=None, modality_lut=None):
    """A minimal DICOM image file: 2-D `pixels`, or 3-D as a multi-frame file; `palette`
    (red, green, blue tables of 16-bit entries) makes the pixels indices into it;
    `modality_lut` (first stored value mapped, table of 16-bit entries) maps them to values."""
    pixels = np.asarray(pixels)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR" if sop_class == MRImageStorage else "CT"
    ds.SeriesInstanceUID, ds.StudyInstanceUID = series, SERIES + ".0"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = int(pixels.dtype.kind == "i")
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    if spacing is not None:
        ds.PixelSpacing = list(spacing)
    if between is not None:
        ds.SpacingBetweenSlices = between
    if position is not None:
        ds.ImagePositionPatient, ds.ImageOrientationPatient = list(position), list(orientation)
    if instance is not None:
        ds.InstanceNumber = instance
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if palette is not None:
        ds.PhotometricInterpretation = "PALETTE COLOR"
        for colour, table in zip(("Red", "Green", "Blue"), palette):
            setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [len(table), 0, 16])
            setattr(ds, f"{colour}PaletteColorLookupTableData", np.asarray(table, "<u2").tobytes())
    if modality_lut is not None:
        first, table = modality_lut
        item = Dataset()
        item.LUTDescriptor, item.ModalityLUTType = [len(table), first, 16], "US"
        item.add_new("LUTData", "OW", np.asarray(table, "<u2").tobytes())
        ds.ModalityLUTSequence = [item]
    if encoded is None:
        ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    else:
        from pydicom.encaps import encapsulate

        ds.PixelData = encapsulate(encoded)
        ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=preamble)
    return path


@pytest.fixture
def image():
    return (np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 97) % 4000


def test_single_frame_keeps_its_integer_dtype_and_spacing(tmp_path, image):
    array, metadata = io.read_with_metadata(write_dicom(tmp_path / "a.dcm", image))
    assert array.dtype == np.uint16 and np.array_equal(array, image)
    assert metadata["spacing"] == (0.5, 0.25) and metadata["format"] == "dicom"


def test_multi_frame_is_a_volume_with_the_slice_spacing(tmp_path, image):
    frames = np.stack([image, image + 1, image + 2, image + 3]).astype(np.int16) - 100
    array, metadata = io.read_with_metadata(write_dicom(tmp_path / "m.dcm", frames, between=2.0))
    assert array.shape == (4, 12, 10) and array.dtype == np.int16 and np.array_equal(array, frames)
    assert metadata["spacing"] == (2.0, 0.5, 0.25)


def test_a_series_directory_is_read_in_order_of_position_not_of_files(tmp_path, image):
    series = tmp_path / "series"
    series.mkdir()
    slices = [image + 1000 * k for k in range(3)]
    # file names, instance numbers and positions all in different orders: the positions win
    for name, k, instance in (("c.dcm", 0, 2), ("a.dcm", 2, 1), ("b.dcm", 1, 3)):
        write_dicom(series / name, slices[k], position=(0, 0, -20 + 2.5 * k), instance=instance)
    (series / "notes.txt").write_text("not DICOM")
    array, metadata = io.read_with_metadata(series)
    assert array.shape == (3, 12, 10) and array.dtype == np.uint16
    assert np.array_equal(array, np.stack(slices))
    assert metadata["spacing"] == (2.5, 0.5, 0.25)


def test_positions_are_projected_on_the_slice_normal(tmp_path, image):
    """Sagittal slices (rows along y, columns down z): the normal is -x, so the slice at the
    largest x comes first; files without an extension are found by their DICM marker."""
    slices = [image + 1000 * k for k in range(3)]
    for name, x in (("one", 3.0), ("two", -1.0), ("three", 1.0)):
        write_dicom(tmp_path / name, slices[int(x + 1) // 2], position=(x, 5, 7), orientation=(0, 1, 0, 0, 0, -1))
    array, metadata = io.read_with_metadata(tmp_path)
    assert np.array_equal(array, np.stack(slices[::-1])) and metadata["spacing"] == (2.0, 0.5, 0.25)
    alone, _ = io.read_with_metadata(tmp_path / "one")  # one such file on its own, too
    assert np.array_equal(alone, slices[2])


def test_without_positions_instance_numbers_order_the_slices(tmp_path, image):
    slices = [image + 1000 * k for k in range(3)]
    for name, k in (("x1.dcm", 2), ("x2.dcm", 0), ("x3.dcm", 1)):
        write_dicom(tmp_path / name, slices[k], instance=k + 1, between=3.0)
    array, metadata = io.read_with_metadata(tmp_path)
    assert np.array_equal(array, np.stack(slices)) and metadata["spacing"] == (3.0, 0.5, 0.25)


def test_rescale_gives_physical_values_float32_where_fractional(tmp_path, image):
    stored = image.astype(np.int16) - 2000
    array, _ = io.read_with_metadata(write_dicom(tmp_path / "ct.dcm", stored, slope=0.5, intercept=-1024))
    assert array.dtype == np.float32 and np.array_equal(array, stored * 0.5 - 1024)
    identity, _ = io.read_with_metadata(write_dicom(tmp_path / "id.dcm", stored, slope=1, intercept=0))
    assert identity.dtype == np.int16 and np.array_equal(identity, stored)
    # in a series, each slice's own rescale
    (tmp_path / "s").mkdir()
    for k, slope in enumerate((1, 2.5)):
        write_dicom(tmp_path / "s" / f"{k}.dcm", stored, position=(0, 0, k), slope=slope, intercept=0)
    volume, _ = io.read_with_metadata(tmp_path / "s")
    assert volume.dtype == np.float32 and np.array_equal(volume, np.stack([stored, 2.5 * stored]))


def test_an_integer_rescale_keeps_integers_of_the_stored_width(tmp_path, image):
    """A CT's Hounsfield units are integers: stored uint16 from 0 with intercept -1024 they
    are int16, not float32 at twice the bytes (the ratio counts the array's bytes)."""
    stored = image.astype(np.uint16)  # 0 to 3999
    ct, _ = io.read_with_metadata(write_dicom(tmp_path / "ct.dcm", stored, slope=1, intercept=-1024))
    assert ct.dtype == np.int16 and np.array_equal(ct, stored.astype(np.int64) - 1024)
    frames, _ = io.read_with_metadata(write_dicom(tmp_path / "frames.dcm", np.stack([stored, stored]), slope=2, intercept=5,
                                                  between=1.0))
    assert frames.dtype == np.uint16 and np.array_equal(frames, 2 * np.stack([stored, stored]).astype(np.int64) + 5)
    wide, _ = io.read_with_metadata(write_dicom(tmp_path / "wide.dcm", stored, slope=20, intercept=0))
    assert wide.dtype == np.uint32 and np.array_equal(wide, 20 * stored.astype(np.int64))
    (tmp_path / "s").mkdir()
    for k, intercept in enumerate((-1024, -1000)):
        write_dicom(tmp_path / "s" / f"{k}.dcm", stored, position=(0, 0, k), slope=1, intercept=intercept)
    volume, _ = io.read_with_metadata(tmp_path / "s")
    assert volume.dtype == np.int16 and np.array_equal(volume, np.stack([stored.astype(np.int64) - 1024, stored.astype(np.int64) - 1000]))


def test_a_modality_lut_maps_the_stored_values_instead_of_a_rescale(tmp_path):
    """A Modality LUT Sequence is the table form of a rescale: its values are the data (a
    rescale beside it, which the standard does not allow, is not applied on top)."""
    rng = np.random.default_rng(1)
    table = np.sort(rng.integers(0, 65536, size=4096)).astype(np.uint16)
    stored = rng.integers(-2048, 2048, size=(12, 10)).astype(np.int16)
    array, _ = io.read_with_metadata(write_dicom(tmp_path / "lut.dcm", stored, modality_lut=(-2048, table)))
    assert np.array_equal(array, table[stored + 2048])
    both, _ = io.read_with_metadata(write_dicom(tmp_path / "both.dcm", stored, modality_lut=(-2048, table), slope=2, intercept=5))
    assert np.array_equal(both, table[stored + 2048])
    (tmp_path / "s").mkdir()
    for k in range(2):
        write_dicom(tmp_path / "s" / f"{k}.dcm", stored + k, position=(0, 0, k), modality_lut=(-2048, table))
    volume, _ = io.read_with_metadata(tmp_path / "s")
    assert np.array_equal(volume, table[np.stack([stored, stored + 1]) + 2048])


def test_a_classic_mr_image_keeps_its_stored_integers(tmp_path, image):
    """MR Image Storage has no modality rescale in the standard: a slope there is a vendor's
    display scale, so the stored values are the data (as in pydicom-data's MR2_UNCI.dcm)."""
    array, _ = io.read_with_metadata(write_dicom(tmp_path / "mr.dcm", image, slope=3.774114, intercept=0.000061,
                                                 sop_class=MRImageStorage))
    assert array.dtype == np.uint16 and np.array_equal(array, image)


def test_a_palette_colour_image_is_read_as_the_rgb_it_shows(tmp_path):
    """Its stored values index a colour table, so a lossy codec must see the colours: moving
    an index by one may show any other colour. A file, a multi-frame file and a series."""
    rng = np.random.default_rng(0)
    tables = rng.integers(0, 65536, size=(3, 256)).astype(np.uint16)
    indices = rng.integers(0, 256, size=(2, 12, 10)).astype(np.uint8)
    shown = np.moveaxis(tables[:, indices], 0, -1)  # (frames, rows, columns, RGB)
    array, metadata = io.read_with_metadata(write_dicom(tmp_path / "one.dcm", indices[0], palette=tables))
    assert array.shape == (12, 10, 3) and metadata["channel_axis"] == -1 and np.array_equal(array, shown[0])
    frames, _ = io.read_with_metadata(write_dicom(tmp_path / "frames.dcm", indices, palette=tables, between=2.0))
    assert np.array_equal(frames, shown)
    (tmp_path / "s").mkdir()
    for k in range(2):
        write_dicom(tmp_path / "s" / f"{k}.dcm", indices[k], position=(0, 0, k), palette=tables)
    volume, metadata = io.read_with_metadata(tmp_path / "s")
    assert np.array_equal(volume, shown) and metadata["channel_axis"] == -1


@pytest.mark.parametrize("syntax", [JPEGLosslessSV1, JPEGLSLossless, HTJ2KLossless])
def test_lossless_jpeg_jpeg_ls_and_htj2k_decode_without_extra_packages(tmp_path, image, syntax):
    """Through tinc's imagecodecs plugin: pydicom alone would need pylibjpeg-libjpeg or gdcm."""
    import imagecodecs

    frames = np.stack([image, 4000 - image])
    encode = {JPEGLosslessSV1: lambda f: imagecodecs.jpeg8_encode(f, lossless=True, bitspersample=12),
              JPEGLSLossless: lambda f: imagecodecs.jpegls_encode(f, level=0),
              HTJ2KLossless: lambda f: imagecodecs.htj2k_encode(f, level=0)}[syntax]
    path = write_dicom(tmp_path / "j.dcm", frames, syntax=syntax, encoded=[encode(f) for f in frames])
    array, _ = io.read_with_metadata(path)
    assert array.dtype == np.uint16 and np.array_equal(array, frames)


def pydicom_test_file(name: str) -> str:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom's test file {name} is not installed")
    return path


def test_jpeg_2000_that_pillow_refuses_is_decoded_by_imagecodecs():
    """Pillow fails on this valid YBR_RCT codestream ("broken data stream"); the plugin,
    tried after it, decodes it to RGB."""
    import imagecodecs
    import pydicom
    from pydicom.encaps import generate_frames

    path = pydicom_test_file("GDCMJ2K_TextGBR.dcm")
    frame = next(generate_frames(pydicom.dcmread(path).PixelData, number_of_frames=1))
    array, metadata = io.read_with_metadata(path)
    assert array.shape == (400, 400, 3) and metadata["channel_axis"] == -1
    assert np.array_equal(array, imagecodecs.jpeg2k_decode(frame))


def test_when_every_decoder_fails_each_reason_is_on_the_one_line():
    message = one_line_error(pydicom_test_file("JPEG2000-embedded-sequence-delimiter.dcm"), "cannot read as dicom")
    assert "pillow:" in message and "tinc-imagecodecs:" in message


def one_line_error(path, *needles):
    with pytest.raises(TincInputError) as error:
        io.read_with_metadata(path)
    message = str(error.value)
    assert "\n" not in message and all(n in message for n in needles), message
    return message


def test_two_series_in_one_directory_are_refused(tmp_path, image):
    write_dicom(tmp_path / "a.dcm", image, position=(0, 0, 0))
    write_dicom(tmp_path / "b.dcm", image, position=(0, 0, 1), series=SERIES + ".2")
    one_line_error(tmp_path, "2 DICOM series", SERIES + ".2")


def test_slices_of_different_shapes_are_refused(tmp_path, image):
    write_dicom(tmp_path / "a.dcm", image, position=(0, 0, 0))
    write_dicom(tmp_path / "b.dcm", image[:, :8], position=(0, 0, 1))
    one_line_error(tmp_path, "different shapes", "12x10", "12x8")


def test_slices_sharing_a_position_are_refused(tmp_path, image):
    write_dicom(tmp_path / "a.dcm", image, position=(0, 0, 0))
    write_dicom(tmp_path / "b.dcm", image, position=(0, 0, 0))
    one_line_error(tmp_path, "share a position")


def test_truncated_and_non_dicom_files_are_one_line_errors(tmp_path, image):
    data = write_dicom(tmp_path / "a.dcm", image).read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 100])
    one_line_error(tmp_path / "cut.dcm", "cut.dcm")
    (tmp_path / "text.dcm").write_text("hello")
    one_line_error(tmp_path / "text.dcm", "not a DICOM file")
    series = tmp_path / "series"  # in a series, the error names the file
    series.mkdir()
    write_dicom(series / "good.dcm", image, position=(0, 0, 0))
    (series / "cut.dcm").write_bytes(write_dicom(series / "cut.dcm", image, position=(0, 0, 1)).read_bytes()[:-100])
    one_line_error(series, "cut.dcm")


def test_a_cut_file_of_encapsulated_frames_is_named_truncated(tmp_path, image, recwarn):
    # pydicom drops a cut encapsulated element with a warning: the file would read as one without pixels
    data = write_dicom(tmp_path / "v.dcm", image, syntax=MPEG2MPML, encoded=[b"\x00\x00\x01\xb3" + bytes(60)]).read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:-20])
    one_line_error(tmp_path / "cut.dcm", "cut.dcm", "truncated")


def test_a_file_without_preamble_is_still_read(tmp_path, image):
    path = write_dicom(tmp_path / "old.dcm", image, preamble=False)
    assert path.read_bytes()[128:132] != b"DICM"
    assert np.array_equal(io.read_with_metadata(path)[0], image)


def test_file_meta_without_a_transfer_syntax_reads_in_the_dataset_s_encoding(tmp_path, image):
    import pydicom

    dataset = pydicom.dcmread(write_dicom(tmp_path / "full.dcm", image))
    del dataset.file_meta.TransferSyntaxUID
    path = tmp_path / "no-syntax.dcm"
    dataset.save_as(path, implicit_vr=False, little_endian=True, enforce_file_format=False)
    assert path.read_bytes()[128:132] == b"DICM"
    assert np.array_equal(io.read_with_metadata(path)[0], image)


def test_an_undecodable_transfer_syntax_is_named(tmp_path, image):
    path = write_dicom(tmp_path / "v.dcm", image, syntax=MPEG2MPML, encoded=[b"\x00\x00\x01\xb3" + bytes(60)])
    one_line_error(path, "MPEG2", MPEG2MPML)


def test_a_directory_without_dicom_files_is_still_a_directory(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    one_line_error(tmp_path, "is a directory")


def test_sample_names_of_missing_packages_and_files(monkeypatch):
    if _installed("data_store"):
        one_line_error("pydicom-data:no_such_file.dcm", "has no file")
    if _installed("nilearn"):
        one_line_error("nilearn:../__init__.py", "has no file")  # a plain file name only
    monkeypatch.setattr(io.importlib.util, "find_spec", lambda name: None)
    one_line_error("nilearn:anything.nii.gz", "nilearn is not installed", "tinc[corpus]")
    one_line_error("pydicom-data:anything.dcm", "pydicom-data is not installed", "tinc[corpus]")


def _installed(module):
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_pydicom_data_sample_by_name():
    pytest.importorskip("data_store")
    array, metadata = io.read_with_metadata("pydicom-data:MR2_UNCI.dcm")
    assert array.shape == (1024, 1024) and array.dtype == np.uint16
    assert metadata["spacing"] == pytest.approx((0.195313, 0.195313))


def test_nilearn_sample_by_name():
    pytest.importorskip("nilearn")
    array, metadata = io.read_with_metadata("nilearn:mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz")
    assert array.shape == (197, 233, 189) and array.dtype == np.uint8 and metadata["format"] == "nifti"


def test_spacing_survives_the_tinc_file_as_text():
    assert axes.spacing_of({"spacing": b"(2.5, 0.5, 0.25)"}) == (2.5, 0.5, 0.25)
    assert axes.spacing_of({"spacing": (1, 1e-3)}) == (1.0, 0.001)
    assert axes.spacing_of({"spacing": b"(0.0, 1.0)"}) is None and axes.spacing_of({}) is None
    assert axes.resampled_metadata({"spacing": b"(2.0, 1.0)"}, (10, 8), (20, 4))["spacing"] == (1.0, 2.0)


def test_cli_compresses_a_dcm_and_reads_it_back(tmp_path, capsys):
    import nibabel

    rng = np.random.default_rng(0)
    volume = (np.cumsum(rng.integers(0, 40, (6, 20, 24)), axis=2) + 500).astype(np.uint16)
    source = write_dicom(tmp_path / "v.dcm", volume, between=2.0)
    out = tmp_path / "v.tinc"
    assert main(["compress", str(source), "-o", str(out), "--steps", "20", "--ratio", "8", "--quiet"]) == 0
    assert 0 < out.stat().st_size <= volume.nbytes / 8
    capsys.readouterr()
    assert main(["eval", str(source), str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ratio"] == pytest.approx(volume.nbytes / out.stat().st_size) and np.isfinite(result["psnr"])
    # NIfTI output: an affine from the spacing, which follows --scale
    assert main(["decompress", str(out), "-o", str(tmp_path / "v.nii.gz"), "--quiet"]) == 0
    restored = nibabel.load(tmp_path / "v.nii.gz")
    assert restored.shape == volume.shape and restored.header.get_zooms() == pytest.approx((2.0, 0.5, 0.25))
    assert main(["decompress", str(out), "-o", str(tmp_path / "fine.nii.gz"), "--scale", "2", "--quiet"]) == 0
    assert nibabel.load(tmp_path / "fine.nii.gz").header.get_zooms() == pytest.approx((1.0, 0.25, 0.125))
    # DICOM is read, not written
    capsys.readouterr()
    assert main(["decompress", str(out), "-o", str(tmp_path / "out.dcm"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unsupported format" in err and "\n" not in err and not (tmp_path / "out.dcm").exists()
