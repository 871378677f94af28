import pytest

from tinc import container
from tinc.errors import TincFormatError
from tinc.format import Header, decode_header, encode_header

HEADER = {"shape": [40, 30, 20], "dtype": "<u2", "channel_axis": None, "range": [3.0, 4000.0], "value_range": [-1.0, 1.0],
          "w0": 30.0, "splits": [[2, 2, 2], [2, 2, 1]], "layers": [2, 1, 3], "widths": [20, 12, list(range(8, 40))]}


def sample() -> bytes:
    return container.pack(HEADER, b"weights" * 10, {"nifti_header": b"abc"})


def test_round_trip_and_section_sizes():
    data = sample()
    parsed = container.unpack(data)
    assert parsed.header == Header.of({**HEADER, "format_version": container.FORMAT_VERSION}) and parsed.weights == b"weights" * 10 and parsed.metadata == {"nifti_header": b"abc"}
    assert sum(parsed.sizes.values()) == len(data)


def test_header_fields_round_trip_including_non_defaults():
    custom = {**HEADER, "channel_axis": -1, "shape": [40, 30, 3], "splits": [[2, 2]], "layers": [2, 2], "widths": [9, [8, 9, 10, 11]],
              "range": [-0.5, 2.25], "value_range": [0.0, 100.0], "w0": 20.0, "dtype": ">f4"}
    for header in (HEADER, custom):
        assert decode_header(encode_header(header)) == Header.of(header)
    assert len(encode_header(HEADER)) < 60


def test_every_truncation_is_a_format_error():
    data = sample()
    for length in range(len(data)):
        with pytest.raises(TincFormatError):
            container.unpack(data[:length])


def test_every_single_bit_flip_is_detected():
    data = sample()
    for position in range(len(data)):
        for bit in (0, 5):
            corrupted = bytearray(data)
            corrupted[position] ^= 1 << bit
            with pytest.raises(TincFormatError):
                container.unpack(bytes(corrupted))


def test_foreign_and_newer_files_name_the_problem():
    with pytest.raises(TincFormatError, match="not a .tinc file"):
        container.unpack(b"\x89PNG\r\n\x1a\n....")
    newer = bytearray(sample())
    newer[4] = container.FORMAT_VERSION + 1
    with pytest.raises(TincFormatError, match="newer"):
        container.unpack(bytes(newer))
