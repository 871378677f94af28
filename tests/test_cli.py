import json
import os
import subprocess
import sys

import nibabel
import numpy as np
import pytest
import tifffile
from nibabel.testing import data_path

from tinc import io
from tinc.cli import build_parser, main, subcommand_parsers
from tinc.cli_options import ADVANCED_FLAGS, COMPRESS_FLAGS, CONFIG_FLAGS, compress_options
from tinc.config import TincConfig
import dataclasses

FAST = ["--steps", "30", "--batch", "8192", "--quiet"]


@pytest.fixture
def volume_tif(tmp_path, brain32):
    path = tmp_path / "vol.tif"
    tifffile.imwrite(path, brain32[:20, :24, :28])
    return path


def test_every_config_field_is_a_compress_flag():
    names = {f.name for f in dataclasses.fields(TincConfig)}
    assert names == set(CONFIG_FLAGS)
    help_text = subcommand_parsers(build_parser(show_advanced=True))["compress"].format_help()
    for name in names:
        assert "--" + name.replace("_", "-") in help_text


def test_compress_help_lists_what_a_user_decides_and_says_how_to_see_the_rest(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["compress", "--help"])
    assert exit_.value.code == 0
    short = capsys.readouterr().out
    for name in COMPRESS_FLAGS:
        assert "--" + name.replace("_", "-") in short
    for flag in ("--config", "--chunks", "--halo", "--scheduler", "--workers", "--help-advanced"):
        assert flag in short
    for name in ADVANCED_FLAGS:
        assert "--" + name.replace("_", "-") + " " not in short
    assert "`tinc compress --help-advanced` lists them" in " ".join(short.split())
    with pytest.raises(SystemExit) as exit_:
        main(["compress", "--help-advanced"])  # no input or output needed, as with --help
    assert exit_.value.code == 0
    full = capsys.readouterr().out
    for name in CONFIG_FLAGS:
        assert "--" + name.replace("_", "-") in full
    assert "advanced options:" in full and full.startswith("usage: tinc compress")


def test_advanced_flags_stay_accepted_without_being_listed():
    args = build_parser().parse_args(["compress", "in.tif", "-o", "out.tinc", "--levels", "2", "--w0", "20",
                                      "--loss-weight", "0:10:2", "--ratio", "32"])
    assert compress_options(args) == {"levels": 2, "w0": 20.0, "loss_weight": ((0.0, 10.0, 2.0),), "ratio": 32.0}


