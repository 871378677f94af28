"""`--max-error` / `--max-error-rel`: every decoded value within the bound, on every decode path."""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinc
from tinc import container, correction, residual_coder
from tinc.cli import main
from tinc.codec import TincCodec
from tinc.decoder import Decoder
from tinc.errors import TincConfigError, TincFormatError
from tinc.metrics import max_abs_error

FAST = dict(steps=8, batch=1 << 11, quiet=True, starts=1)  # the bound needs no good fit: fast tests


@pytest.fixture(scope="module")
def cube(brain64) -> np.ndarray:
    return np.ascontiguousarray(brain64[20:38, 16:42, 18:32])  # 18x26x14 uint16, odd block edges


@pytest.fixture(scope="module")
def smooth_float() -> np.ndarray:
    rng = np.random.default_rng(3)
    return (np.cumsum(rng.normal(size=(30, 44)), axis=0) * 1e3 + 5e4).astype(np.float32)


@pytest.mark.parametrize("bound", [0, 2.9])
def test_integer_bound_is_exact(cube, bound):
    data = tinc.compress(cube, ratio=32, max_error=bound, **FAST)
    restored = tinc.decompress(data)
    assert restored.dtype == cube.dtype
    error = max_abs_error(cube, restored)
    assert error <= bound
    if bound == 0:
        assert np.array_equal(restored, cube)
    # the bound is met by the correction, not by the network alone
    assert max_abs_error(cube, Decoder(_network_only(data)).decode()) > bound


@pytest.mark.parametrize("rel", [1e-2, 1e-4])
def test_float_bound_relative_to_range(smooth_float, rel):
    bound = rel * (float(smooth_float.max()) - float(smooth_float.min()))
    codec = TincCodec(ratio=16, max_error_rel=rel, **FAST)
    data = codec.encode(smooth_float)
    restored = tinc.decompress(data)
    assert max_abs_error(smooth_float, restored) <= bound
    assert codec.report.bound == pytest.approx(bound)
    assert codec.report.max_error == max_abs_error(smooth_float, restored)
    assert codec.report.network_bytes < len(data)


def test_files_without_a_bound_are_unchanged_and_the_network_part_is_that_file(cube):
    """The network of a bounded file is byte for byte the file written without the bound."""
    plain = tinc.compress(cube, ratio=32, **FAST)
    bounded = tinc.compress(cube, ratio=32, max_error=5, **FAST)
    assert container.CORR not in _tags(plain)
    assert _network_only(bounded) == plain


def test_every_decode_path_gives_the_same_values(cube, tmp_path):
    """ROI decodes, tinc.open slices, scale 1, repeated decodes and 1 or 2 torch threads all
    give the full decode's values, so the bound checked at encode time holds for each."""
    bound = 3
    data = tinc.compress(cube, ratio=32, max_error=bound, levels=1, **FAST)
    decoder = Decoder(data)
    full = decoder.decode()
    assert max_abs_error(cube, full) <= bound
    rng = np.random.default_rng(0)
    for _ in range(6):
        box = []
        for size in cube.shape:
            a = int(rng.integers(0, size))
            box.append(slice(a, int(rng.integers(a + 1, size + 1))))
        assert np.array_equal(decoder.decode(roi=tuple(box)), full[tuple(box)])
    assert np.array_equal(decoder.decode(scale=1), full)
    assert np.array_equal(Decoder(data).decode(), full)
    path = tmp_path / "cube.tinc"
    path.write_bytes(data)
    opened = tinc.open(path)
    assert np.array_equal(opened[3:17, 5, :], full[3:17, 5, :])
    assert np.array_equal(np.asarray(opened), full)
    assert np.array_equal(opened.to_dask()[:, 7:22].compute(), full[:, 7:22])
    threads = torch.get_num_threads()
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            assert np.array_equal(Decoder(data).decode(), full)
            assert np.array_equal(Decoder(data).decode(roi="2:9,:,4:13"), full[2:9, :, 4:13])
    finally:
        torch.set_num_threads(threads)
    # a resampled grid has no residual to add: it decodes, without the bound
    assert Decoder(data).decode(scale=2).shape == tuple(2 * s for s in cube.shape)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_decode_of_a_cpu_file_keeps_the_bound(cube):
    """The margin (correction.MARGIN of the range) absorbs a GPU's float32 differences."""
    for bound in (0, 3):
        data = tinc.compress(cube, ratio=32, max_error=bound, **FAST)
        assert max_abs_error(cube, tinc.decompress(data, device="cuda")) <= bound


