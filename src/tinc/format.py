"""The decoder's contract: the typed header, its bytes (the HEAD section), its checks, and
the model a header and its coded weights describe.

Every byte counts against the budget at high ratios, hence varints and a binary header
rather than JSON. Nothing here depends on how a file was encoded: decoding imports this
module, never the configuration or the training.
"""

from __future__ import annotations

import dataclasses
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from . import coding
from .bitstream import Reader, unzigzag, varint, zigzag
from .errors import TincFormatError
from .model import TreeINR
from .nodes import SINE_MLP, node_kind
from .partition import TreeLayout
from .tree import TreePlan

FORMAT_VERSION = 4
SUPPORTED_KINDS = "uif"  # unsigned, signed integers and floats; bool, complex, object are not data
MAX_SPATIAL_DIMS = 4
MAX_DECODE_VOXELS = 1 << 32  # 16 GiB of float32; larger outputs need streaming decode
MAX_WIDTH = 4096
MAX_LAYERS = 16
_MAX_NODES_LISTED = 1 << 20

# HEAD flags. A node kind other than the sine MLP is one byte after the widths: files of
# the sine MLP, every file before kinds existed, read as they always did, and a reader that
# predates the flag meets a trailing byte and refuses the file rather than misread it.
_CHANNELS, _VALUE_RANGE, _W0, _INTEGER_RANGE, _NODE_KIND = 1, 2, 4, 8, 16
DEFAULT_VALUE_RANGE = (-1.0, 1.0)
DEFAULT_W0 = 30.0


@dataclass
class Header:
    """What a file says about its array and its tree (the HEAD section, typed)."""

    shape: list[int]
    dtype: str
    """numpy's dtype string, e.g. "<u2"."""
    channel_axis: int | None
    range: list[float]
    """The data's minimum and maximum."""
    value_range: list[float] = field(default_factory=lambda: list(DEFAULT_VALUE_RANGE))
    """The range the networks were fitted in."""
    w0: float = DEFAULT_W0
    splits: list[list[int]] = field(default_factory=list)
    layers: list[int] = field(default_factory=list)
    widths: list = field(default_factory=list)
    """Per level, one width for all its nodes, or a list of one per node."""
    format_version: int = FORMAT_VERSION
    node_kind: int = SINE_MLP

    @classmethod
    def of(cls, header: "Header | Mapping") -> "Header":
        """`header`, or a mapping of its fields (e.g. from a test or a fuzzer) as a Header."""
        if isinstance(header, Header):
            return header
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in header.items() if k in names})

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    # also a read-only mapping of its fields, so `{**header, "shape": ...}` forges a variant
    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]

    def __getitem__(self, name: str):
        return getattr(self, name)


def make_header(original: np.ndarray, plan: TreePlan, channel_axis: int | None, value_range: tuple[float, float],
                w0: float, low: float, high: float) -> Header:
    return Header(
        shape=list(original.shape),
        dtype=original.dtype.str,
        channel_axis=channel_axis,
        range=[low, high],
        value_range=list(value_range),
        w0=w0,
        splits=[list(s) for s in plan.layout.splits],
        layers=list(plan.layers),
        widths=[int(w[0]) if np.all(w == w[0]) else [int(x) for x in w] for w in plan.widths],
        node_kind=plan.node_kind,
    )


