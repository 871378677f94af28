"""`TincCodec`: array -> .tinc bytes -> array, in the style of a numcodecs codec.

The codec holds its configuration and nothing else; `encode` hands the array to the
encoder (`tinc.encoder`), or to a search over ratios (`tinc.target`) for a target PSNR or
a bound without a ratio, and `decode` to the decoder. Decoding needs nothing but the bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from . import encoder, target
from .config import TincConfig
from .decoder import Decoder
from .encoder import EncodeReport, LearnedStart
from .format import MAX_DECODE_VOXELS
from .values import check_array


class TincCodec:
    """Compress N-D arrays with a tree of sine networks. `TincCodec(ratio=64, levels=2)`."""

    codec_id = "tinc"

    def __init__(self, ratio: float | None = None, **options):
        """`ratio` defaults to 64, or with a `max_error` alone to a search for the smallest file."""
        self.config = TincConfig.from_options(ratio=ratio, **options)
        self.report = EncodeReport()
        """What happened during the last `encode`."""

    def get_config(self) -> dict:
        values = {k: _jsonable(v) for k, v in dataclasses.asdict(self.config).items()}
        return {"id": self.codec_id, **values}

    @classmethod
    def from_config(cls, config: dict) -> "TincCodec":
        options = dict(config)
        options.pop("id", None)
        return cls(**options)

    def __repr__(self) -> str:
        return f"TincCodec(ratio={self.config.ratio})"

    def encode(self, array, metadata: dict | None = None, starts: Sequence[LearnedStart] = ()) -> bytes:
        """The `.tinc` bytes; a fit whose plan has the signature of one of `starts` begins from its weights."""
        config = self.config
        original = check_array(array)
        if config.target_psnr is not None:
            data, self.report = target.compress_to_psnr(original, config, metadata, starts)
        elif config.ratio is None:
            data, self.report = target.smallest_file(original, config, metadata, starts)
        else:
            data, self.report = encoder.encode(original, config, metadata, starts)
        return data

    def decode(self, data, out=None, max_voxels: int = MAX_DECODE_VOXELS) -> np.ndarray:
        """The array; a file declaring more than `max_voxels` elements is refused unread (a
        chunk codec passes the chunk's size, so a forged chunk cannot claim a huge array)."""
        array, _ = self.decode_with_metadata(data, max_voxels)
        if out is not None:
            out[...] = array
            return out
        return array

    def decode_with_metadata(self, data, max_voxels: int = MAX_DECODE_VOXELS) -> tuple[np.ndarray, dict]:
        decoder = Decoder(data, device=self.config.device, max_voxels=max_voxels)
        return decoder.decode(), decoder.metadata


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value