def test_the_compress_summary_takes_a_long_decodes_psnr_from_evenly_spaced_slices(brain32, monkeypatch):
    """The summary line's PSNR needs a decode: where that would take long (a 30 s fit of a
    57 M-voxel volume was followed by a 51 s decode), slices of the first spatial axis give it."""
    import tinc
    from tinc import cli, metrics

    data = tinc.compress(brain32, ratio=16, steps=20, quiet=True)
    restored = tinc.decompress(data)
    assert cli.summary_psnr(data, brain32, "cpu") == f"PSNR {metrics.psnr(brain32, restored):.2f} dB"
    monkeypatch.setattr(cli, "SUMMARY_DECODE_FLOPS", 0)
    monkeypatch.setattr(cli, "SUMMARY_SLICES", 4)
    picked = [0, 10, 21, 31]
    expected = metrics.psnr(brain32[picked], restored[picked], peak=metrics.peak_value(brain32))
    assert cli.summary_psnr(data, brain32, "cpu") == f"PSNR {expected:.2f} dB (over 4 evenly spaced of 32 slices)"
    channels = np.stack([brain32, brain32 // 2])  # channels first: slices of the next axis
    data = tinc.compress(channels, ratio=16, steps=20, channel_axis=0, quiet=True)
    restored = tinc.decompress(data)
    expected = metrics.psnr(channels[:, picked], restored[:, picked], peak=metrics.peak_value(channels))
    assert cli.summary_psnr(data, channels, "cpu") == f"PSNR {expected:.2f} dB (over 4 evenly spaced of 32 slices)"


def test_compress_decompress_info_eval(tmp_path, volume_tif, capsys):
    out = tmp_path / "vol.tinc"
    assert main(["compress", str(volume_tif), "-o", str(out), "--ratio", "16", "--level-weights", "1,1.5", *FAST]) == 0
    raw = 20 * 24 * 28 * 2
    assert 0.9 * raw / 16 <= out.stat().st_size <= raw / 16
    assert main(["decompress", str(out), "-o", str(tmp_path / "r.tif"), "--quiet"]) == 0
    recon = tifffile.imread(tmp_path / "r.tif")
    assert recon.shape == (20, 24, 28) and recon.dtype == np.uint16
    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["levels"] == 1 and info["nodes_per_level"] == [1, 8] and info["bytes"] == out.stat().st_size
    assert sum(info["section_bytes"].values()) == info["bytes"]
    assert info["level_weights"][1] == 1.0 and 0.4 < info["level_weights"][0] < 0.9  # asked for 1 : 1.5
    assert main(["info", str(out)]) == 0
    assert "share  weight" in capsys.readouterr().out
    # a reader that stops early (`tinc info F | head -1`): no traceback, SIGPIPE's exit status
    env = {**os.environ, "PYTHONUNBUFFERED": ""}  # block-buffered, as a pipe's stdout usually is
    reader = subprocess.Popen([sys.executable, "-m", "tinc.cli", "info", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    reader.stdout.close()
    assert reader.wait(timeout=120) == 141 and reader.stderr.read() == b""
    plot = tmp_path / "cmp.png"
    assert main(["eval", str(volume_tif), str(tmp_path / "r.tif"), "--tinc", str(out), "--threshold", "20000", "--json", "--plot", str(plot)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"psnr", "psnr_range", "ssim", "ratio", "accuracy", "max_error", "bound"}
    assert result["bound"] is None and result["max_error"] > 0
    assert result["ratio"] == pytest.approx(raw / out.stat().st_size)
    assert 0 < result["accuracy"]["20000.0"] <= 1
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the .tinc itself as the reconstruction: decoded in memory, the same figures, its own ratio
    assert main(["eval", str(volume_tif), str(out), "--threshold", "20000", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == result


def test_nifti_keeps_affine_and_header(tmp_path):
    source = os.path.join(data_path, "anatomical.nii")
    out = tmp_path / "a.tinc"
    assert main(["compress", source, "-o", str(out), "--ratio", "8", *FAST]) == 0
    assert main(["decompress", str(out), "-o", str(tmp_path / "a.nii.gz"), "--quiet"]) == 0
    original, restored = nibabel.load(source), nibabel.load(tmp_path / "a.nii.gz")
    assert np.allclose(original.affine, restored.affine)
    assert restored.shape == original.shape and restored.get_data_dtype() == original.get_data_dtype()
    assert np.allclose(original.header["pixdim"], restored.header["pixdim"])


def test_nifti_extensions_and_a_cifti_matrix_come_back(tmp_path, capsys):
    """A NIfTI header's extensions are kept: example4d's comments, and the CIFTI-2 extension
    that makes a NIfTI-2 file a grayordinate time series (without it, CIFTI readers refuse
    the file). A region's header keeps no extensions: they may describe the whole array."""
    from nibabel.cifti2 import cifti2_axes

    source = os.path.join(data_path, "example4d.nii.gz")
    assert main(["compress", source, "-o", str(tmp_path / "a.tinc"), "--ratio", "64", *FAST]) == 0
    assert main(["info", str(tmp_path / "a.tinc")]) == 0
    assert "input     nifti_extensions, nifti_header (restored on decompression)" in capsys.readouterr().out
    assert main(["decompress", str(tmp_path / "a.tinc"), "-o", str(tmp_path / "a.nii.gz"), "--quiet"]) == 0
    comments = [bytes(e.get_content()) for e in nibabel.load(tmp_path / "a.nii.gz").header.extensions]
    assert comments == [bytes(e.get_content()) for e in nibabel.load(source).header.extensions] and len(comments) == 2

    mask = np.zeros((12, 10, 8), dtype=bool)
    mask[2:10, 2:8, 1:7] = True
    brain = cifti2_axes.BrainModelAxis.from_mask(mask, name="thalamus_left", affine=np.diag([2.0, 2.0, 2.0, 1.0]))
    series = cifti2_axes.SeriesAxis(start=0, step=0.72, size=60)
    data = (100 * np.sin(np.arange(60)[:, None] / 7 + np.arange(len(brain))[None, :] / 40)).astype(np.float32)
    nibabel.Cifti2Image(data, header=(series, brain)).to_filename(tmp_path / "run.dtseries.nii")
    assert main(["compress", str(tmp_path / "run.dtseries.nii"), "-o", str(tmp_path / "run.tinc"), "--ratio", "8", *FAST]) == 0
    assert main(["decompress", str(tmp_path / "run.tinc"), "-o", str(tmp_path / "back.dtseries.nii"), "--quiet"]) == 0
    back = nibabel.load(tmp_path / "back.dtseries.nii")
    assert isinstance(back, nibabel.Cifti2Image) and back.shape == data.shape
    assert back.header.get_axis(0) == series and back.header.get_axis(1) == brain
    assert main(["decompress", str(tmp_path / "run.tinc"), "-o", str(tmp_path / "part.nii"), "--roi", "0:30,:", "--quiet"]) == 0
    part = nibabel.load(tmp_path / "part.nii")
    assert not isinstance(part, nibabel.Cifti2Image) and not part.header.extensions and part.shape == (30, data.shape[1])


@pytest.mark.parametrize("name", ["example_nifti2.nii.gz", "example4d+orig.HEAD", "phantom_EPI_asc_CLEAR_2_1.PAR", "minc1_4d.mnc",
                                  "minc2_4d.mnc"])
def test_nibabel_volumes_come_back_as_nifti_in_their_place(tmp_path, name):
    # NIfTI-2 stays NIfTI-2; AFNI, PAR/REC and MINC come back as NIfTI-1 with their affine
    source = os.path.join(data_path, name)
    out = tmp_path / "a.tinc"
    assert main(["compress", source, "-o", str(out), "--ratio", "8", *FAST]) == 0
    assert main(["decompress", str(out), "-o", str(tmp_path / "a.nii.gz"), "--quiet"]) == 0
    original, restored = nibabel.load(source), nibabel.load(tmp_path / "a.nii.gz")
    assert np.allclose(original.affine, restored.affine) and restored.shape == original.shape
    assert isinstance(restored, nibabel.Nifti2Image) == isinstance(original, nibabel.Nifti2Image)
    # PAR/REC and MINC store scaled integers: their physical values are what is compressed
    assert (restored.get_data_dtype() == np.float32) == name.endswith((".PAR", ".mnc"))


def test_an_ecat_pet_volume_comes_back_as_nifti_with_its_affine(tmp_path):
    # ECAT 7 (`.v`): scaled integers per frame, read as their physical values
    source = os.path.join(data_path, "tinypet.v")
    out = tmp_path / "pet.tinc"
    assert main(["compress", source, "-o", str(out), "--ratio", "4", *FAST]) == 0
    assert main(["decompress", str(out), "-o", str(tmp_path / "pet.nii.gz"), "--quiet"]) == 0
    original, restored = nibabel.ecat.load(source), nibabel.load(tmp_path / "pet.nii.gz")
    assert np.allclose(original.affine, restored.affine) and restored.shape == original.shape
    assert restored.get_data_dtype() == np.float32
    # the physical values (about 1e9 to 2.5e11 here), not the stored int16s
    assert 0.5 < np.mean(np.asarray(restored.dataobj)) / np.mean(np.asarray(original.dataobj)) < 2


def test_mgz_is_read_as_its_values(tmp_path):
    values = np.arange(24 * 20 * 16, dtype=np.float32).reshape(24, 20, 16)
    affine = np.diag([2.0, 1.5, 3.0, 1.0])
    nibabel.save(nibabel.MGHImage(values, affine), tmp_path / "v.mgz")
    array, metadata = io.read_with_metadata(tmp_path / "v.mgz")
    # as stored, in the file's byte order (MGH is big-endian), as NIfTI inputs are
    assert array.dtype == np.dtype(">f4") and np.array_equal(array, values)
    assert io.read_with_metadata(os.path.join(data_path, "anatomical.nii"))[0].dtype == np.dtype(">i2")
    io.write(tmp_path / "v.nii.gz", array, metadata)
    assert np.allclose(nibabel.load(tmp_path / "v.nii.gz").affine, affine)


def test_a_nifti_integer_rescale_keeps_integers_a_fractional_one_gives_float32(tmp_path):
    # a CT converted with its intercept in scl_inter: Hounsfield units, int16 as stored
    stored = (np.arange(24 * 20 * 16).reshape(24, 20, 16) % 4000).astype(np.int16)
    for slope, inter, dtype in ((1, -1024, np.int16), (2, 0, np.int16), (0.5, -1024, np.float32)):
        image = nibabel.Nifti1Image(stored, np.eye(4))
        image.header.set_slope_inter(slope, inter)
        nibabel.save(image, tmp_path / "ct.nii.gz")
        array, metadata = io.read_with_metadata(tmp_path / "ct.nii.gz")
        assert array.dtype == dtype and np.array_equal(array, stored * np.float64(slope) + inter)
        io.write(tmp_path / "back.nii.gz", array, metadata)  # the values, not rescaled twice
        assert np.array_equal(np.asarray(nibabel.load(tmp_path / "back.nii.gz").dataobj), array)


@pytest.mark.parametrize("header, data", [("v.hdr", "v.img"), (os.path.join(data_path, "phantom_EPI_asc_CLEAR_2_1.PAR"),
                                                               os.path.join(data_path, "phantom_EPI_asc_CLEAR_2_1.REC")),
                                          (os.path.join(data_path, "example4d+orig.HEAD"), os.path.join(data_path, "example4d+orig.BRIK.gz"))])
def test_a_header_and_data_pair_reads_alike_from_either_file(tmp_path, header, data):
    # users name the data file of a pair as often as its header
    values = np.arange(24 * 20 * 16, dtype=np.int16).reshape(24, 20, 16)
    nibabel.save(nibabel.AnalyzeImage(values, np.diag([2.0, 1.5, 3.0, 1.0])), tmp_path / "v.img")
    from_header = io.read_with_metadata(tmp_path / header)
    from_data = io.read_with_metadata(tmp_path / data)
    assert np.array_equal(from_header[0], from_data[0]) and from_header[1] == from_data[1]
    if header == "v.hdr":
        assert np.array_equal(from_data[0], values)


def test_a_reader_missing_a_package_names_it(tmp_path, monkeypatch, capsys):
    def needs_h5py(path):
        raise ModuleNotFoundError("No module named 'h5py'", name="h5py")

    monkeypatch.setitem(io._READERS, "minc", needs_h5py)
    (tmp_path / "v.mnc").write_bytes(b"\x89HDF")
    assert main(["compress", str(tmp_path / "v.mnc"), "-o", str(tmp_path / "v.tinc")]) != 0
    assert "needs h5py (pip install h5py)" in capsys.readouterr().err and not (tmp_path / "v.tinc").exists()


def test_png_round_trip(tmp_path):
    import imagecodecs
    import skimage.data

    source = tmp_path / "cell.png"
    source.write_bytes(imagecodecs.png_encode(skimage.data.cell()[:96, :80]))
    assert main(["compress", str(source), "-o", str(tmp_path / "c.tinc"), "--ratio", "6", *FAST]) == 0
    assert main(["decompress", str(tmp_path / "c.tinc"), "-o", str(tmp_path / "c.png"), "--quiet"]) == 0
    assert imagecodecs.png_decode((tmp_path / "c.png").read_bytes()).shape == (96, 80)


def listing(directory):
    return sorted(os.listdir(directory))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["compress", "{d}/missing.tif", "-o", "{d}/x.tinc"], "no such file"),
        (["compress", "{d}/data.xyz", "-o", "{d}/x.tinc"], "unsupported format"),
        (["compress", "{d}/nan.npy", "-o", "{d}/x.tinc"], "NaN"),
        (["compress", "{d}/vol.tif", "-o", "{d}/x.tinc", "--ratio", "100000"], "ratio"),
        (["decompress", "{d}/broken.tinc", "-o", "{d}/x.npy"], "checksum"),
        (["decompress", "{d}/vol.tif", "-o", "{d}/x.npy"], "not a .tinc file"),
        (["decompress", "{d}/good.tinc", "-o", "{d}/x.png"], "PNG holds 2-D"),
        (["decompress", "{d}/good.tinc", "-o", "{d}/nodir/x.npy"], "does not exist"),
        (["info", "{d}/truncated.tinc"], "truncated"),
        (["eval", "{d}/vol.tif", "{d}/truncated.tinc"], "truncated"),
        (["eval", "{d}/vol.tif", "{d}/missing.tinc"], "no such file"),
        (["compress", "{d}/vol.tif", "-o", "{d}/nodir/x.tinc"], "does not exist"),
        (["decompress", "{d}/good.tinc", "-o", "{d}/x.jpg"], "unsupported format"),
    ],
)
def test_bad_input_gives_one_line_error_nonzero_exit_and_no_output(tmp_path, volume_tif, argv, message, capsys):
    d = str(tmp_path)
    (tmp_path / "data.xyz").write_bytes(b"123")
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan], [2.0, 3.0]], np.float32))
    assert main(["compress", str(volume_tif), "-o", d + "/good.tinc", "--ratio", "16", *FAST]) == 0
    good = (tmp_path / "good.tinc").read_bytes()
    (tmp_path / "broken.tinc").write_bytes(good[:40] + bytes([good[40] ^ 1]) + good[41:])
    (tmp_path / "truncated.tinc").write_bytes(good[: len(good) // 2])
    before = listing(tmp_path)
    capsys.readouterr()
    code = main([a.format(d=d) for a in argv] + (["--quiet"] if argv[0] == "compress" else []))
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.startswith("tinc: error:") and message in err and "\n" not in err
    assert listing(tmp_path) == before  # nothing written, no temporary left behind


def test_a_png_that_cannot_hold_the_array_is_refused_before_decoding(tmp_path, volume_tif, monkeypatch, capsys):
    from tinc.decoder import Decoder

    assert main(["compress", str(volume_tif), "-o", str(tmp_path / "v.tinc"), "--ratio", "16", "--quiet", *FAST]) == 0

    def decoding(*args, **kwargs):
        raise AssertionError("decoded before the output was checked")

    monkeypatch.setattr(Decoder, "decode", decoding)
    monkeypatch.setattr(Decoder, "decode_into", decoding)
    capsys.readouterr()
    assert main(["decompress", str(tmp_path / "v.tinc"), "-o", str(tmp_path / "v.png")]) != 0
    assert "PNG holds 2-D" in capsys.readouterr().err and not (tmp_path / "v.png").exists()


def test_interrupt_leaves_no_partial_file(tmp_path, volume_tif, monkeypatch, capsys):
    import tinc.codec

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tinc.codec.TincCodec, "encode", interrupted)
    before = listing(tmp_path)
    assert main(["compress", str(volume_tif), "-o", str(tmp_path / "x.tinc"), *FAST]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert listing(tmp_path) == before


def test_sigterm_exits_143_and_leaves_nothing(tmp_path, volume_tif):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "x.tinc"
    process = subprocess.Popen(
        [sys.executable, "-m", "tinc.cli", "compress", str(volume_tif), "-o", str(out), "--steps", "1000000"],
        stderr=subprocess.PIPE, text=True,
    )
    seen, deadline = "", time.monotonic() + 120
    while "fitting" not in seen and time.monotonic() < deadline:  # the progress bar: training has begun
        seen += process.stderr.read(1)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143
    assert err.strip().splitlines()[-1].split("\r")[-1].strip() == "tinc: terminated; no output written"
    assert listing(tmp_path) == ["vol.tif"]


def test_layers_flag_takes_auto_or_numbers(tmp_path, volume_tif, capsys):
    out = tmp_path / "vol.tinc"
    # auto: 4 layers where they are at least 12 wide (at 32x), else 2 (at 64x, 4 would be 11)
    for flag, ratio, expected in (("auto", "32", [4]), ("auto", "64", [2]), ("3", "64", [3])):
        assert main(["compress", str(volume_tif), "-o", str(out), "--ratio", ratio, "--levels", "0", "--layers", flag, *FAST]) == 0
        capsys.readouterr()
        assert main(["info", str(out), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["layers_per_level"] == expected


def test_level_weights_by_similarity_are_reported_and_stored_as_widths(tmp_path, volume_tif, capsys):
    out = tmp_path / "auto.tinc"
    fast = [flag for flag in FAST if flag != "--quiet"]
    assert main(["compress", str(volume_tif), "-o", str(out), "--ratio", "16", "--levels", "1", "--level-weights", "auto", *fast]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if "levels by similarity" in l)
    parts = [float(p) for p in line.split("variance parts ")[1].split("%")[0].split("/")]
    shares = [float(p) for p in line.split("parameter shares ")[1].split("%")[0].split("/")]
    assert len(parts) == len(shares) == 2 and abs(sum(parts) - 100) <= 1
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    stored = [round(100 * p / info["parameters"]) for p in info["parameters_per_level"]]
    assert stored == pytest.approx(shares, abs=1)


def test_info_on_a_directory_that_is_no_store_says_so(tmp_path, capsys):
    assert main(["info", str(tmp_path)]) == 2
    assert "is a directory, not a .tinc file" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "missing.zarr")]) == 2
    assert "no such Zarr directory" in capsys.readouterr().err