# ------------------------------------------------------------------ bytes
def encode_header(header: Header | Mapping) -> bytes:
    """The tree description in a few dozen bytes (see `decode_header` for the fields)."""
    header = Header.of(header)
    shape, channel_axis = header.shape, header.channel_axis
    low, high = header.range
    value_range = tuple(header.value_range)
    w0 = header.w0
    integer_range = all(float(v).is_integer() and abs(v) < 2**53 for v in (low, high))
    flags = ((channel_axis is not None) * _CHANNELS | (value_range != DEFAULT_VALUE_RANGE) * _VALUE_RANGE
             | (w0 != DEFAULT_W0) * _W0 | integer_range * _INTEGER_RANGE | (header.node_kind != SINE_MLP) * _NODE_KIND)
    dtype = header.dtype.encode("ascii")
    out = [bytes([flags, len(shape)]), *(varint(s) for s in shape), bytes([len(dtype)]), dtype]
    if channel_axis is not None:
        out.append(struct.pack("<b", channel_axis))
    out.append(varint(zigzag(int(low))) + varint(zigzag(int(high))) if integer_range else struct.pack("<dd", low, high))
    if flags & _VALUE_RANGE:
        out.append(struct.pack("<dd", *value_range))
    if flags & _W0:
        out.append(struct.pack("<d", w0))
    splits = header.splits
    out.append(bytes([len(splits)]))
    out += [bytes([sum(1 << axis for axis, s in enumerate(split) if s == 2)]) for split in splits]
    out.append(bytes(header.layers))
    for widths in header.widths:
        if isinstance(widths, int):
            out.append(b"\x00" + varint(widths))
        else:
            out.append(b"\x01" + b"".join(varint(w) for w in widths))
    if flags & _NODE_KIND:
        out.append(bytes([header.node_kind]))
    return b"".join(out)


def decode_header(payload: bytes, version: int = FORMAT_VERSION) -> Header:
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
    kind = reader.byte() if flags & _NODE_KIND else SINE_MLP
    if not reader.done():
        raise TincFormatError("invalid .tinc header (trailing bytes)")
    return Header(shape, dtype, channel_axis, [low, high], value_range, w0, splits, layers, widths, version, kind)


# ------------------------------------------------------------------ checks
def plan_from_header(header: Header | Mapping, max_voxels: int = MAX_DECODE_VOXELS) -> TreePlan:
    """Rebuild the tree from a decoded header, checking every field before allocating.

    An output of more than `max_voxels` elements is refused before anything is allocated;
    a caller that expects bigger arrays opts in with a higher `max_voxels`."""
    try:
        header = Header.of(header)
        shape = [int(s) for s in header.shape]
        # numpy parses far more than dtype strings (subarrays, records) and raises whatever it
        # likes on the rest: only what the encoder writes, e.g. "<u2", "|u1", ">f4", reaches it
        if not re.fullmatch(r"[<>|=][uif][1248]", header.dtype):
            raise ValueError(f"dtype {header.dtype!r}")
        dtype = np.dtype(header.dtype)
        channel_axis = header.channel_axis
        splits = tuple(tuple(int(x) for x in s) for s in header.splits)
        layers = tuple(int(n) for n in header.layers)
        width_spec = header.widths
        low, high = (float(v) for v in header.range)
        a, b = (float(v) for v in header.value_range)
        w0 = float(header.w0)
        version = int(header.format_version)
    except (KeyError, TypeError, ValueError) as error:
        raise TincFormatError(f"invalid .tinc header ({error})") from None
    if dtype.kind not in SUPPORTED_KINDS or dtype.itemsize > 8:
        raise TincFormatError(f"invalid .tinc header (dtype {dtype})")
    if not shape or any(s < 1 for s in shape) or len(shape) > MAX_SPATIAL_DIMS + 1:
        raise TincFormatError(f"invalid .tinc header (shape {shape})")
    if channel_axis is not None and (not isinstance(channel_axis, int) or not -len(shape) <= channel_axis < len(shape)):
        raise TincFormatError(f"invalid .tinc header (channel axis {channel_axis})")
    voxels = math.prod(shape)
    if voxels > max_voxels:
        raise TincFormatError(f"the .tinc header declares {voxels} elements, more than the {max_voxels} allowed "
                              "(pass max_voxels= or --max-voxels to decode more)")
    if channel_axis is None:
        spatial, channels = tuple(shape), 1
    else:
        spatial = tuple(s for i, s in enumerate(shape) if i != channel_axis % len(shape))
        channels = shape[channel_axis]
    _check_ranges(dtype, low, high, a, b, w0)
    layout = _checked_layout(spatial, splits)
    if len(layers) != layout.depth + 1 or any(not 1 <= n <= MAX_LAYERS for n in layers):
        raise TincFormatError("invalid .tinc header (layers)")
    widths = _checked_widths(layout, width_spec)
    node_kind(header.node_kind)  # a kind this tinc knows, or a TincFormatError naming it
    return TreePlan(layout, layers, widths, channels, singleton_inputs=version < 2, node_kind=header.node_kind)


