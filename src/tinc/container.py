"""The `.tinc` file: magic, format version, tagged sections and a CRC-32 trailer.

    b"TINC" | version:u8 | (tag:u8 length:varint payload)* | crc32:u32 of everything before

Sections: HEAD (the tree description, binary), WGTS (coded weights), an optional META
(zlib-compressed name -> bytes pairs, e.g. a NIfTI header) and an optional CORR (the
quantized residual of a file with a guaranteed maximum error, `tinc.correction`; a reader
that predates it skips it and decodes the network alone, without the bound). Every byte counts against the
budget at high ratios, hence varints and a binary header rather than JSON. Unknown tags
are skipped, so later versions can add sections that older readers ignore.

Version 2 changed what the weights mean, not the layout: the root takes only the spatial
axes longer than 1 as coordinates (version 1 gave a length-1 axis a constant input too).
`unpack` puts the version in the header as "format_version" for `plan_from_header`.
Version 3 codes the weights with three-byte tensor headers instead of seven
(`coding.COMPACT`); the weight section's first byte says which, so version 2 files decode.
Version 4 may code a hidden layer's biases as sorted runs (`coding.SORTED`, a flag in the
tensor's header that version 3 readers would call invalid), the network stored in its
canonical form (`TreeINR.canonical_order`); version 3 files never set it and still decode.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from .errors import TincFormatError

MAGIC = b"TINC"
FORMAT_VERSION = 4
HEAD, WGTS, META, CORR = 1, 2, 3, 4
SECTION_NAMES = {HEAD: "HEAD", WGTS: "WGTS", META: "META", CORR: "CORR"}
_MAX_META = 1 << 24  # a zlib bomb in META must not exhaust memory
_MAX_META_ENTRIES = 256  # nor take seconds to walk: 16 MiB of zeros would be 8 million empty entries
_MAX_NODES_LISTED = 1 << 20

# HEAD flags
_CHANNELS, _VALUE_RANGE, _W0, _INTEGER_RANGE = 1, 2, 4, 8
DEFAULT_VALUE_RANGE = (-1.0, 1.0)
DEFAULT_W0 = 30.0


@dataclass
class Container:
    header: dict
    weights: bytes
    metadata: dict = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)
    """Bytes per part of the file, filled by `unpack` for `tinc info`."""
    correction: bytes | None = None
    """The CORR section's payload (`tinc.correction`), if the file guarantees a maximum error."""


def pack(header: dict, weights: bytes, metadata: dict | None = None, correction: bytes | None = None) -> bytes:
    """The file; without `correction` exactly the bytes of a file written before CORR existed."""
    parts = [MAGIC, bytes([FORMAT_VERSION])]
    sections = [(HEAD, encode_header(header)), (WGTS, weights)]
    if metadata:
        sections.append((META, _encode_metadata(metadata)))
    if correction is not None:
        sections.append((CORR, correction))
    for tag, payload in sections:
        parts += [bytes([tag]), varint(len(payload)), payload]
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
    sections: dict[int, bytes] = {}
    sizes = {"preamble": 5, "checksum": 4}
    reader = Reader(data[:-4], 5, "truncated .tinc file")
    while not reader.done():
        start = reader.position
        tag = reader.byte()
        payload = reader.take(reader.varint())
        if tag in sections:  # two HEADs would make the file mean two things
            raise TincFormatError(f"the .tinc file has two {SECTION_NAMES.get(tag, f'tag {tag}')} sections")
        sections[tag] = payload
        sizes[SECTION_NAMES.get(tag, f"tag{tag}")] = reader.position - start
    if struct.unpack("<I", data[-4:])[0] != zlib.crc32(data[:-4]):
        raise TincFormatError("checksum mismatch: the .tinc file is corrupted")
    for required in (HEAD, WGTS):
        if required not in sections:
            raise TincFormatError(f"the .tinc file has no {SECTION_NAMES[required]} section")
    header = decode_header(sections[HEAD])
    header["format_version"] = version
    metadata = _decode_metadata(sections[META]) if META in sections else {}
    return Container(header, sections[WGTS], metadata, sizes, sections.get(CORR))


