"""`tinc` as a chunk codec: Zarr v3 (array -> bytes) and numcodecs (Zarr v2, generic registry).

Each chunk becomes its own `.tinc` container, fitted with the codec's configuration, so any
Zarr reader with tinc installed reads an array lazily: `zarr.open(path)[a:b, ...]` decodes
only the chunks it touches. Both classes are found by name through entry points
(`zarr.codecs` and `numcodecs.codecs`, declared in pyproject.toml).

`halo`: the stored tree covers the chunk plus `halo` voxels on each side of every spatial
axis (or `halo[axis]` voxels, one entry per axis), cropped on decode. `tinc.chunked` fills the halo with the neighbouring voxels, so a
chunk's border voxels are fitted in the middle of its tree's domain rather than at its edge
(measured in benchmarks/RESULTS-ARCHIVE.md, section 7); a chunk written through Zarr itself
has no neighbours at hand and its halo repeats the chunk's edge voxels. The budget is taken
from the chunk, not the halo: a chunk's bytes are at most its raw bytes / ratio.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numcodecs.abc import Codec
from zarr.abc.codec import ArrayBytesCodec
from zarr.core.common import parse_named_configuration

from .codec import TincCodec
from .encoder import EncodeReport, LearnedStart
from .format import MAX_DECODE_VOXELS, SUPPORTED_KINDS
from .errors import TincFormatError, TincInputError

if TYPE_CHECKING:
    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer, NDBuffer

CODEC_NAME = "tinc"

# How a fit runs, not what it makes: left out of the stored configuration (zarr.json, .zarray),
# so a store opens on any machine and two runs differing only in these are one setting.
RUNTIME_FIELDS = ("device", "quiet", "checkpoint", "checkpoint_every")

# One fit at a time per process: Zarr encodes chunks on a thread pool, and concurrent fits
# would only fight over the same cores (torch already uses all of them for one fit).
_FIT_LOCK = threading.Lock()


class TincNumcodec(Codec):
    """numcodecs codec: `encode(chunk) -> .tinc bytes`, `decode(bytes) -> chunk`.

    Options are those of `tinc.TincConfig` (ratio, levels, steps, time_limit, seed, ...)
    plus `halo`. Progress output is always off: a chunk codec runs inside other programs.
    """

    codec_id = CODEC_NAME

    def __init__(self, halo: int | Sequence[int] = 0, **options: Any):
        values = [halo] if isinstance(halo, (int, np.integer)) else list(halo)
        if not values or any(not isinstance(h, (int, np.integer)) or h < 0 for h in values):
            raise TincInputError(f"halo must be a non-negative integer or one per axis, got {halo!r}")
        self.halo: int | list[int] = int(halo) if isinstance(halo, (int, np.integer)) else [int(h) for h in halo]
        if options.get("ratio") is not None:  # 32 and 32.0 are one setting: keep the stored configuration canonical
            options["ratio"] = float(options["ratio"])
        self.tinc = TincCodec(**{**options, "quiet": True})

    def get_config(self) -> dict:
        """The configuration stored with an array: everything but `RUNTIME_FIELDS`."""
        stored = {k: v for k, v in self.tinc.get_config().items() if k not in RUNTIME_FIELDS}
        return {**stored, "halo": self.halo}

    def runtime_options(self) -> dict:
        """The `RUNTIME_FIELDS` this codec runs with, which `get_config` leaves out."""
        config = self.tinc.get_config()
        return {k: config[k] for k in RUNTIME_FIELDS}

    @classmethod
    def from_config(cls, config: dict) -> "TincNumcodec":
        options = dict(config)
        options.pop("id", None)
        return cls(**options)

    def __repr__(self) -> str:
        return f"TincNumcodec(ratio={self.tinc.config.ratio}, halo={self.halo})"

    def halo_per_axis(self, ndim: int) -> tuple[int, ...]:
        """Voxels of halo on each side of each axis; none on the channel axis."""
        if isinstance(self.halo, list):
            if len(self.halo) != ndim:
                raise TincInputError(f"halo {self.halo} has {len(self.halo)} entries; the chunk has {ndim} axes")
            return tuple(self.halo)
        channel = self.tinc.config.channel_axis
        return tuple(0 if channel is not None and a == channel % ndim else self.halo for a in range(ndim))

    def encode(self, buf) -> bytes:
        """Compress one chunk; the halo, if any, repeats the chunk's edge voxels."""
        chunk = np.asarray(buf)
        halo = self.halo_per_axis(chunk.ndim)
        return self.encode_with_halo(np.pad(chunk, [(h, h) for h in halo], mode="edge") if any(halo) else chunk)[0]

    def encode_with_halo(self, region: np.ndarray, starts: Sequence[LearnedStart] = ()) -> tuple[bytes, EncodeReport]:
        """Compress a chunk given with its halo of context on each side (`halo_per_axis`),
        from the one of `starts` its plan matches, if any; the bytes and what happened."""
        region = np.asarray(region)
        halo = self.halo_per_axis(region.ndim)
        chunk_size = math.prod(s - 2 * h for s, h in zip(region.shape, halo))
        if any(s <= 2 * h for s, h in zip(region.shape, halo)):
            raise TincInputError(f"region {region.shape} is not larger than its halo {halo} on every axis")
        # the halo's voxels come on top of the chunk's budget: scale the ratio by the volume
        ratio = self.tinc.config.ratio
        ratio = None if ratio is None else ratio * region.size / chunk_size  # None: a max_error's search
        inside = region[tuple(slice(h, s - h) for s, h in zip(region.shape, halo))]
        if inside.size and np.all(inside == inside.flat[0]):
            # a constant chunk decodes exactly from a constant region, which needs no fit (`tinc.encoder`)
            region = np.full_like(region, inside.flat[0])
        options = {k: v for k, v in self.tinc.get_config().items() if k != "id"}
        codec = TincCodec(**{**options, "ratio": ratio})
        with _FIT_LOCK:
            data = codec.encode(region, starts=starts)
        return data, codec.report

    def decode(self, buf, out=None, chunk_shape: Sequence[int] | None = None) -> np.ndarray:
        """The chunk: the decoded tree without its halo. The chunk's shape (`chunk_shape`, or
        that of a shaped `out`) bounds the array a forged chunk may declare, before decoding;
        a smaller tree (an edge chunk fitted on the voxels inside the array) is padded to it."""
        if chunk_shape is None and out is not None and np.ndim(out) > 1:
            chunk_shape = np.shape(out)
        max_voxels = MAX_DECODE_VOXELS
        if chunk_shape is not None:
            max_voxels = math.prod(s + 2 * h for s, h in zip(chunk_shape, self.halo_per_axis(len(chunk_shape))))
        array = self.tinc.decode(_as_bytes(buf), max_voxels=max_voxels)
        halo = self.halo_per_axis(array.ndim)
        if any(s <= 2 * h for s, h in zip(array.shape, halo)):
            raise TincFormatError(f"chunk of shape {array.shape} is not larger than the codec's halo {halo}")
        array = array[tuple(slice(h, s - h) for s, h in zip(array.shape, halo))]
        if chunk_shape is not None and array.shape != tuple(chunk_shape) and len(chunk_shape) == array.ndim \
                and all(a <= c for a, c in zip(array.shape, chunk_shape)):
            # an edge chunk fitted on the voxels inside the array: what lies outside is never read
            array = np.pad(array, [(0, c - a) for a, c in zip(array.shape, chunk_shape)], mode="edge")
        if out is not None:
            out = np.asarray(out)
            if out.size != array.size:
                raise TincFormatError(f"decoded chunk has {array.size} elements, the output buffer {out.size}")
            out.reshape(array.shape)[...] = array
            return out
        return array


