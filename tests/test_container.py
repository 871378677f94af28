import pytest

from tinc import container
from tinc.errors import TincFormatError

HEADER = {"shape": [4, 4], "dtype": "<u2"}


def sample() -> bytes:
    return container.pack(HEADER, b"weights" * 10, {"nifti_header": "abc"})


def test_round_trip_and_section_sizes():
    data = sample()
    parsed = container.unpack(data)
    assert parsed.header == HEADER and parsed.weights == b"weights" * 10 and parsed.metadata == {"nifti_header": "abc"}
    assert sum(parsed.sizes.values()) == len(data)


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
