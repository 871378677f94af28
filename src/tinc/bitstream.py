"""Bytes read and written field by field: LEB128 varints, zigzag signs and a bounds-checked reader."""

from __future__ import annotations

from .errors import TincFormatError

def varint(value: int) -> bytes:
    """Unsigned LEB128."""
    if value < 0:
        raise ValueError("varint of a negative number")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def zigzag(value: int) -> int:
    return 2 * value if value >= 0 else -2 * value - 1


def unzigzag(value: int) -> int:
    return value // 2 if value % 2 == 0 else -(value + 1) // 2


class Reader:
    """Bounds-checked reads; running past the end raises TincFormatError with `message`."""

    def __init__(self, data: bytes, position: int, message: str):
        self.data, self.position, self.message = data, position, message

    def done(self) -> bool:
        return self.position >= len(self.data)

    def take(self, count: int) -> bytes:
        if count < 0 or self.position + count > len(self.data):
            raise TincFormatError(self.message)
        chunk = self.data[self.position:self.position + count]
        self.position += count
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def varint(self) -> int:
        value = shift = 0
        while True:
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise TincFormatError("invalid .tinc file (varint too long)")
