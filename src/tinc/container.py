"""The `.tinc` file: magic, format version, tagged sections and a CRC-32 trailer.

    b"TINC" | version:u8 | (tag:u8 length:varint payload)* | crc32:u32 of everything before

Sections: HEAD (the tree description, binary: `tinc.format`), WGTS (coded weights), an optional META
(zlib-compressed name -> bytes pairs, e.g. a NIfTI header) and an optional CORR (the
quantized residual of a file with a guaranteed maximum error, `tinc.correction`; a reader
that predates it skips it and decodes the network alone, without the bound). Unknown tags
are skipped, so later versions can add sections that older readers ignore.

Version 2 changed what the weights mean, not the layout: the root takes only the spatial
axes longer than 1 as coordinates (version 1 gave a length-1 axis a constant input too).
`unpack` puts the version in the header (`Header.format_version`) for `format.plan_from_header`.
Version 3 codes the weights with three-byte tensor headers instead of seven
(`coding.COMPACT`); the weight section's first byte says which, so version 2 files decode.
Version 4 may code a hidden layer's biases as sorted runs (`coding.SORTED`, a flag in the
tensor's header that version 3 readers would call invalid), the network stored in its
canonical form (`SineMLP.canonical_order`); version 3 files never set it and still decode.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from .bitstream import Reader, varint
from .errors import TincFormatError
from .format import FORMAT_VERSION, Header, decode_header, encode_header

MAGIC = b"TINC"
HEAD, WGTS, META, CORR = 1, 2, 3, 4
SECTION_NAMES = {HEAD: "HEAD", WGTS: "WGTS", META: "META", CORR: "CORR"}
_MAX_META = 1 << 24  # a zlib bomb in META must not exhaust memory
_MAX_META_ENTRIES = 256  # nor take seconds to walk: 16 MiB of zeros would be 8 million empty entries


@dataclass
class Container:
    header: Header
    weights: bytes
    metadata: dict = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)
    """Bytes per part of the file, filled by `unpack` for `tinc info`."""
    correction: bytes | None = None
    """The CORR section's payload (`tinc.correction`), if the file guarantees a maximum error."""


def pack(header: Header | dict, weights: bytes, metadata: dict | None = None, correction: bytes | None = None) -> bytes:
    """The file; without `correction` exactly the bytes of a file written before CORR existed."""
    parts = [MAGIC, bytes([FORMAT_VERSION])]
    sections = [(HEAD, encode_header(header)), (WGTS, weights)]
    if metadata:
        sections.append((META, encode_metadata(metadata)))
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
    header = decode_header(sections[HEAD], version)
    metadata = decode_metadata(sections[META]) if META in sections else {}
    return Container(header, sections[WGTS], metadata, sizes, sections.get(CORR))


# ------------------------------------------------------------------ metadata
def encode_metadata(metadata: dict) -> bytes:
    """A file's metadata (name -> bytes, or anything `str` writes) as a META section's payload."""
    parts = []
    for name, value in metadata.items():
        value = value if isinstance(value, bytes) else str(value).encode()
        key = name.encode()
        parts += [varint(len(key)), key, varint(len(value)), value]
    return zlib.compress(b"".join(parts), 9)


def decode_metadata(payload: bytes) -> dict:
    """The metadata `encode_metadata` wrote, values as bytes; a one-line error for anything else."""
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
