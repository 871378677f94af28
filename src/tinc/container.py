"""The `.tinc` file: magic, format version, tagged sections and a CRC-32 trailer.

    b"TINC" | version:u8 | (tag:4s length:u32 payload)* | crc32:u32 of everything before

Sections: HEAD (zlib-compressed JSON tree description), WGTS (coded weights) and an optional
META (zlib-compressed JSON of format metadata such as a NIfTI header). Unknown tags are
skipped, so later versions can add sections that older readers ignore.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field

from .errors import TincFormatError

MAGIC = b"TINC"
FORMAT_VERSION = 1
_SECTION = struct.Struct("<4sI")
_MAX_HEADER_JSON = 1 << 24  # a zlib bomb in HEAD must not exhaust memory


@dataclass
class Container:
    header: dict
    weights: bytes
    metadata: dict = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)
    """Bytes per part of the file, filled by `unpack` for `tinc info`."""


def pack(header: dict, weights: bytes, metadata: dict | None = None) -> bytes:
    parts = [MAGIC, bytes([FORMAT_VERSION])]
    sections = [(b"HEAD", _compress_json(header)), (b"WGTS", weights)]
    if metadata:
        sections.append((b"META", _compress_json(metadata)))
    for tag, payload in sections:
        parts += [_SECTION.pack(tag, len(payload)), payload]
    body = b"".join(parts)
    return body + struct.pack("<I", zlib.crc32(body))


def unpack(data: bytes) -> Container:
    """Parse and check a `.tinc` file's structure; raises TincFormatError naming the problem."""
    data = bytes(data)
    if len(data) < 4 or data[:4] != MAGIC:
        raise TincFormatError("not a .tinc file (bad magic bytes)")
    if len(data) < 9:
        raise TincFormatError("truncated .tinc file")
    version = data[4]
    if version > FORMAT_VERSION:
        raise TincFormatError(f".tinc format version {version} is newer than this tinc supports ({FORMAT_VERSION}); upgrade tinc")
    if version < 1:
        raise TincFormatError(f"invalid .tinc format version {version}")
    sections: dict[bytes, bytes] = {}
    sizes = {"preamble": 5, "checksum": 4}
    position = 5
    end = len(data) - 4
    while position < end:
        if position + _SECTION.size > end:
            raise TincFormatError("truncated .tinc file (incomplete section header)")
        tag, length = _SECTION.unpack_from(data, position)
        position += _SECTION.size
        if position + length > end:
            raise TincFormatError(f"truncated .tinc file (section {tag!r} needs {length} bytes, {end - position} left)")
        sections[tag] = data[position:position + length]
        sizes[tag.decode("ascii", "replace")] = length + _SECTION.size
        position += length
    if struct.unpack("<I", data[-4:])[0] != zlib.crc32(data[:-4]):
        raise TincFormatError("checksum mismatch: the .tinc file is corrupted")
    for required in (b"HEAD", b"WGTS"):
        if required not in sections:
            raise TincFormatError(f"the .tinc file has no {required.decode()} section")
    header = _decompress_json(sections[b"HEAD"], "HEAD")
    metadata = _decompress_json(sections[b"META"], "META") if b"META" in sections else {}
    return Container(header, sections[b"WGTS"], metadata, sizes)


def _compress_json(value: dict) -> bytes:
    return zlib.compress(json.dumps(value, separators=(",", ":")).encode(), 9)


def _decompress_json(payload: bytes, name: str) -> dict:
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(payload, _MAX_HEADER_JSON)
        if inflater.unconsumed_tail:
            raise TincFormatError(f"{name} section is larger than {_MAX_HEADER_JSON} bytes")
        value = json.loads(text)
    except TincFormatError:
        raise
    except (zlib.error, ValueError, UnicodeDecodeError) as error:
        raise TincFormatError(f"{name} section is unreadable ({error})") from None
    if not isinstance(value, dict):
        raise TincFormatError(f"{name} section is not a JSON object")
    return value