# ------------------------------------------------------------------ header
def encode_header(header: dict) -> bytes:
    """The tree description in a few dozen bytes (see `decode_header` for the fields)."""
    shape, channel_axis = header["shape"], header.get("channel_axis")
    low, high = header["range"]
    value_range = tuple(header.get("value_range", DEFAULT_VALUE_RANGE))
    w0 = header.get("w0", DEFAULT_W0)
    integer_range = all(float(v).is_integer() and abs(v) < 2**53 for v in (low, high))
    flags = ((channel_axis is not None) * _CHANNELS | (value_range != DEFAULT_VALUE_RANGE) * _VALUE_RANGE
             | (w0 != DEFAULT_W0) * _W0 | integer_range * _INTEGER_RANGE)
    dtype = header["dtype"].encode("ascii")
    out = [bytes([flags, len(shape)]), *(varint(s) for s in shape), bytes([len(dtype)]), dtype]
    if channel_axis is not None:
        out.append(struct.pack("<b", channel_axis))
    out.append(varint(zigzag(int(low))) + varint(zigzag(int(high))) if integer_range else struct.pack("<dd", low, high))
    if flags & _VALUE_RANGE:
        out.append(struct.pack("<dd", *value_range))
    if flags & _W0:
        out.append(struct.pack("<d", w0))
    splits = header["splits"]
    out.append(bytes([len(splits)]))
    out += [bytes([sum(1 << axis for axis, s in enumerate(split) if s == 2)]) for split in splits]
    out.append(bytes(header["layers"]))
    for widths in header["widths"]:
        if isinstance(widths, int):
            out.append(b"\x00" + varint(widths))
        else:
            out.append(b"\x01" + b"".join(varint(w) for w in widths))
    return b"".join(out)


def decode_header(payload: bytes) -> dict:
    reader = Reader(payload, 0, "HEAD section is truncated")
    flags, ndim = reader.byte(), reader.byte()
    if not 1 <= ndim <= 8:
        raise TincFormatError(f"invalid .tinc header ({ndim} axes)")
    shape = [reader.varint() for _ in range(ndim)]
    dtype = reader.take(reader.byte()).decode("ascii", "replace")
    channel_axis = struct.unpack("<b", reader.take(1))[0] if flags & _CHANNELS else None
    if flags & _INTEGER_RANGE:
        low, high = float(unzigzag(reader.varint())), float(unzigzag(reader.varint()))
    else:
        low, high = struct.unpack("<dd", reader.take(16))
    value_range = list(struct.unpack("<dd", reader.take(16))) if flags & _VALUE_RANGE else list(DEFAULT_VALUE_RANGE)
    w0 = struct.unpack("<d", reader.take(8))[0] if flags & _W0 else DEFAULT_W0
    depth = reader.byte()
    spatial = ndim - (channel_axis is not None)
    splits = [[2 if mask >> axis & 1 else 1 for axis in range(spatial)] for mask in reader.take(depth)]
    layers = list(reader.take(depth + 1))
    widths: list = []
    nodes = 1
    for level in range(depth + 1):
        if level:
            nodes *= int(np.prod(splits[level - 1]))
        mode = reader.byte()
        if mode == 0:
            widths.append(reader.varint())
        elif mode == 1 and nodes <= _MAX_NODES_LISTED:
            widths.append([reader.varint() for _ in range(nodes)])
        else:
            raise TincFormatError("invalid .tinc header (widths)")
    if not reader.done():
        raise TincFormatError("invalid .tinc header (trailing bytes)")
    return {"shape": shape, "dtype": dtype, "channel_axis": channel_axis, "range": [low, high],
            "value_range": value_range, "w0": w0, "splits": splits, "layers": layers, "widths": widths}


# ------------------------------------------------------------------ metadata
def _encode_metadata(metadata: dict) -> bytes:
    parts = []
    for name, value in metadata.items():
        value = value if isinstance(value, bytes) else str(value).encode()
        key = name.encode()
        parts += [varint(len(key)), key, varint(len(value)), value]
    return zlib.compress(b"".join(parts), 9)


def _decode_metadata(payload: bytes) -> dict:
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(payload, _MAX_META)
        if inflater.unconsumed_tail:
            raise TincFormatError(f"META section is larger than {_MAX_META} bytes")
    except zlib.error as error:
        raise TincFormatError(f"META section is unreadable ({error})") from None
    reader = Reader(raw, 0, "META section is truncated")
    metadata = {}
    while not reader.done():
        key = reader.take(reader.varint()).decode("utf-8", "replace")
        if key in metadata or len(metadata) == _MAX_META_ENTRIES:
            raise TincFormatError("META section has duplicate or too many entries")
        metadata[key] = reader.take(reader.varint())
    return metadata


# ------------------------------------------------------------------ primitives
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