def test_channel_axis_and_4d(cube):
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, size=(20, 26, 3), dtype=np.uint8)
    data = tinc.compress(rgb, ratio=8, channel_axis=-1, max_error=4, **FAST)
    full = tinc.decompress(data)
    assert max_abs_error(rgb, full) <= 4
    assert np.array_equal(tinc.decompress(data, roi="3:11,:,1:3"), full[3:11, :, 1:3])
    series = rng.integers(-2000, 2000, size=(10, 12, 6, 3)).astype(np.int16)
    data = tinc.compress(series, ratio=8, max_error=0, **FAST)
    assert np.array_equal(tinc.decompress(data), series)


def test_bound_alone_searches_the_network_ratio(cube):
    codec = TincCodec(max_error=20, **FAST)
    assert codec.config.ratio is None
    data = codec.encode(cube)
    trials = codec.report.ratio_trials
    assert len(trials) >= 3 and len({ratio for ratio, _, _ in trials}) == len(trials)
    assert len(data) == min(total for _, _, total in trials)
    assert max_abs_error(cube, tinc.decompress(data)) <= 20
    # the search's setting survives the codec's configuration
    assert TincCodec.from_config(codec.get_config()).config.ratio is None


@pytest.mark.parametrize("options, message", [
    (dict(max_error=-1), "max_error must be a finite number >= 0"),
    (dict(max_error=float("nan")), "max_error must be a finite number >= 0"),
    (dict(max_error_rel=float("inf")), "max_error_rel must be a finite number >= 0"),
    (dict(max_error=1, max_error_rel=0.1), "not both"),
    (dict(max_error=1, target_psnr=40), "give one"),
])
def test_bad_bounds_are_one_line_config_errors(options, message):
    with pytest.raises(TincConfigError, match=message):
        TincCodec(**options)


def test_a_search_needs_a_bound():
    with pytest.raises(TincConfigError, match="only a max_error"):
        tinc.TincConfig(ratio=None)


def test_zero_bound_on_float_data_is_refused(smooth_float):
    with pytest.raises(TincConfigError, match="below what float32 data"):
        tinc.compress(smooth_float, ratio=16, max_error=0, **FAST)


