"""The `tinc` Zarr v3 codec and its numcodecs twin: round trips, registries, lazy reads, errors."""

import json
import os
import shutil

import numcodecs
import numpy as np
import pytest
import zarr
import zarr.registry

import tinc
import tinc.format as tinc_format
from tinc import metrics
from tinc.zarr_codec import TincNumcodec, TincZarrCodec

FAST = dict(steps=30, batch=4096, levels=0, layers=2)  # one 2-layer network: 30 steps already fit a smooth chunk


def smooth(shape, dtype=np.uint16) -> np.ndarray:
    """A smooth test volume that a few training steps already fit well."""
    z, y, x = np.meshgrid(*(np.arange(s, dtype=np.float64) for s in shape), indexing="ij")
    return (20000 + 9000 * np.sin(z / 9) * np.cos(y / 7) + 80 * x).astype(dtype)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A 40x70x50 array (edge chunks on every axis) written through Zarr with the tinc codec."""
    path = str(tmp_path_factory.mktemp("zarr") / "a.zarr")
    volume = smooth((40, 70, 50))
    array = zarr.create_array(path, shape=volume.shape, chunks=(32, 32, 32), dtype=volume.dtype,
                              serializer=TincZarrCodec(ratio=16, **FAST), compressors=None)
    array[:] = volume
    return path, volume


def test_plain_zarr_open_reads_partial_chunks_back(written):
    path, volume = written
    restored = zarr.open(path, mode="r")[:]  # no tinc import needed: the entry point finds the codec
    assert restored.shape == volume.shape and restored.dtype == volume.dtype
    whole_chunks = (slice(0, 32), slice(0, 64), slice(0, 32))
    assert metrics.psnr(volume[whole_chunks], restored[whole_chunks]) > 35
    # Zarr hands the codec edge chunks padded with the fill value (0 here), a cliff the fit
    # must spend its budget on; `tinc compress` repeats the edge instead (tested in test_chunked)
    edge = (slice(32, 40), slice(64, 70), slice(32, 50))
    assert 10 < metrics.psnr(volume[edge], restored[edge]) < metrics.psnr(volume[whole_chunks], restored[whole_chunks])


def test_slicing_decodes_only_the_chunks_it_touches(written, monkeypatch):
    path, _ = written
    full = zarr.open(path, mode="r")[:]
    decoded = []
    original = TincNumcodec.decode
    monkeypatch.setattr(TincNumcodec, "decode", lambda self, buf, out=None, **kw: decoded.append(1) or original(self, buf, out, **kw))
    array = zarr.open(path, mode="r")
    assert np.array_equal(array[3:5, 40:45, 0:3], full[3:5, 40:45, 0:3])
    assert len(decoded) == 1
    decoded.clear()
    assert np.array_equal(array[30:34, :, 7], full[30:34, :, 7])  # 2 x 3 x 1 chunks of the 2 x 3 x 2 grid
    assert len(decoded) == 6


def test_chunk_bytes_respect_the_ratio_and_are_tinc_files(written):
    path, volume = written
    chunk = os.path.join(path, "c", "0", "0", "0")
    with open(chunk, "rb") as handle:
        data = handle.read()
    assert data[:4] == b"TINC"
    assert len(data) <= 32 ** 3 * volume.dtype.itemsize / 16


def test_configuration_round_trips_through_zarr_json_and_numcodecs(written):
    path, _ = written
    with open(os.path.join(path, "zarr.json")) as handle:
        stored = json.load(handle)["codecs"]
    assert stored[0]["name"] == "tinc"
    assert stored[0]["configuration"]["ratio"] == 16 and stored[0]["configuration"]["steps"] == 30
    codec = TincZarrCodec.from_dict(stored[0])
    assert codec == TincZarrCodec(ratio=16, **FAST) and codec != TincZarrCodec(ratio=17, **FAST)
    assert TincZarrCodec.from_dict(codec.to_dict()) == codec
    assert zarr.registry.get_codec_class("tinc") is TincZarrCodec

    numcodec = numcodecs.get_codec({"id": "tinc", "ratio": 8, "halo": 2, "seed": 5})
    assert isinstance(numcodec, TincNumcodec)
    assert numcodec.get_config()["seed"] == 5 and numcodec.get_config()["halo"] == 2
    assert TincNumcodec.from_config(numcodec.get_config()) == numcodec
    assert TincNumcodec.from_config(numcodec.get_config()) != TincNumcodec(ratio=8, halo=3, seed=5)


def test_zarr_v2_array_with_the_numcodecs_compressor(tmp_path):
    volume = smooth((16, 32, 16))
    path = str(tmp_path / "v2.zarr")
    array = zarr.create_array(path, shape=volume.shape, chunks=(16, 16, 16), dtype=volume.dtype, zarr_format=2,
                              compressors=TincNumcodec(ratio=8, **FAST))
    array[:] = volume
    with open(os.path.join(path, ".zarray")) as handle:
        assert json.load(handle)["compressor"]["id"] == "tinc"
    restored = zarr.open(path, mode="r")[:]
    codec = TincNumcodec(ratio=8, **FAST)
    for half in (slice(0, 16), slice(16, 32)):  # each chunk is the codec's own round trip
        assert np.array_equal(restored[:, half], codec.decode(codec.encode(volume[:, half])))
    assert metrics.psnr(volume, restored) > 25


def test_halo_is_cropped_on_decode_and_paid_by_the_chunk_budget():
    chunk = smooth((24, 24, 24))
    plain, haloed = TincNumcodec(ratio=16, **FAST), TincNumcodec(ratio=16, halo=3, **FAST)
    data = haloed.encode(chunk)
    assert haloed.decode(data).shape == chunk.shape
    assert tinc.decompress(data).shape == (30, 30, 30)  # the stored tree covers the halo too
    assert len(data) <= chunk.nbytes / 16
    assert metrics.psnr(chunk, haloed.decode(data)) > 25
    out = np.empty(chunk.size, dtype=chunk.dtype)
    assert np.array_equal(plain.decode(plain.encode(chunk), out=out).reshape(chunk.shape), plain.decode(plain.encode(chunk)))


def test_a_constant_chunk_is_stored_without_a_fit_whatever_its_halo():
    region = smooth((30, 30, 30))
    region[3:-3, 3:-3, 3:-3] = 5  # the chunk is constant, its halo is not
    haloed = TincNumcodec(ratio=16, halo=3, **FAST)
    data, report = haloed.encode_with_halo(region)
    assert report.steps == 0 and len(data) < 24 ** 3 * region.itemsize / 16 / 4
    assert np.array_equal(haloed.decode(data), region[3:-3, 3:-3, 3:-3])


def test_corrupt_chunk_is_a_format_error(written, tmp_path):
    path, volume = written
    copy = tmp_path / "corrupt.zarr"
    shutil.copytree(path, copy)
    chunk = copy / "c" / "1" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    array = zarr.open(str(copy), mode="r")
    assert np.array_equal(array[0:32, 0:32, 0:32], zarr.open(path, mode="r")[0:32, 0:32, 0:32])  # other chunks still read
    with pytest.raises(tinc.TincFormatError, match="checksum|CRC|corrupt"):
        array[32:40, 0:8, 0:8]


def test_unsupported_dtype_and_bad_halo_are_refused(tmp_path):
    with pytest.raises(tinc.TincInputError, match="complex"):
        zarr.create_array(str(tmp_path / "c.zarr"), shape=(8, 8), chunks=(8, 8), dtype="complex64",
                          serializer=TincZarrCodec(ratio=8), compressors=None)
    with pytest.raises(tinc.TincInputError, match="halo"):
        TincNumcodec(halo=-1)
    with pytest.raises(tinc.TincConfigError, match="ratio"):
        TincZarrCodec(ratio=0.5)


def test_a_chunk_declaring_more_than_its_chunk_is_refused_before_decoding(written, tmp_path, monkeypatch):
    # a valid .tinc file of a far bigger array, put where a 32^3 chunk belongs: the chunk's
    # own shape bounds the declared array, so the networks are never built
    path, _ = written
    copy = tmp_path / "swapped.zarr"
    shutil.copytree(path, copy)
    (copy / "c" / "0" / "0" / "0").write_bytes(tinc.compress(smooth((96, 96, 96)), ratio=64, quiet=True, **FAST))
    def never(*args, **kwargs):
        raise AssertionError("the oversized tree was built")

    monkeypatch.setattr(tinc_format, "TreeINR", never)
    with pytest.raises(tinc.TincError, match="elements"):
        zarr.open(str(copy), mode="r")[0:8, 0:8, 0:8]
    with pytest.raises(tinc.TincError, match="elements"):
        TincNumcodec(ratio=16).decode((copy / "c" / "0" / "0" / "0").read_bytes(), out=np.empty((32, 32, 32), np.uint16))


def test_eval_reads_zarr_arrays(written, tmp_path, capsys):
    from tinc.cli import main
    from tinc.io import read_with_metadata

    path, volume = written
    array, metadata = read_with_metadata(path)
    assert metadata["format"] == "zarr" and np.array_equal(array, zarr.open(path, mode="r")[:])
    np.save(tmp_path / "original.npy", volume)
    assert main(["eval", str(tmp_path / "original.npy"), path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["psnr"] == pytest.approx(metrics.psnr(volume, array))
    assert main(["eval", str(tmp_path / "original.npy"), str(tmp_path / "missing.zarr")]) == 2


def test_runtime_fields_are_not_stored_and_stores_that_have_them_still_open(written, tmp_path):
    runtime = dict(device="cpu", quiet=False, checkpoint="fit.ckpt", checkpoint_every=5.0)
    codec = TincZarrCodec(ratio=16, **FAST, **runtime)
    assert not set(runtime) & set(codec.to_dict()["configuration"])
    assert not set(runtime) & set(TincNumcodec(ratio=16, **runtime).get_config())
    assert codec == TincZarrCodec(ratio=16, **FAST)  # one setting, however it runs
    assert codec.codec.tinc.config.checkpoint_every == 5.0  # yet this instance runs with them

    # a store written before: its zarr.json holds the writer's runtime fields
    path, volume = written
    old = tmp_path / "old.zarr"
    shutil.copytree(path, old)
    meta = json.loads((old / "zarr.json").read_text())
    meta["codecs"][0]["configuration"].update(device="cuda:7", quiet=True, checkpoint=None, checkpoint_every=60.0)
    (old / "zarr.json").write_text(json.dumps(meta))
    opened = zarr.open(str(old), mode="r")
    assert not set(runtime) & set(opened.metadata.codecs[0].to_dict()["configuration"])
    assert np.array_equal(opened[:], zarr.open(path, mode="r")[:])
