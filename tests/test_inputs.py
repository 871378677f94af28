"""Awkward inputs: non-finite values, degenerate and extreme shapes, unsupported dtypes,
and arrays that are big-endian, strided, memory-mapped or read-only."""

import numpy as np
import pytest

import tinc
from tinc import container
from tinc.errors import TincConfigError, TincInputError

FAST = dict(steps=20, batch=4096, quiet=True)


@pytest.fixture(scope="module")
def cube(brain32):
    return brain32[:16, :16, :16].copy()


@pytest.mark.parametrize("value, message", [(np.nan, "1 NaN and 0 infinite"), (np.inf, "0 NaN and 1 infinite"), (-np.inf, "0 NaN and 1 infinite")])
def test_non_finite_values_are_a_one_line_input_error(value, message):
    array = np.ones((8, 8), np.float32)
    array[3, 4] = value
    with pytest.raises(TincInputError, match=message) as error:
        tinc.compress(array, ratio=2, **FAST)
    assert "\n" not in str(error.value)


def test_masked_values_are_refused_rather_than_compressed_as_whatever_lies_beneath():
    array = np.ma.masked_less(np.arange(64, dtype=np.float32).reshape(8, 8), 3)
    with pytest.raises(TincInputError, match="masked"):
        tinc.compress(array, ratio=2, **FAST)


@pytest.mark.parametrize("dtype", [np.uint8, np.float64])
@pytest.mark.parametrize("fill", [0, 7])
def test_constant_and_all_zero_arrays_decode_exactly(dtype, fill):
    array = np.full((16, 16, 16), fill, dtype)
    assert np.array_equal(tinc.decompress(tinc.compress(array, ratio=4, **FAST)), array)


@pytest.mark.parametrize("shape", [(1,), (1, 1, 1), (2, 2)])
def test_arrays_smaller_than_a_file_header_say_so(shape):
    with pytest.raises(TincConfigError, match="too small to compress"):
        tinc.compress(np.ones(shape, np.float32), ratio=1.5, **FAST)


@pytest.mark.parametrize("shape", [(1, 32, 32), (32, 32, 1), (1, 1, 2000)])
def test_single_slice_and_single_line_arrays(shape):
    array = (np.indices(shape).sum(axis=0) * 10).astype(np.uint16)
    restored = tinc.decompress(tinc.compress(array, ratio=4, **FAST))
    assert restored.shape == shape and restored.dtype == array.dtype


def test_a_1x4096x4096_slab_compresses_and_decodes(tmp_path):
    array = (np.indices((1, 4096, 4096)).sum(axis=0) % 251).astype(np.uint8)
    data = tinc.compress(array, ratio=4096, levels=1, **FAST)
    header = container.unpack(data).header
    assert header["shape"] == [1, 4096, 4096] and header["splits"] == [[1, 2, 2]]  # the thin axis is never split
    corner = tinc.decompress(data, roi="0:1,4000:4096,0:96")  # a full decode takes ~10 s here
    assert corner.shape == (1, 96, 96) and corner.dtype == np.uint8


def test_five_axes_need_a_channel_axis_and_six_are_refused():
    five = (np.indices((8, 8, 6, 4, 2)).sum(axis=0) * 9).astype(np.uint8)
    with pytest.raises(TincInputError, match="5-D data is not supported"):
        tinc.compress(five, ratio=2, **FAST)
    restored = tinc.decompress(tinc.compress(five, ratio=2, channel_axis=-1, **FAST))
    assert restored.shape == five.shape
    with pytest.raises(TincInputError, match="5-D data is not supported"):
        tinc.compress(np.zeros((2,) * 6, np.uint8), ratio=2, channel_axis=0, **FAST)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.ones((4, 4), bool), "dtype bool"),
        (np.ones((4, 4), np.complex128), "dtype complex128"),
        (np.array([[1, "a"], [None, 2.0]], dtype=object), "dtype object"),
        (np.array([["ab", "cd"]]), "dtype <U2"),
        (np.zeros((4, 4), "datetime64[s]"), "datetime64"),
        (np.zeros((4, 4), np.longdouble), "dtype float128"),
    ],
)
def test_non_numeric_dtypes_are_a_clear_input_error(array, message):
    with pytest.raises(TincInputError, match=message):
        tinc.compress(array, ratio=2, **FAST)


def test_big_endian_input_decodes_to_the_same_values_in_its_own_byte_order(cube):
    native = tinc.decompress(tinc.compress(cube, ratio=8, **FAST))
    swapped = tinc.decompress(tinc.compress(cube.astype(">u2"), ratio=8, **FAST))
    assert swapped.dtype == np.dtype(">u2") and np.array_equal(swapped, native)


def test_strided_memory_mapped_and_read_only_inputs_give_the_same_bytes(cube, tmp_path):
    expected = tinc.compress(cube, ratio=8, **FAST)
    transposed = np.ascontiguousarray(cube.transpose(2, 0, 1)).transpose(1, 2, 0)  # same values, other strides
    strided = np.zeros((32, 16, 16), cube.dtype)
    strided[::2] = cube
    np.save(tmp_path / "cube.npy", cube)
    mapped = np.load(tmp_path / "cube.npy", mmap_mode="r")
    read_only = cube.copy()
    read_only.flags.writeable = False
    for variant in (transposed, strided[::2], mapped, read_only):
        assert tinc.compress(variant, ratio=8, **FAST) == expected
    assert np.array_equal(mapped, cube)  # the input is never written to


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
def test_extreme_64_bit_integers_never_wrap_around(dtype):
    info = np.iinfo(dtype)
    array = np.full(256, info.max, dtype)
    array[:128] = info.min
    # one 2-layer network: 40 steps fit this two-level signal (a tree or 4 layers need more)
    restored = tinc.decompress(tinc.compress(array, ratio=2, **{**FAST, "levels": 0, "layers": 2}))
    # float64 holds these values only to 2^11, but a value must never wrap to the other end
    assert restored[200] > info.max // 2 and restored[10] <= info.min // 2 + info.max // 4
