"""Chunked compression on a Dask LocalCluster: a 256^3 Zarr volume in 64^3 chunks, resumed
after a kill, read back through plain Zarr, decoded to OME-Zarr and TIFF."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

import tinc
from tinc import chunked, container, metrics
from tinc.boxes import chunk_boxes
from tinc.chunk_budget import absolute_error_options, measure_chunk
from tinc.cli import main
from tinc.errors import TincConfigError
from tinc.ome_zarr import pyramid_shapes
from tinc.volume import Volume, read_with_halo
from tinc.zarr_store import TEMPORARY_PREFIX, describe_store, store_bytes

# 20 steps so that 64 chunks take seconds; fidelity is not what these tests are about
FLAGS = dict(ratio=32, steps=20, batch=2048, seed=1)
CLI_FLAGS = ["--ratio", "32", "--steps", "20", "--batch", "2048", "--seed", "1"]
WORKER_MEMORY_BOUND = 1 << 30  # bytes; torch alone takes about 400 MiB of a worker


@pytest.fixture(scope="module")
def volume(brain64, tmp_path_factory) -> tuple[str, np.ndarray]:
    """256^3 uint16: the brain crop tiled 4x4x4, stored in 64^3 Zarr chunks."""
    data = np.tile(brain64, (4, 4, 4))
    path = str(tmp_path_factory.mktemp("chunked") / "big.zarr")
    zarr.create_array(path, shape=data.shape, chunks=(64, 64, 64), dtype=data.dtype)[:] = data
    return path, data


@contextlib.contextmanager
def local_cluster():
    """2 worker processes of one thread, started as docs/zarr.md asks of a cluster given to
    `--scheduler` (without Dask's MALLOC_TRIM_THRESHOLD_, which its nanny would also leave
    in this process's environment for every later cluster to inherit)."""
    import dask
    from distributed import LocalCluster

    with dask.config.set({chunked.GLIBC_TRIM: None}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def scheduler() -> str:
    """A 2-worker LocalCluster shared by this module's tests, reached by its address as
    `--scheduler` reaches any dask.distributed cluster (one start-up instead of many)."""
    with local_cluster() as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def compressed(volume, scheduler, tmp_path_factory) -> tuple[str, chunked.CompressSummary]:
    """The volume compressed without interruption by the 2-worker LocalCluster."""
    source, _ = volume
    output = str(tmp_path_factory.mktemp("chunked") / "out.zarr")
    summary = chunked.compress(source, output, chunks=64, scheduler=scheduler, quiet=True, **FLAGS)
    return output, summary


def test_two_workers_compress_256_cubed_in_bounded_memory(volume, compressed):
    _, data = volume
    output, summary = compressed
    assert len(summary.results) == 64 and not any(r.resumed for r in summary.results)
    # 4 sample chunks first, the 60 others from their mean weights; nothing of them left in the store
    assert sum(r.learned_start for r in summary.results) == 60
    assert not os.path.exists(os.path.join(output, chunked.START_FOLDER))
    assert summary.ratio >= 32
    assert len(summary.worker_peak_rss) == 2
    print("peak RSS per worker (MiB):", sorted(v >> 20 for v in summary.worker_peak_rss.values()))
    assert max(summary.worker_peak_rss.values()) < WORKER_MEMORY_BOUND
    restored = zarr.open(output, mode="r")[:]  # plain Zarr; the codec comes from the entry point
    assert restored.shape == data.shape and restored.dtype == data.dtype
    assert metrics.psnr(data, restored) == pytest.approx(summary.psnr, abs=1e-6)
    assert summary.psnr > 35
    attributes = zarr.open(output, mode="r").attrs["tinc"]
    assert attributes["complete"] is True and len(attributes["chunk_psnr"]) == 64
    worst = summary.worst(1)[0]
    box = tuple(slice(i * 64, i * 64 + 64) for i in worst.index)
    assert metrics.psnr(data[box], restored[box]) == pytest.approx(worst.psnr, abs=1e-6)
    assert min(attributes["chunk_psnr"].values()) == pytest.approx(worst.psnr)


def test_killed_run_resumes_to_the_same_array(volume, compressed, tmp_path, capsys):
    source, _ = volume
    reference, _ = compressed
    output = tmp_path / "resumed.zarr"
    command = [sys.executable, "-m", "tinc.cli", "compress", source, "-o", str(output), "--chunks", "64",
               "--workers", "2", "--quiet", *CLI_FLAGS]
    run = subprocess.Popen(command, start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _chunk_files(output) < 12 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)  # the CLI and its Dask workers, mid-run
    run.wait()
    written = _chunk_files(output)
    assert 12 <= written < 64, "the run was not killed midway"

    assert len(list((output / chunked.START_FOLDER).glob("*.npz"))) == 4  # the samples' weights, for the resumed run
    assert main(["decompress", str(output), "-o", str(tmp_path / "early.tif")]) == 2  # incomplete: refused
    assert not (tmp_path / "early.tif").exists()
    assert main(["info", str(output), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert not info["complete"] and info["chunks_written"] == written and info["chunk_count"] == 64

    finished = subprocess.run([c for c in command if c != "--quiet"], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    kept = int(re.search(r"\((\d+) kept from an earlier run", finished.stdout).group(1))
    assert kept >= written - 2  # a chunk being renamed at the kill may be refitted, none lost
    assert not list(output.rglob(TEMPORARY_PREFIX + "*")) and not (output / chunked.START_FOLDER).exists()
    differing = [str(c.relative_to(reference)) for c in Path(reference).rglob("c/*/*/*")
                 if (output / c.relative_to(reference)).read_bytes() != c.read_bytes()]
    assert not differing, differing
    assert np.array_equal(zarr.open(str(output), mode="r")[:], zarr.open(reference, mode="r")[:])


def test_a_worker_killed_mid_chunk_is_replaced_and_the_run_finishes_the_same(volume, compressed, tmp_path):
    """Dask reschedules the chunk of a worker that dies (its nanny starts a new one); the
    chunk is written atomically, so the killed attempt leaves nothing behind."""
    import threading

    from distributed import Client

    source, _ = volume
    reference, _ = compressed
    output = tmp_path / "survived.zarr"
    with local_cluster() as cluster, Client(cluster) as client:
        finished, failed = [], []

        def run():
            try:
                finished.append(chunked.compress(source, str(output), chunks=64, scheduler=cluster.scheduler_address,
                                                 quiet=True, **FLAGS))
            except BaseException as error:  # reported by the assertion below
                failed.append(error)

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 120
        while _chunk_files(output) < 8 and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        busy = [worker for worker, tasks in client.processing().items() if tasks]
        assert busy, "no chunk was being fitted"
        pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
        os.kill(pid, signal.SIGKILL)  # the worker dies in the middle of its chunk
        thread.join(timeout=300)
    assert not failed, failed
    assert finished and _chunk_files(output) == 64
    assert not list(output.rglob(TEMPORARY_PREFIX + "*")) and not (output / chunked.START_FOLDER).exists()
    differing = [str(c.relative_to(reference)) for c in Path(reference).rglob("c/*/*/*")
                 if (output / c.relative_to(reference)).read_bytes() != c.read_bytes()]
    assert not differing, differing


def _chunk_files(store: Path) -> int:
    return sum(1 for p in store.rglob("c/*/*/*") if not p.name.startswith(TEMPORARY_PREFIX))


def test_decompress_to_ome_zarr_and_tiff(compressed, scheduler, tmp_path):
    output, _ = compressed
    expected = zarr.open(output, mode="r")[:]
    recon = tmp_path / "recon.zarr"
    assert main(["decompress", output, "-o", str(recon), "--scheduler", scheduler, "--quiet"]) == 0
    group = zarr.open_group(str(recon), mode="r")
    multiscales = group.attrs["ome"]["multiscales"][0]
    assert [d["path"] for d in multiscales["datasets"]] == ["0", "1", "2"]
    assert [a["name"] for a in multiscales["axes"]] == ["z", "y", "x"]
    assert multiscales["datasets"][2]["coordinateTransformations"][0]["scale"] == [4.0, 4.0, 4.0]
    level0, level1 = group["0"][:], group["1"][:]
    assert np.array_equal(level0, expected)
    means = expected.astype(np.float64).reshape(128, 2, 128, 2, 128, 2).mean(axis=(1, 3, 5))
    assert np.array_equal(level1, np.rint(means).astype(expected.dtype))
    assert group["2"].shape == (64, 64, 64)
    assert main(["decompress", output, "-o", str(recon), "--quiet"]) == 2  # exists: not overwritten

    tiff = tmp_path / "recon.tif"
    assert main(["decompress", output, "-o", str(tiff), "--scheduler", scheduler, "--quiet"]) == 0
    assert np.array_equal(tifffile.imread(tiff), expected)


def test_edge_chunks_repeat_the_edge_and_tiff_input(scheduler, tmp_path):
    """A TIFF input whose shape is no multiple of the chunks: edge chunks fit as well as others."""
    z, y, x = np.meshgrid(np.arange(40), np.arange(50), np.arange(36), indexing="ij")
    data = (3000 + 1000 * np.sin(z / 6) * np.cos(y / 8) + 20 * x).astype(np.uint16)
    source = tmp_path / "odd.tif"
    tifffile.imwrite(source, data)
    summary = chunked.compress(str(source), str(tmp_path / "odd.zarr"), chunks=32, scheduler=scheduler, quiet=True, **FLAGS)
    restored = zarr.open(str(tmp_path / "odd.zarr"), mode="r")[:]
    assert np.array_equal(restored[:32, :32, :32], tinc.decompress(
        (tmp_path / "odd.zarr" / "c" / "0" / "0" / "0").read_bytes())[4:36, 4:36, 4:36])  # halo 4, cropped
    psnrs = {r.index: r.psnr for r in summary.results}
    assert min(psnrs.values()) > max(psnrs.values()) - 10
    assert metrics.psnr(data, restored) > 35
    # the whole store, metadata included, is what --ratio asks for: edge chunks are budgeted
    # on their voxels inside the array (8 x 18 x 4 here), not as whole 32^3 chunks
    store = sum(path.stat().st_size for path in (tmp_path / "odd.zarr").rglob("*") if path.is_file())
    assert summary.nbytes == store
    assert 0.95 * data.nbytes / FLAGS["ratio"] <= store <= data.nbytes / FLAGS["ratio"]
    sliver = next(r for r in summary.results if r.index == (1, 1, 1))
    assert sliver.nbytes < summary.results[0].nbytes / 4


def test_a_colour_tiffs_samples_are_every_chunks_channels(scheduler, tmp_path):
    """As `tinc compress` reads a colour TIFF into one file; without a halo along them."""
    y, x = np.meshgrid(np.arange(192), np.arange(160), indexing="ij")
    rgb = np.stack([100 + 80 * np.sin(y / 15 + k) * np.cos(x / 20) for k in range(3)], axis=-1).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    options = {**FLAGS, "ratio": 8}
    summary = chunked.compress(str(tmp_path / "rgb.tif"), str(tmp_path / "rgb.zarr"), chunks=96, scheduler=scheduler,
                               quiet=True, **options)
    assert summary.chunks == (96, 96, 3) and len(summary.results) == 4
    stored = zarr.open(str(tmp_path / "rgb.zarr"), mode="r")
    config = stored.metadata.codecs[0].to_dict()["configuration"]
    assert config["channel_axis"] == -1 and config["halo"] == [4, 4, 0]
    first = (tmp_path / "rgb.zarr" / "c" / "0" / "0" / "0").read_bytes()
    header = container.unpack(first).header
    assert header.channel_axis == -1 and header.shape == [104, 104, 3] and all(len(s) == 2 for s in header.splits)
    assert stored[:].shape == rgb.shape
    assert np.array_equal(stored[:96, :96], tinc.decompress(first)[4:100, 4:100])  # the halo cropped, every channel kept
    with pytest.raises(TincConfigError, match="channel_axis 3 is not an axis"):
        chunked.compress(str(tmp_path / "rgb.tif"), str(tmp_path / "bad.zarr"), chunks=96, channel_axis=3, **options)
    assert not (tmp_path / "bad.zarr").exists()


def test_a_format_read_only_whole_is_staged_for_the_workers_and_removed(scheduler, tmp_path, capsys):
    """A PNG (or NIfTI, DICOM, ...) has no region reads: it is read once, staged as a .npy
    beside the output for the workers, and the staged file is gone afterwards, whether the
    run succeeds or is refused; its colour samples are the chunks' channels."""
    import imagecodecs

    y, x = np.meshgrid(np.arange(96), np.arange(80), indexing="ij")
    rgb = np.stack([100 + 80 * np.sin(y / 15 + k) * np.cos(x / 20) for k in range(3)], axis=-1).astype(np.uint8)
    source = tmp_path / ("a folder whose long name makes the input's name longer than the staged file's" * 2) / "rgb.png"
    source.parent.mkdir()
    source.write_bytes(imagecodecs.png_encode(rgb))
    output = tmp_path / "out" / "rgb.zarr"
    output.parent.mkdir()
    summary = chunked.compress(str(source), str(output), chunks=48, scheduler=scheduler, **{**FLAGS, "ratio": 8})
    assert "is read whole and staged as" in capsys.readouterr().err
    assert summary.source == str(source) and summary.chunks == (48, 48, 3) and len(summary.results) == 4
    # the store's attributes name the input as given: their bytes were budgeted with that name
    assert zarr.open(str(output), mode="r").attrs["tinc"]["source"] == str(source)
    assert store_bytes(str(output)) <= rgb.nbytes / 8
    assert zarr.open(str(output), mode="r").metadata.codecs[0].to_dict()["configuration"]["channel_axis"] == -1
    assert sorted(p.name for p in output.parent.iterdir()) == ["rgb.zarr"]  # the staged input removed
    with pytest.raises(TincConfigError, match="channel_axis 3 is not an axis"):
        chunked.compress(str(source), str(output.parent / "bad.zarr"), chunks=48, channel_axis=3, quiet=True, **FLAGS)
    assert sorted(p.name for p in output.parent.iterdir()) == ["rgb.zarr"]


def test_a_nifti_inputs_header_survives_chunked_compression(scheduler, tmp_path, capsys):
    """The store keeps the input's NIfTI header (its bytes budgeted): decompressed to NIfTI
    it is the input's affine again, and to OME-Zarr its voxel sizes are the scale."""
    import nibabel

    z, y, x = np.meshgrid(np.arange(40), np.arange(36), np.arange(20), indexing="ij")
    data = (500 + 300 * np.sin(z / 7) * np.cos(y / 5) + 4 * x).astype(np.int16)
    angle = 0.3
    affine = np.array([[1.5 * np.cos(angle), -2 * np.sin(angle), 0, -30], [1.5 * np.sin(angle), 2 * np.cos(angle), 0, 12],
                       [0, 0, 2.5, 7], [0, 0, 0, 1]])
    nibabel.save(nibabel.Nifti1Image(data, affine), tmp_path / "scan.nii.gz")
    store = tmp_path / "scan.zarr"
    assert main(["compress", str(tmp_path / "scan.nii.gz"), "-o", str(store), "--chunks", "20", "--scheduler", scheduler,
                 *CLI_FLAGS, "--ratio", "8", "--quiet"]) == 0
    assert store_bytes(str(store)) <= data.nbytes / 8
    assert sorted(tinc.open(str(store)).metadata) == ["nifti_header"]
    assert main(["info", str(store)]) == 0
    assert "input     nifti_header (restored on decompression)" in capsys.readouterr().out

    assert main(["decompress", str(store), "-o", str(tmp_path / "back.nii.gz"), "--scheduler", scheduler, "--quiet"]) == 0
    back = nibabel.load(tmp_path / "back.nii.gz")
    assert np.allclose(back.affine, affine) and back.get_data_dtype() == np.int16
    assert np.array_equal(np.asarray(back.dataobj), zarr.open(str(store), mode="r")[:])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back.nii.gz", "scan.nii.gz", "scan.zarr"]  # nothing staged left

    assert main(["decompress", str(store), "-o", str(tmp_path / "back.zarr"), "--scheduler", scheduler, "--quiet"]) == 0
    multiscales = zarr.open_group(str(tmp_path / "back.zarr"), mode="r").attrs["ome"]["multiscales"][0]
    # a NIfTI's axes are x, y, z: OME-Zarr stores them z, y, x
    assert [a["name"] for a in multiscales["axes"]] == ["z", "y", "x"]
    assert np.allclose(multiscales["datasets"][0]["coordinateTransformations"][0]["scale"], [2.5, 2, 1.5])

    zarr.open(str(store), mode="r+").update_attributes({"tinc": {**zarr.open(str(store)).attrs["tinc"], "input": "not base64!"}})
    assert main(["decompress", str(store), "-o", str(tmp_path / "again.nii.gz"), "--quiet"]) == 2
    assert "input metadata is unreadable" in capsys.readouterr().err and not (tmp_path / "again.nii.gz").exists()


def test_an_ome_zarr_inputs_axes_and_scale_survive_chunked_compression(scheduler, tmp_path):
    """A 4-D OME-Zarr input (t, z, y, x) decompresses to OME-Zarr with its level-0 scale, and
    to an OME-TIFF with its voxel sizes."""
    t, z, y, x = np.meshgrid(np.arange(2), np.arange(20), np.arange(24), np.arange(18), indexing="ij")
    data = (500 + 300 * np.sin(z / 7 + t) * np.cos(y / 5) + 4 * x).astype(np.uint16)
    group = zarr.open_group(str(tmp_path / "in.zarr"), mode="w")
    group.create_array("0", shape=data.shape, chunks=(1, 20, 12, 18), dtype=data.dtype)[:] = data
    axes = [{"name": "t", "type": "time"}] + [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 2.0, 0.5, 0.25]}]}]}]}
    chunked.compress(str(tmp_path / "in.zarr"), str(tmp_path / "c.zarr"), chunks=(1, 20, 12, 18), halo=0,
                     scheduler=scheduler, quiet=True, **{**FLAGS, "ratio": 8})
    assert describe_store(str(tmp_path / "c.zarr"))["input_metadata"] == ["spacing"]
    chunked.decompress(str(tmp_path / "c.zarr"), str(tmp_path / "out.zarr"), scheduler=scheduler, quiet=True)
    multiscales = zarr.open_group(str(tmp_path / "out.zarr"), mode="r").attrs["ome"]["multiscales"][0]
    assert [a["name"] for a in multiscales["axes"]] == ["t", "z", "y", "x"]
    assert multiscales["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 2.0, 0.5, 0.25]
    chunked.decompress(str(tmp_path / "c.zarr"), str(tmp_path / "out.tif"), scheduler=scheduler, quiet=True)  # an OME-TIFF
    assert tinc.io.read_with_metadata(str(tmp_path / "out.tif"))[1]["spacing"] == (2.0, 0.5, 0.25)


def test_read_with_halo_repeats_the_edge_outside_the_array(tmp_path):
    data = np.arange(5 * 6, dtype=np.int16).reshape(5, 6)
    np.save(tmp_path / "a.npy", data)
    volume = Volume(tmp_path / "a.npy")
    region = read_with_halo(volume, ((4, 8), (0, 4)), (1, 2))  # an edge box reaching past row 5
    assert region.shape == (6, 8)
    assert np.array_equal(region[1, 2:6], data[4, 0:4])
    assert np.array_equal(region[0, 2:6], data[3, 0:4])
    assert np.array_equal(region[2:, 2:6], np.repeat(data[4:5, 0:4], 4, axis=0))  # rows past the end repeat row 4
    assert np.array_equal(region[:, 0], region[:, 2])  # columns before 0 repeat column 0
    assert pyramid_shapes((256, 200, 100), (64, 64, 64)) == [(256, 200, 100), (128, 100, 50), (64, 50, 25)]


def test_chunked_cli_errors_are_one_line(volume, compressed, tmp_path, capsys):
    source, _ = volume
    output, _ = compressed
    cases = [
        (["compress", str(tmp_path / "missing.zarr"), "-o", str(tmp_path / "x.zarr")], "no such file"),
        (["compress", str(tmp_path / "a.xyz"), "-o", str(tmp_path / "x.zarr")], "unsupported format '.xyz'"),
        (["compress", source, "-o", output, "--chunks", "32", *CLI_FLAGS], "exists with other settings"),
        (["compress", source, "-o", str(tmp_path / "x.zarr"), "--chunks", "0"], "chunk sizes must be positive"),
        (["compress", source, "-o", str(tmp_path / "x.zarr"), "--checkpoint", str(tmp_path / "fit.ckpt")], "does not take --checkpoint"),
        (["compress", source, "-o", str(tmp_path / "x.zarr"), "--chunks", "8,8"], "has 2 entries"),
        (["compress", source, "-o", str(tmp_path / "x.tinc")], "chunked compression writes a .zarr directory"),
        (["compress", str(tmp_path / "a.tif"), "-o", str(tmp_path / "x.tinc"), "--workers", "2"], "--workers applies to chunked"),
        (["decompress", source, "-o", str(tmp_path / "y.tif")], "not compressed with the tinc codec"),
        (["decompress", output, "-o", str(tmp_path / "y.png")], "PNG holds 2-D uint8/uint16 images, not 3-D uint16"),
        (["decompress", output, "-o", str(tmp_path / "y.xyz")], "unsupported format '.xyz'"),
        (["decompress", output, "-o", str(tmp_path / "y.zarr"), "--roi", "0:1,:,:"], "--roi applies to a .tinc input"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("tinc: error:") and message in err and "\n" not in err, (argv, err)
    assert not (tmp_path / "x.zarr").exists() and not (tmp_path / "y.zarr").exists()


def test_nan_chunk_is_named_and_leaves_an_incomplete_store(scheduler, tmp_path, capsys):
    data = np.ones((16, 16, 32), dtype=np.float32)
    data[3, 4, 20] = np.nan
    np.save(tmp_path / "nan.npy", data)
    output = tmp_path / "nan.zarr"
    # 32 KiB at 32x: the store's metadata alone is larger than the 1 KiB asked for
    assert main(["compress", str(tmp_path / "nan.npy"), "-o", str(output), "--chunks", "16", "--scheduler", scheduler, *CLI_FLAGS]) == 2
    assert "too few for its metadata" in capsys.readouterr().err and not output.exists()
    assert main(["compress", str(tmp_path / "nan.npy"), "-o", str(output), "--chunks", "16", "--scheduler", scheduler,
                 *CLI_FLAGS, "--ratio", "4"]) == 2
    assert "chunk (0, 0, 1) (c/0/0/1): input contains 1 NaN" in capsys.readouterr().err
    assert zarr.open(str(output), mode="r").attrs["tinc"]["complete"] is False


def test_tinc_file_streams_into_ome_zarr(brain32, tmp_path):
    data = tinc.compress(brain32, ratio=16, levels=1, steps=30, batch=4096, quiet=True)
    (tmp_path / "b.tinc").write_bytes(data)
    assert main(["decompress", str(tmp_path / "b.tinc"), "-o", str(tmp_path / "b.zarr"), "--quiet"]) == 0
    group = zarr.open_group(str(tmp_path / "b.zarr"), mode="r")
    assert np.array_equal(group["0"][:], tinc.decompress(data))
    assert group["0"].chunks == (32, 32, 32)
    assert main(["decompress", str(tmp_path / "b.tinc"), "-o", str(tmp_path / "roi.zarr"), "--roi", "4:20,:,8:30", "--quiet"]) == 0
    assert np.array_equal(zarr.open_group(str(tmp_path / "roi.zarr"), mode="r")["0"][:], tinc.decompress(data)[4:20, :, 8:30])


def test_interrupted_chunked_run_says_the_store_is_kept_for_resuming(tmp_path, monkeypatch, capsys):
    source, output = tmp_path / "in.npy", tmp_path / "out.zarr"
    np.save(source, np.zeros((8, 8, 8), np.uint16))

    def interrupted(path, out, **kwargs):
        os.mkdir(out)  # some chunks were written when Ctrl-C came
        raise KeyboardInterrupt

    monkeypatch.setattr(chunked, "compress", interrupted)
    assert main(["compress", str(source), "-o", str(output), *CLI_FLAGS]) == 130
    assert capsys.readouterr().err.strip() == f"tinc: interrupted; the chunks written so far are kept; rerun the same command to finish {output}"


def test_constant_chunks_are_not_fitted_and_leave_their_bytes_to_the_others(scheduler, tmp_path, capsys):
    z, y, x = np.meshgrid(np.arange(64), np.arange(64), np.arange(64), indexing="ij")
    data = (3000 + 1000 * np.sin(z / 6) * np.cos(y / 8) + 20 * x).astype(np.uint16)
    data[:, :, :32] = 7  # half the chunks are constant, their halos not
    source = tmp_path / "half.npy"
    np.save(source, data)
    summary = chunked.compress(str(source), str(tmp_path / "half.zarr"), chunks=32, scheduler=scheduler, quiet=True, **FLAGS)
    restored = zarr.open(str(tmp_path / "half.zarr"), mode="r")[:]
    assert np.array_equal(restored[:, :, :32], data[:, :, :32])
    store = sum(path.stat().st_size for path in (tmp_path / "half.zarr").rglob("*") if path.is_file())
    assert 0.99 * data.nbytes / FLAGS["ratio"] <= store <= data.nbytes / FLAGS["ratio"]
    info = describe_store(str(tmp_path / "half.zarr"))
    assert info["trees"]["constant"] == 4 and sum(info["trees"].values()) == info["chunk_count"] == 8
    assert info["complete"] and info["bytes"] == store == summary.nbytes
    assert info["options"] == FLAGS  # what differs from tinc's defaults
    capsys.readouterr()
    assert main(["eval", str(source), str(tmp_path / "half.zarr"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ratio"] == data.nbytes / store


def test_a_64_bit_tiff_with_a_constant_chunk_beyond_2_to_the_53(scheduler, tmp_path):
    # tifffile reads int64 as numpy's C long long, which Zarr did not take; and such a chunk's
    # range needs a header of doubles, which the floor of a chunk's budget had to allow for
    data = np.random.default_rng(0).integers(0, 1000, (32, 32, 64)).astype(np.int64)
    data[:, :, 32:] = 2**60
    source = tmp_path / "wide.tif"
    tifffile.imwrite(source, data)
    assert tifffile.imread(source).dtype.char == "q"
    chunked.compress(str(source), str(tmp_path / "wide.zarr"), chunks=32, scheduler=scheduler, quiet=True, **FLAGS)
    restored = zarr.open(str(tmp_path / "wide.zarr"), mode="r")[:]
    assert restored.dtype == np.int64 and np.array_equal(restored[:, :, 32:], data[:, :, 32:])
    store = sum(path.stat().st_size for path in (tmp_path / "wide.zarr").rglob("*") if path.is_file())
    assert store <= data.nbytes / FLAGS["ratio"]


def test_sample_chunks_come_from_every_group_of_one_shape_and_ratio_spread_over_it():
    shape, chunks = (100, 64, 64), (8, 32, 32)
    boxes = [box for _, box in chunked.chunk_boxes(shape, chunks)]  # 13 x 2 x 2: the last slab (4 x 32 x 32) is an edge
    ratios = [32.0] * len(boxes)
    ratios[1] = 40.0  # a group of one: no sample
    full = [i for i in range(48) if i != 1]
    # up to 2 per group, one per 4 chunks: spread over the 47 full chunks of ratio 32, and 1 of the 4 edge chunks
    assert chunked.sample_chunks(shape, boxes, ratios, 2) == [full[0], full[-1], 48]
    assert chunked.sample_chunks(shape, boxes, ratios, 1) == [0, 48]
    assert len(chunked.sample_chunks(shape, boxes, ratios, 24)) == 47 // 4 + 1
    assert chunked.sample_chunks(shape, boxes, ratios, 0) == []


def test_start_samples_must_be_a_count(volume, tmp_path):
    source, _ = volume
    with pytest.raises(tinc.TincConfigError, match="start-samples"):
        chunked.compress(source, str(tmp_path / "out.zarr"), chunks=64, start_samples=-1, **FLAGS)


def test_chunk_statistics_cover_the_voxels_inside_the_array_and_give_its_range(tmp_path):
    data = np.arange(10 * 12 * 14, dtype=np.float32).reshape(10, 12, 14)
    data[9, 11, 13] = -50
    np.save(tmp_path / "v.npy", data)
    volume = Volume(str(tmp_path / "v.npy"))
    stats = [measure_chunk(volume, box, number) for number, (_, box) in enumerate(chunk_boxes(data.shape, (8, 8, 8)))]
    assert [number for number, _ in stats] == list(range(8))
    edge, inside = stats[-1][1], data[8:, 8:, 8:]  # its box reaches to 16 on every axis
    assert (edge.low, edge.high) == (-50, inside.max()) and edge.spread == pytest.approx(inside.std())
    options = absolute_error_options({"ratio": 8.0, "max_error_rel": 0.01}, [s for _, s in stats])
    assert options["max_error_rel"] is None and options["max_error"] == pytest.approx(0.01 * (data.max() - data.min()))
    assert absolute_error_options({"ratio": 8.0}, []) == {"ratio": 8.0}


def test_a_run_that_fails_before_any_chunk_leaves_no_output(tmp_path, monkeypatch):
    np.save(tmp_path / "v.npy", np.arange(32 * 32 * 32, dtype=np.uint16).reshape(32, 32, 32))

    @contextlib.contextmanager
    def unreachable(scheduler, workers):
        raise TincConfigError("cannot reach the Dask scheduler at tcp://nowhere:1")
        yield

    monkeypatch.setattr(chunked, "_client", unreachable)
    with pytest.raises(TincConfigError, match="cannot reach"):
        chunked.compress(str(tmp_path / "v.npy"), str(tmp_path / "x.zarr"), chunks=16, ratio=8, steps=1, quiet=True)
    assert not (tmp_path / "x.zarr").exists()


def test_local_workers_keep_glibcs_own_heap_trimming():
    # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 by default, which halves a fit's speed
    with chunked._client(None, 1) as client:
        assert list(client.run(os.getenv, chunked.TRIM_VARIABLE).values()) == [None]


def test_a_cluster_whose_workers_trim_the_heap_is_named(brain32, tmp_path, monkeypatch, capsys):
    import dask
    from distributed import LocalCluster

    monkeypatch.delenv(chunked.TRIM_VARIABLE, raising=False)  # Dask's nanny sets it here too; undone after
    source = tmp_path / "small.npy"
    np.save(source, brain32)
    # Dask's default, which this module's `local_cluster` overrides while its cluster runs
    with dask.config.set({chunked.GLIBC_TRIM: 65536}), \
            LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        chunked.compress(str(source), str(tmp_path / "out.zarr"), chunks=16, scheduler=cluster.scheduler_address,
                         ratio=8, steps=5, start_samples=0)
    assert "the cluster's workers run with MALLOC_TRIM_THRESHOLD_=65536" in capsys.readouterr().err