@dataclass(frozen=True)
class TincZarrCodec(ArrayBytesCodec):
    """Zarr v3 array-to-bytes codec `tinc`: `zarr.create_array(..., serializer=TincZarrCodec(ratio=64))`.

    The configuration stored in `zarr.json` is the `TincNumcodec` configuration, so a reader
    rebuilds the codec that wrote the array; runtime fields given here (`RUNTIME_FIELDS`:
    device, ...) apply to this instance only and are neither stored nor compared.
    """

    is_fixed_size = False
    configuration: str  # canonical JSON: the dataclass stays hashable, as Zarr's codecs are
    runtime: str = field(default="{}", compare=False)  # JSON of the runtime fields given

    def __init__(self, **configuration: Any):
        codec = TincNumcodec.from_config(configuration)  # validates before anything is written
        config = {k: v for k, v in codec.get_config().items() if k != "id"}
        runtime = {k: v for k, v in configuration.items() if k in RUNTIME_FIELDS}
        object.__setattr__(self, "configuration", json.dumps(config, sort_keys=True))
        object.__setattr__(self, "runtime", json.dumps(runtime, sort_keys=True))

    @property
    def codec(self) -> TincNumcodec:
        return TincNumcodec.from_config({**json.loads(self.configuration), **json.loads(self.runtime)})

    @classmethod
    def from_dict(cls, data: dict) -> "TincZarrCodec":
        _, configuration = parse_named_configuration(data, CODEC_NAME, require_configuration=False)
        # stores written before runtime fields were left out hold the writer's: not this reader's
        return cls(**{k: v for k, v in (configuration or {}).items() if k not in RUNTIME_FIELDS})

    def to_dict(self) -> dict:
        return {"name": CODEC_NAME, "configuration": json.loads(self.configuration)}

    def validate(self, *, shape, dtype, chunk_grid) -> None:
        native = dtype.to_native_dtype()
        if native.kind not in SUPPORTED_KINDS or native.itemsize > 8:
            raise TincInputError(f"the tinc codec compresses integer or floating point data, not {native}")

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError("tinc chunks vary in size")

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        data = await asyncio.to_thread(self.codec.encode, chunk_array.as_numpy_array())
        return chunk_spec.prototype.buffer.from_bytes(data)

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        array = await asyncio.to_thread(self.codec.decode, chunk_bytes.to_bytes(), chunk_shape=tuple(chunk_spec.shape))
        expected = chunk_spec.dtype.to_native_dtype()
        if array.shape != tuple(chunk_spec.shape) or array.dtype.newbyteorder("=") != expected.newbyteorder("="):
            raise TincFormatError(f"tinc chunk holds {array.shape} {array.dtype}, the array expects {tuple(chunk_spec.shape)} {expected}")
        return chunk_spec.prototype.nd_buffer.from_numpy_array(array.astype(expected, copy=False))


def _as_bytes(buf) -> bytes:
    if isinstance(buf, bytes):
        return buf
    return np.ascontiguousarray(np.asarray(buf)).view(np.uint8).tobytes()
