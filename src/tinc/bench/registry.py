"""The benchmarked codecs by name."""

from __future__ import annotations

from ..errors import TincConfigError
from .base import Codec
from .classic import Jpeg2000Codec, JpegXlCodec, SperrCodec, Sz3Codec, ZfpAccuracyCodec, ZfpCodec
from .neural import SirenAdapter, TincAdapter, TincReferenceAdapter
from .video import H264Codec, HevcCodec

CODECS: dict[str, type[Codec]] = {
    c.name: c
    for c in (
        SperrCodec, Sz3Codec, ZfpCodec, ZfpAccuracyCodec, Jpeg2000Codec, JpegXlCodec,
        HevcCodec, H264Codec, TincAdapter, TincReferenceAdapter, SirenAdapter,
    )
}


def make_codec(name: str, time_limit: float | None = None, steps: int | None = None) -> Codec:
    """The adapter named `name` (TincConfigError listing the valid names if unknown).

    `time_limit` and `steps` bound the training of the tinc adapters; others ignore them.
    """
    cls = CODECS.get(name)
    if cls is None:
        raise TincConfigError(f"unknown codec {name!r}; valid: {', '.join(CODECS)}")
    if issubclass(cls, TincAdapter):
        return cls(time_limit=time_limit, steps=steps)
    return cls()


def parse_codecs(text: str) -> list[str]:
    """Codec names from a comma-separated list, or every codec for `all`."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return list(CODECS)
    if not names:
        raise TincConfigError("no codecs given")
    unknown = [n for n in names if n not in CODECS]
    if unknown:
        raise TincConfigError(f"unknown codec {unknown[0]!r}; valid: {', '.join(CODECS)} (or all)")
    return list(dict.fromkeys(names))