def _check_ranges(dtype: np.dtype, low: float, high: float, a: float, b: float, w0: float) -> None:
    if not all(np.isfinite([low, high, a, b, w0, high - low, b - a])) or low > high or a >= b:
        raise TincFormatError("invalid .tinc header (value ranges)")
    limits = np.iinfo(dtype) if dtype.kind in "ui" else np.finfo(dtype)
    # the range is the data's minimum and maximum: values of the dtype, as the restored values must be
    exact = (lambda v: v.is_integer()) if dtype.kind in "ui" else (lambda v: float(dtype.type(v)) == v)
    if low < float(limits.min) or high > float(limits.max) or not (exact(low) and exact(high)):
        raise TincFormatError(f"invalid .tinc header (range {low:g}..{high:g} does not fit {dtype})")


def _checked_layout(spatial: tuple[int, ...], splits: tuple[tuple[int, ...], ...]) -> TreeLayout:
    if any(len(s) != len(spatial) or any(x not in (1, 2) for x in s) for s in splits) or len(splits) > 12:
        raise TincFormatError("invalid .tinc header (tree splits)")
    layout = TreeLayout(spatial, splits)
    if layout.leaves > 1 << 20 or any(g > s for g, s in zip(layout.grid, spatial)):
        raise TincFormatError("invalid .tinc header (tree larger than the array)")
    return layout


def _checked_widths(layout: TreeLayout, width_spec) -> tuple[np.ndarray, ...]:
    if not isinstance(width_spec, list) or len(width_spec) != layout.depth + 1:
        raise TincFormatError("invalid .tinc header (widths)")
    widths = []
    for count, spec in zip(layout.nodes_per_level, width_spec):
        values = [spec] * count if isinstance(spec, int) else spec
        if len(values) != count or any(not isinstance(w, int) or not 1 <= w <= MAX_WIDTH for w in values):
            raise TincFormatError("invalid .tinc header (widths)")
        widths.append(np.asarray(values, dtype=np.int64))
    return tuple(widths)


def check_model_size(plan: TreePlan, weight_bytes: int) -> None:
    """Refuse a tree bigger than any encoder output with `weight_bytes` of weights, before
    its networks are allocated. The encoder sizes a tree at budget x 8 / weight_bits <= 4 x
    budget parameters and fills at least 90% of the budget, or codes each weight in > 1 byte;
    TreeINR stores each level zero-padded to its widest node, which per-node shares clipped
    to 4x the mean keep within a small factor of the real count."""
    real = plan.params
    padded = sum(len(w) * int(w.max()) * (int(w.max()) + plan.layout.ndim + plan.channels + 2) * n
                 for w, n in zip(plan.widths, plan.layers))
    if real > 8 * weight_bytes + (1 << 16) or padded > 64 * weight_bytes + (1 << 20):
        raise TincFormatError(f"the .tinc header declares {real} network parameters, more than {weight_bytes} bytes of weights can hold")


# ------------------------------------------------------------------ the model
def build_model(header: Header, weights: bytes, device: torch.device,
                max_voxels: int = MAX_DECODE_VOXELS) -> tuple[TreePlan, TreeINR]:
    """The tree a header describes, with its coded `weights` decoded, on `device`."""
    plan = plan_from_header(header, max_voxels)
    check_model_size(plan, len(weights))
    model = TreeINR(plan, w0=header.w0)
    tensors = model.tensors()
    values = coding.decode(weights, [int(mask.sum()) for _, _, mask in tensors], model.bias_runs())
    if not all(np.isfinite(v).all() for v in values):
        raise TincFormatError("the .tinc weights are not finite numbers: the file is corrupted")
    padded = []
    for (_, template, mask), flat in zip(tensors, values):
        full = np.zeros(template.shape, dtype=np.float32)
        full[mask] = flat
        padded.append(full)
    model.load_tensors(padded)
    return plan, model.to(device)