def test_cli_compress_info_eval(cube, tmp_path, capsys):
    source, output = tmp_path / "cube.npy", tmp_path / "cube.tinc"
    np.save(source, cube)
    args = ["compress", str(source), "-o", str(output), "--ratio", "32", "--max-error-rel", "0.001", "--steps", "20", "--starts", "1"]
    assert main(args) == 0
    bound = 0.001 * (int(cube.max()) - int(cube.min()))
    out = capsys.readouterr().out
    assert f"<= {bound:g}" in out and "correction" in out
    assert main(["info", str(output)]) == 0
    out = capsys.readouterr().out
    assert f"max error {bound:g} guaranteed" in out and "CORR" in out
    assert main(["info", str(output), "--json"]) == 0
    info = __import__("json").loads(capsys.readouterr().out)
    assert info["bound"]["max_error"] == pytest.approx(bound)
    assert info["bound"]["network_bytes"] + info["bound"]["correction_bytes"] == output.stat().st_size
    measured = info["bound"]["measured_max_error"]
    assert measured <= bound and measured >= max_abs_error(cube, tinc.decompress(output.read_bytes()))
    assert main(["eval", str(source), str(output), "--max-error", str(bound)]) == 0
    assert f"(bound {bound:g})" in capsys.readouterr().out
    assert main(["eval", str(source), str(output), "--max-error", str(measured / 2)]) == 1
    assert "exceeds --max-error" in capsys.readouterr().err
    assert main(["eval", str(source), str(output), "--max-error", "-1"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    bad = tmp_path / "bad.tinc"
    assert main(["compress", str(source), "-o", str(bad), "--max-error", "-2", "--steps", "5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "max_error" in err and not bad.exists()


def test_zarr_codec_and_chunked_compression_hold_the_bound(tmp_path):
    import zarr

    from tinc import boxes, chunked
    from tinc.zarr_codec import TincNumcodec, TincZarrCodec

    rng = np.random.default_rng(7)
    volume = (np.cumsum(rng.normal(size=(40, 36, 30)), axis=1) * 30 + 2000).astype(np.int16)
    codec = TincNumcodec(halo=2, ratio=16, max_error=6, **FAST)
    assert max_abs_error(volume[:20], codec.decode(codec.encode(volume[:20]))) <= 6
    store = zarr.create_array(str(tmp_path / "direct.zarr"), shape=volume.shape, chunks=(20, 36, 30), dtype=volume.dtype,
                              serializer=TincZarrCodec(ratio=16, max_error=6, **FAST), compressors=None)
    store[...] = volume
    assert max_abs_error(volume, zarr.open_array(str(tmp_path / "direct.zarr"))[...]) <= 6
    source = tmp_path / "volume.npy"
    np.save(source, volume)
    output = str(tmp_path / "chunked.zarr")
    chunked.compress(str(source), output, chunks=(24, 20, 30), halo=2, workers=1, ratio=16, max_error_rel=0.002, **FAST)
    bound = 0.002 * (int(volume.max()) - int(volume.min()))
    restored = zarr.open_array(output)[...]
    for box in boxes.chunk_boxes(volume.shape, (24, 20, 30)):  # every chunk, not only the whole
        index = tuple(slice(a, b) for a, b in box[1])
        assert max_abs_error(volume[index], restored[index]) <= bound
    assert tinc.open(output)[5:30, 3, :].shape == (25, 30)


# ---------------------------------------------------------------------- fuzzing
_DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.uint32, np.float32, np.float64, np.float16]


@st.composite
def arrays_and_bounds(draw):
    dtype = np.dtype(draw(st.sampled_from(_DTYPES)))
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 13), min_size=ndim, max_size=ndim)))
    if math.prod(shape) * dtype.itemsize < 600:  # room for a header and a network at ratio 2
        shape = shape[:-1] + (shape[-1] + 600 // dtype.itemsize // math.prod(shape[:-1]),)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if dtype.kind == "f":
        top = float(np.finfo(dtype).max) / 4 if draw(st.booleans()) and dtype != np.float16 else 1e3
        values = rng.uniform(-top, top, size=shape)
    else:
        info = np.iinfo(dtype)
        low = info.min if draw(st.booleans()) else max(info.min, -1000)
        high = info.max if draw(st.booleans()) else min(info.max, 1000)
        values = rng.integers(low, high, size=shape, endpoint=True, dtype=np.int64 if dtype != np.uint32 else np.uint64)
    array = np.asarray(values).astype(dtype)
    if draw(st.booleans()):  # a constant region
        array.reshape(-1)[: array.size // 2] = array.reshape(-1)[0]
    if draw(st.booleans()):  # extremes of the dtype, or of a large float range
        limits = np.iinfo(dtype) if dtype.kind in "ui" else None
        array.reshape(-1)[-1] = limits.max if limits else array.max()
        array.reshape(-1)[-2] = limits.min if limits else array.min()
    if draw(st.integers(0, 9)) == 0:
        array[...] = array.reshape(-1)[0]
    span = float(array.max()) - float(array.min())
    if dtype.kind == "f":
        largest = max(abs(float(array.max())), abs(float(array.min())))
        floor = float(np.spacing(dtype.type(largest))) + span * 2.0**-18
        bound = max(floor, draw(st.sampled_from([1e-4, 1e-2, 0.3])) * max(span, 1e-30))
    else:
        bound = draw(st.sampled_from([0.0, 0.7, 1.0, 3.5, 1e-3 * span, 0.05 * span]))
    return array, bound


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(arrays_and_bounds())
def test_fuzz_every_decoded_value_is_within_the_bound(case):
    array, bound = case
    # float32 weights skip the coder's step search: the fuzzer tests the correction, not the fit
    data = tinc.compress(array, ratio=2, max_error=bound, steps=3, batch=256, quiet=True, starts=1, min_width=2, weight_bits=32)
    restored = tinc.decompress(data)
    assert restored.dtype == array.dtype and restored.shape == array.shape
    assert max_abs_error(array, restored) <= bound
    roi = tuple(slice(s // 3, s) for s in array.shape)
    assert np.array_equal(tinc.decompress(data, roi=roi), restored[roi])


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=64), st.integers(0, 5))
def test_forged_correction_sections_raise_format_errors(garbage, method):
    """Any CORR payload either decodes to finite values of the declared shape or raises."""
    base = _forge_base()
    payload = struct.pack("<Bddf", method, 5.0, 4.5, 1.0) + garbage
    parsed = container.unpack(base)
    forged = container.pack(parsed.header, parsed.weights, parsed.metadata, payload)
    try:
        values = tinc.decompress(forged)
    except TincFormatError:
        return
    assert values.shape == tuple(parsed.header["shape"])


@settings(max_examples=120, deadline=None, derandomize=True)
@given(st.integers(0, 2**32), st.integers(1, 6))
def test_forged_context_coded_residuals_raise_format_errors(cube, rng_seed, edits):
    """Byte edits of a valid context-coded CORR payload: a format error or values of the declared shape."""
    import random

    data = _context_file(cube)
    parsed = container.unpack(data)
    rng, body = random.Random(rng_seed), bytearray(parsed.correction)
    for _ in range(edits):
        at = rng.randrange(21, len(body) + 1)
        kind = rng.randrange(3)
        if kind == 0 and at < len(body):
            body[at] ^= 1 << rng.randrange(8)
        elif kind == 1:
            body[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        else:
            del body[at:at + rng.randint(1, 16)]
    forged = container.pack(parsed.header, parsed.weights, parsed.metadata, bytes(body))
    try:
        values = tinc.decompress(forged)
    except TincFormatError:
        return
    assert values.shape == cube.shape and values.dtype == cube.dtype


_CONTEXT: list[bytes] = []


def _context_file(cube) -> bytes:
    if not _CONTEXT:
        _CONTEXT.append(tinc.compress(cube, ratio=32, max_error=30, **FAST))
        assert container.unpack(_CONTEXT[0]).correction[0] == correction.CONTEXT
    return _CONTEXT[0]


@pytest.mark.parametrize("shape", [(1, 1), (7, 1), (2, 3, 1), (5, 9, 2), (9, 4, 6, 1), (3, 5, 4, 3, 1), (33, 1, 17, 1)])
def test_context_coder_round_trips_within_half_a_step(shape):
    rng = np.random.default_rng(len(shape) + shape[0])
    residual = rng.laplace(scale=3, size=shape) * rng.choice([0.1, 1000], size=shape)
    residual.flat[0] = -residual_coder.MAX_MAGNITUDE
    low = rng.random(shape) < 0.3
    high = ~low & (rng.random(shape) < 0.3)
    body, stored, shift = residual_coder.encode(residual, low, high)
    assert body == residual_coder.encode(residual, low, high)[0]  # deterministic
    decoded, decoded_shift = residual_coder.decode(body, shape)
    assert np.array_equal(decoded, stored) and decoded_shift == shift
    steps = stored / float(1 << shift)
    within = np.abs(steps - residual) <= 0.5
    assert np.all(np.where(low, steps <= residual + 0.5, np.where(high, steps >= residual - 0.5, within)))
    assert residual_coder.encode(residual * 2) is None  # beyond the coder's magnitudes: the general-purpose coders take it


def test_range_ends_make_residuals_free_and_files_of_older_methods_still_decode(cube):
    """Voxels at the data's minimum cost nothing where the prediction says so; a CORR of the
    general-purpose methods (files written before the context coder) decodes as it did."""
    from tinc.values import prediction, restore

    floor = np.maximum(cube, np.percentile(cube, 60)).astype(cube.dtype)  # 60% at the minimum
    data = tinc.compress(floor, ratio=32, max_error=3, **FAST)
    assert max_abs_error(floor, tinc.decompress(data)) <= 3
    parsed = container.unpack(data)
    found = correction.decode(parsed.correction, floor.shape + (1,))
    assert found.method == correction.CONTEXT
    network = Decoder(_network_only(data))
    values = network.network_values()
    q = correction.quantize(floor[..., None] - prediction(values, network.header), found.half_step)
    for method in (correction.ZSTD, correction.LZMA, correction.BROTLI):
        old = correction.encode(q, found.bound, found.half_step, found.measured, methods=(method,))
        assert old[0] == method and len(old) > len(parsed.correction)
        restored = tinc.decompress(container.pack(parsed.header, parsed.weights, parsed.metadata, old))
        assert np.array_equal(restored, restore(values, network.header, q * (2.0 * found.half_step)))
        assert max_abs_error(floor, restored) <= 3


_BASE: list[bytes] = []


def _forge_base() -> bytes:
    if not _BASE:
        rng = np.random.default_rng(0)
        _BASE.append(tinc.compress(rng.integers(0, 99, size=(30, 20), dtype=np.uint8), ratio=2, steps=2, quiet=True, starts=1))
    return _BASE[0]


def _tags(data: bytes) -> list[int]:
    reader, tags = container.Reader(data[:-4], 5, "truncated"), []
    while not reader.done():
        tags.append(reader.byte())
        reader.take(reader.varint())
    return tags


def _network_only(data: bytes) -> bytes:
    """The file without its CORR section (the bytes of a file written without the bound)."""
    parsed = container.unpack(data)
    assert parsed.correction is not None
    body = container.pack(parsed.header, parsed.weights, parsed.metadata)
    assert struct.unpack("<I", body[-4:])[0] == zlib.crc32(body[:-4])
    return body


def test_bench_max_error_mode(cube, tmp_path):
    """`tinc bench --max-error`: every codec's row meets its bound, tinc's is a whole file."""
    import csv

    source = tmp_path / "cube.npy"
    np.save(source, cube)
    out = tmp_path / "bench"
    assert main(["bench", str(source), "--max-error", "1e-2,1e-3", "--network-ratios", "16,64", "--steps", "5",
                 "--out", str(out), "--quiet"]) == 0
    rows = list(csv.DictReader(open(out / "max_error.csv")))
    assert sorted({r["codec"] for r in rows}) == ["sperr", "sz3", "tinc", "zfp"] and len(rows) == 8
    for row in rows:
        assert float(row["max_error"]) <= float(row["bound"])
    assert "tinc / smallest other" in (out / "max_error.md").read_text()
    assert main(["bench", str(source), "--network-ratios", "16", "--out", str(out)]) == 2
