"""`tinc bench`: rate–distortion sweeps of tinc against traditional codecs.

For every (input, codec, target ratio) the codec's quality setting is searched by bisection
for the best fidelity whose actual ratio (raw bytes / compressed bytes, raw = elements x
itemsize) is at least the target. tinc codecs take the ratio directly (no search). Metrics
are `tinc.metrics` (the same as `tinc eval`). Outputs in the chosen folder: results.csv,
results.md, rd.png (PSNR and SSIM against ratio) and slices.png (a middle slice per codec
with its error map).

Codec adapters share one small interface (`Codec`): `encode(array, quality) -> bytes`,
`decode(bytes, shape, dtype) -> array`, and `quality_range(array) -> (best, smallest)`:
the setting of best fidelity (largest files) and the one giving the smallest files, which
tells the search which way makes files smaller.
"""

from __future__ import annotations

import argparse
import csv
import fractions
import importlib.util
import math
import os
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .errors import TincConfigError, TincInputError

CSV_COLUMNS = ("input", "codec", "target_ratio", "actual_ratio", "psnr", "psnr_range", "ssim", "encode_s", "decode_s")
DEFAULT_CODECS = "sperr,sz3,zfp,jpeg2000,jpegxl,hevc,h264,tinc"
DEFAULT_RATIOS = "64,128,256,512"


# ============================================================================ search
@dataclass
class SearchResult:
    """Outcome of `bisect_quality`: the chosen setting (None: target unreachable)."""

    quality: float | None
    ratio: float | None
    max_ratio: float | None
    """Largest ratio any evaluated setting reached (None when every evaluation failed)."""
    evaluations: list[tuple[float, float | None]] = field(default_factory=list)
    """(quality, ratio) in evaluation order; ratio None where the codec failed."""


def bisect_quality(
    measure: Callable[[float], float | None],
    target: float,
    best: float,
    smallest: float,
    *,
    log: bool = True,
    integer: bool = False,
    grid: int = 5,
    max_evals: int = 18,
    tol: float = 1e-3,
    rtol: float = 2e-3,
    score: Callable[[float], float] | None = None,
    n_score: int = 3,
) -> SearchResult:
    """Find the setting of best fidelity whose ratio `measure(q)` is >= `target`.

    `best` is the setting of best fidelity (largest output), `smallest` the one giving the
    smallest output; the search runs on u in [0, 1] between them (log-spaced when `log`).
    A coarse grid of `grid` points first (robust to codecs whose size is not monotone at the
    extremes), then bisection between the feasible grid point closest to `best` and its
    infeasible neighbour, until the bracket is narrower than `tol` (in u), the ratio is
    within `rtol` above the target, or `max_evals` evaluations were made. With `score`
    (higher is better, e.g. PSNR), the `n_score` feasible settings closest to `best` are
    scored and the best one is chosen; otherwise the feasible setting closest to `best`.
    """
    if log and (best <= 0 or smallest <= 0):
        raise ValueError("log-scaled quality ranges must be positive")

    def q_of(u: float) -> float:
        if log:
            q = math.exp(math.log(best) + u * (math.log(smallest) - math.log(best)))
        else:
            q = best + u * (smallest - best)
        return float(round(q)) if integer else q

    cache: dict[float, float | None] = {}
    order: list[tuple[float, float | None]] = []
    position: dict[float, float] = {}

    def ev(u: float) -> float | None:
        q = q_of(u)
        position.setdefault(q, u)
        if q not in cache:
            cache[q] = measure(q)
            order.append((q, cache[q]))
        return cache[q]

    def ok(r: float | None) -> bool:
        return r is not None and r >= target

    grid = max(2, grid)
    us = [1.0] + [i / (grid - 1) for i in range(grid - 2, -1, -1)]
    ratios = {u: ev(u) for u in us}
    feasible_u = [u for u in us if ok(ratios[u])]
    reached = [r for r in cache.values() if r is not None]
    max_ratio = max(reached) if reached else None
    if not feasible_u:
        return SearchResult(None, None, max_ratio, order)
    hi = min(feasible_u)
    if hi > 0:
        lo = max(u for u in us if u < hi)
        while len(cache) < max_evals and hi - lo > tol:
            mid = 0.5 * (lo + hi)
            if integer and q_of(mid) in (q_of(lo), q_of(hi)):
                break
            r = ev(mid)
            if ok(r):
                hi = mid
                if r <= target * (1 + rtol):
                    break
            else:
                lo = mid
    feasible = sorted((q for q, r in cache.items() if ok(r)), key=lambda q: position[q])
    chosen = q_of(hi)
    if score is not None and len(feasible) > 1:
        candidates = feasible[: max(1, n_score)]
        scores = {q: score(q) for q in candidates}
        chosen = max(candidates, key=lambda q: (scores[q], -position[q]))
    reached = [r for r in cache.values() if r is not None]
    return SearchResult(chosen, cache[chosen], max(reached), order)


# ============================================================================ helpers
def _squeezed(shape: Sequence[int]) -> tuple[int, ...]:
    s = tuple(int(n) for n in shape if n != 1)
    return s if s else (1,)


def _work_float(dtype: np.dtype) -> type:
    """float32 where it holds the values exactly (<= 16-bit integers, float16/32), else float64."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iub" and dtype.itemsize <= 2:
        return np.float32
    if dtype.kind == "f" and dtype.itemsize <= 4:
        return np.float32
    return np.float64


def _restore(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round and clip back to an integer dtype; cast for floating point."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values.astype(np.float64)), info.min, info.max).astype(dtype)
    if dtype.kind == "b":
        return np.asarray(values) >= 0.5
    return np.asarray(values).astype(dtype)


def _span(x: np.ndarray) -> tuple[float, float]:
    lo, hi = (float(np.min(x)), float(np.max(x))) if x.size else (0.0, 0.0)
    return lo, hi


def _data_range(x: np.ndarray) -> float:
    lo, hi = _span(x)
    return hi - lo if hi > lo else 1.0


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pack_chunks(chunks: Sequence[bytes]) -> bytes:
    """Concatenate byte strings, each preceded by its length as a LEB128 varint."""
    return b"".join(_varint(len(c)) + bytes(c) for c in chunks)


def unpack_chunks(data: bytes) -> list[bytes]:
    chunks, pos, view = [], 0, memoryview(data)
    while pos < len(view):
        n = shift = 0
        while True:
            byte = view[pos]
            pos += 1
            n |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        chunks.append(bytes(view[pos : pos + n]))
        pos += n
    return chunks


_MAP = struct.Struct("<Bdd")


def _to_uint(x: np.ndarray, bits: int) -> tuple[np.ndarray, bytes]:
    """Integers of `bits` bits for an image/video codec, and a header to undo the mapping.

    Integer data whose span fits is only offset (exact); other data is scaled from its
    min/max onto [0, 2**bits - 1].
    """
    lo, hi = _span(x)
    top = (1 << bits) - 1
    if x.dtype.kind in "iub" and hi - lo <= top:
        offset, scale = lo, 1.0
    else:
        offset, scale = lo, ((hi - lo) / top if hi > lo else 1.0)
    q = np.rint((x.astype(np.float64) - offset) / scale)
    q = np.clip(q, 0, top).astype(np.uint8 if bits <= 8 else np.uint16)
    return q, _MAP.pack(bits, offset, scale)


def _from_uint(q: np.ndarray, header: bytes) -> np.ndarray:
    _, offset, scale = _MAP.unpack(header[: _MAP.size])
    return q.astype(np.float64) * scale + offset


def _needed_bits(x: np.ndarray) -> int:
    """Bits an integer array's span needs (floats: 64, i.e. 'as many as possible')."""
    if x.dtype.kind not in "iub":
        return 64
    lo, hi = _span(x)
    return max(1, int(hi - lo).bit_length())


def _plane_axes(shape: tuple[int, ...]) -> tuple[int, int]:
    """The two axes forming 2-D images: the last two (slices along the leading axes), unless
    one of them is too short for an image (< 16, e.g. the time axis of a NIfTI series), then
    the two longest axes."""
    if len(shape) < 2:
        raise ValueError("need at least 2 axes")
    last = (len(shape) - 2, len(shape) - 1)
    if len(shape) == 2 or min(shape[-2:]) >= 16:
        return last
    order = sorted(range(len(shape)), key=lambda a: (-shape[a], -a))[:2]
    return (min(order), max(order))


def _to_frames(x: np.ndarray) -> np.ndarray:
    """(n, H, W) stack of 2-D images from an N-D array (1-D: one image row)."""
    x = x.reshape(_squeezed(x.shape))
    if x.ndim == 1:
        return x.reshape(1, 1, -1)
    a, b = _plane_axes(x.shape)
    rest = [i for i in range(x.ndim) if i not in (a, b)]
    moved = np.transpose(x, rest + [a, b])
    return np.ascontiguousarray(moved.reshape(-1, x.shape[a], x.shape[b]))


def _from_frames(frames: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    sq = _squeezed(shape)
    if len(sq) == 1:
        return frames.reshape(shape)
    a, b = _plane_axes(sq)
    rest = [i for i in range(len(sq)) if i not in (a, b)]
    perm = rest + [a, b]
    moved = frames.reshape([sq[i] for i in perm])
    return np.transpose(moved, np.argsort(perm)).reshape(shape)


# ============================================================================ codecs
class Codec:
    """A codec adapter. `quality` is the codec's own knob; see `quality_range`."""

    name = "codec"
    description = ""
    log_scale = True
    """Search the quality on a log scale."""
    integer = False
    """Quality must be an integer."""
    direct = False
    """The quality *is* the target ratio (no search), e.g. tinc."""

    def unavailable(self) -> str | None:
        """None when usable here, else why not (one line)."""
        return None

    def quality_range(self, array: np.ndarray) -> tuple[float, float]:
        """(best-fidelity setting, smallest-output setting) for this array."""
        raise NotImplementedError

    def encode(self, array: np.ndarray, quality: float) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes, shape: tuple[int, ...], dtype) -> np.ndarray:
        raise NotImplementedError


def _imagecodecs_missing(*names: str) -> str | None:
    try:
        import imagecodecs
    except ImportError:
        return "imagecodecs is not installed"
    for name in names:
        codec = getattr(imagecodecs, name.upper(), None)
        if codec is None or not getattr(codec, "available", False):
            return f"imagecodecs has no {name} support in this build"
    return None


class SperrCodec(Codec):
    """SPERR (wavelets + SPECK), 2-D or 3-D; quality = bits per value (BPP mode)."""

    name = "sperr"
    description = "SPERR 3-D wavelet codec (imagecodecs), fixed bits per value"

    def unavailable(self):
        return _imagecodecs_missing("sperr")

    @staticmethod
    def _shape(shape):
        sq = _squeezed(shape)
        if len(sq) == 1:
            return (1,) + sq
        if len(sq) > 3:
            return (int(np.prod(sq[:-2])),) + sq[-2:]
        return sq

    def quality_range(self, array):
        bits = 8.0 * array.dtype.itemsize
        return bits, bits / 1e5

    def encode(self, array, quality):
        import imagecodecs

        x = array.reshape(self._shape(array.shape)).astype(_work_float(array.dtype))
        return bytes(imagecodecs.sperr_encode(x, float(quality), "bpp"))

    def decode(self, data, shape, dtype):
        import imagecodecs

        values = imagecodecs.sperr_decode(data)  # the header holds shape and type
        return _restore(np.asarray(values).reshape(shape), dtype)


class Sz3Codec(Codec):
    """SZ3 (prediction + quantisation), 1-D to 4-D; quality = absolute error bound."""

    name = "sz3"
    description = "SZ3 error-bounded codec (imagecodecs), absolute error bound"

    def unavailable(self):
        return _imagecodecs_missing("sz3")

    @staticmethod
    def _shape(shape):
        sq = _squeezed(shape)
        return ((int(np.prod(sq[:-3])),) + sq[-3:]) if len(sq) > 4 else sq

    def quality_range(self, array):
        rng = _data_range(array)
        best = 0.25 if array.dtype.kind in "iub" else rng * 1e-7
        return min(best, rng * 1e-3), rng * 0.5

    def encode(self, array, quality):
        import imagecodecs

        x = array.reshape(self._shape(array.shape)).astype(_work_float(array.dtype))
        return bytes(imagecodecs.sz3_encode(x, mode="abs", abs=float(quality)))

    def decode(self, data, shape, dtype):
        import imagecodecs

        values = imagecodecs.sz3_decode(data, shape=self._shape(shape), dtype=_work_float(dtype))
        return _restore(np.asarray(values).reshape(shape), dtype)


class ZfpCodec(Codec):
    """ZFP (block transform), 1-D to 4-D; quality = bits per value (fixed-rate mode).

    Fixed rate is the only ZFP mode that reaches high ratios on small volumes (fixed
    accuracy saturates, e.g. ~60x on a 64^3 uint16 volume); `zfp-accuracy` is the other.
    """

    name = "zfp"
    description = "ZFP (imagecodecs), fixed rate in bits per value"
    mode = "rate"

    def unavailable(self):
        return _imagecodecs_missing("zfp")

    @staticmethod
    def _shape(shape):
        sq = _squeezed(shape)
        return ((int(np.prod(sq[:-3])),) + sq[-3:]) if len(sq) > 4 else sq

    def quality_range(self, array):
        bits = 8.0 * np.dtype(_work_float(array.dtype)).itemsize
        return bits, 1e-3

    def encode(self, array, quality):
        import imagecodecs

        x = array.reshape(self._shape(array.shape)).astype(_work_float(array.dtype))
        return bytes(imagecodecs.zfp_encode(x, float(quality), mode=self.mode))

    def decode(self, data, shape, dtype):
        import imagecodecs

        return _restore(np.asarray(imagecodecs.zfp_decode(data)).reshape(shape), dtype)


class ZfpAccuracyCodec(ZfpCodec):
    """ZFP fixed-accuracy mode; quality = absolute error tolerance."""

    name = "zfp-accuracy"
    description = "ZFP (imagecodecs), fixed accuracy (absolute tolerance)"
    mode = "accuracy"

    def quality_range(self, array):
        rng = _data_range(array)
        return rng * 1e-7, rng * 100.0


class Jpeg2000Codec(Codec):
    """JPEG 2000 (OpenJPEG): every 2-D slice a component of one codestream (no inter-component
    transform, so each slice is coded as a 2-D image; one shared header instead of one per
    slice). quality = target PSNR in dB of OpenJPEG's fixed-quality mode."""

    name = "jpeg2000"
    description = "JPEG 2000 (imagecodecs/OpenJPEG), 2-D slices as components, target PSNR"
    log_scale = False
    max_components = 16384

    def unavailable(self):
        return _imagecodecs_missing("jpeg2k")

    def quality_range(self, array):
        return 150.0, 5.0

    def encode(self, array, quality):
        import imagecodecs

        frames = _to_frames(array)
        header = b""
        if frames.dtype not in (np.uint8, np.uint16):
            frames, header = _to_uint(frames, 16)
        chunks = [header]
        for start in range(0, frames.shape[0], self.max_components):
            block = np.ascontiguousarray(np.moveaxis(frames[start : start + self.max_components], 0, -1))
            if block.shape[-1] == 1:
                block = block[..., 0]
            chunks.append(
                imagecodecs.jpeg2k_encode(
                    block, float(quality), codecformat="j2k", colorspace=0, mct=False, reversible=False, planar=False
                )
            )
        return pack_chunks(chunks)

    def decode(self, data, shape, dtype):
        import imagecodecs

        header, *streams = unpack_chunks(data)
        parts = []
        for stream in streams:
            image = np.asarray(imagecodecs.jpeg2k_decode(stream))
            parts.append(image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0))
        frames = np.concatenate(parts)
        values = _from_uint(frames, header) if header else frames
        return _restore(_from_frames(values, tuple(shape)), dtype)


class JpegXlCodec(Codec):
    """JPEG XL (libjxl), one image per 2-D slice; quality = Butteraugli distance."""

    name = "jpegxl"
    description = "JPEG XL (imagecodecs/libjxl), per 2-D slice, Butteraugli distance"

    def unavailable(self):
        return _imagecodecs_missing("jpegxl")

    def quality_range(self, array):
        return 0.02, 25.0

    def encode(self, array, quality):
        import imagecodecs

        frames = _to_frames(array)
        header = b""
        if frames.dtype not in (np.uint8, np.uint16):
            frames, header = _to_uint(frames, 16)
        return pack_chunks([header] + [imagecodecs.jpegxl_encode(f, distance=float(quality)) for f in frames])

    def decode(self, data, shape, dtype):
        import imagecodecs

        header, *streams = unpack_chunks(data)
        frames = np.stack([np.asarray(imagecodecs.jpegxl_decode(s)) for s in streams])
        values = _from_uint(frames, header) if header else frames
        return _restore(_from_frames(values, tuple(shape)), dtype)


def _run_isolated(function, *args):
    """Run `function(*args)` in a forked child: a crash in a native library (libx265 has
    crashed on some frame sizes) becomes an exception instead of killing the benchmark."""
    import multiprocessing

    try:
        context = multiprocessing.get_context("fork")
    except ValueError:  # no fork (Windows, macOS defaults): run in-process
        return function(*args)
    receiver, sender = context.Pipe(duplex=False)

    def child():
        try:
            sender.send((True, function(*args)))
        except BaseException as error:  # noqa: BLE001 - report everything to the parent
            sender.send((False, f"{type(error).__name__}: {error}"))
        finally:
            sender.close()

    process = context.Process(target=child, daemon=True)
    process.start()
    sender.close()
    try:
        while not receiver.poll(0.2):
            if not process.is_alive() and not receiver.poll(0.2):
                raise EOFError
        ok, value = receiver.recv()
    except EOFError:
        process.join()
        raise RuntimeError(f"encoder process died (exit code {process.exitcode})") from None
    finally:
        receiver.close()
    process.join()
    if not ok:
        raise RuntimeError(value)
    return value


class _VideoCodec(Codec):
    """FFmpeg encoders through PyAV: the 2-D slices as the frames of a grey video.

    Data needing more bits than the encoder's deepest grey format are scaled from their
    min/max onto it; the offset and scale are stored in the bytes (17-byte header), so
    decoding restores the original value range. quality = CRF.
    """

    encoder = ""
    decoder = ""
    formats: dict[int, str] = {}
    log_scale = False
    isolate = False
    """Encode in a forked child process (for encoders known to crash)."""
    options = {"preset": "medium", "tune": "psnr"}

    def unavailable(self):
        if importlib.util.find_spec("av") is None:
            return "PyAV is not installed (pip install av)"
        try:
            import av

            av.codec.Codec(self.encoder, "w")
            av.codec.Codec(self.decoder, "r")
        except Exception as error:  # noqa: BLE001
            return f"FFmpeg in PyAV has no {self.encoder}/{self.decoder} ({error})"
        return None

    def quality_range(self, array):
        return 0.0, 51.0

    def _bits(self, frames: np.ndarray) -> int:
        need = _needed_bits(frames)
        for bits in sorted(self.formats):
            if need <= bits:
                return bits
        return max(self.formats)

    def _padded_size(self, h: int, w: int) -> tuple[int, int]:
        return h, w

    def encode(self, array, quality):
        frames = _to_frames(array)
        bits = self._bits(frames)
        q, header = _to_uint(frames, bits)
        h, w = q.shape[1:]
        ph, pw = self._padded_size(h, w)
        if (ph, pw) != (h, w):
            q = np.pad(q, ((0, 0), (0, ph - h), (0, pw - w)), mode="edge")
        args = (self.encoder, self.formats[bits], q, float(quality), dict(self.options))
        stream = _run_isolated(_encode_video, *args) if self.isolate else _encode_video(*args)
        return header + self._strip(stream)

    def _strip(self, stream: bytes) -> bytes:
        return stream

    def decode(self, data, shape, dtype):
        import av

        header, stream = data[: _MAP.size], data[_MAP.size :]
        bits = header[0]
        fmt = self.formats[bits]
        context = av.CodecContext.create(self.decoder, "r")
        images = []
        for packet in list(context.parse(stream)) + list(context.parse(None)):
            images.extend(_frame_array(f, fmt) for f in context.decode(packet))
        images.extend(_frame_array(f, fmt) for f in context.decode(None))
        frames = np.stack(images)
        sq = _squeezed(tuple(shape))
        n, h, w = _frame_shape(sq)
        frames = frames[:n, :h, :w]
        return _restore(_from_frames(_from_uint(frames, header), tuple(shape)), dtype)


def _frame_shape(sq: tuple[int, ...]) -> tuple[int, int, int]:
    if len(sq) == 1:
        return 1, 1, sq[0]
    a, b = _plane_axes(sq)
    return int(np.prod(sq)) // (sq[a] * sq[b]), sq[a], sq[b]


def _frame_array(frame, fmt: str) -> np.ndarray:
    """The luma plane as decoded. (FFmpeg's H.264 decoder returns grey streams as yuv420p;
    converting those to grey would apply a limited-to-full range conversion.)"""
    plane = frame.planes[0]
    dtype = np.uint8 if fmt == "gray" else np.dtype("<u2")
    rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: frame.height]
    return rows[:, : frame.width * np.dtype(dtype).itemsize].copy().view(dtype)


def _encode_video(encoder: str, fmt: str, frames: np.ndarray, crf: float, options: dict) -> bytes:
    import av

    av.logging.set_level(av.logging.ERROR)
    context = av.CodecContext.create(encoder, "w")
    context.width, context.height = int(frames.shape[2]), int(frames.shape[1])
    context.pix_fmt = fmt
    context.time_base = fractions.Fraction(1, 25)
    options = {k: str(v) for k, v in options.items()}
    options["crf"] = f"{crf:.3f}"
    context.options = options
    out = bytearray()
    for i, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=fmt)
        frame.pts = i
        for packet in context.encode(frame):
            out += bytes(packet)
    for packet in context.encode(None):
        out += bytes(packet)
    return bytes(out)


class HevcCodec(_VideoCodec):
    """HEVC (libx265, preset medium, tune psnr, no encoder-info SEI); grey 8/10/12-bit."""

    name = "hevc"
    description = "HEVC / libx265 via PyAV, slices as grey 8/10/12-bit frames, CRF"
    encoder, decoder = "libx265", "hevc"
    formats = {8: "gray", 10: "gray10le", 12: "gray12le"}
    options = {"preset": "medium", "tune": "psnr", "x265-params": "log-level=error:info=0"}
    isolate = True

    def _padded_size(self, h, w):
        # The libx265 bundled with PyAV rejects frames under 16 pixels and corrupts its heap
        # on widths 33..48: pad (edge values, cropped on decode) around both.
        h, w = max(h, 16), max(w, 16)
        if 32 < w <= 48:
            w = 56
        return h, w


class H264Codec(_VideoCodec):
    """H.264 (libx264, preset medium, tune psnr); grey 8/10-bit. x264's ~600-byte SEI with its
    version and settings is dropped from the stream (it carries no picture data)."""

    name = "h264"
    description = "H.264 / libx264 via PyAV, slices as grey 8/10-bit frames, CRF"
    encoder, decoder = "libx264", "h264"
    formats = {8: "gray", 10: "gray10le"}

    def _strip(self, stream):
        return _drop_h264_sei(stream)


def _drop_h264_sei(stream: bytes) -> bytes:
    """Remove SEI NAL units (type 6) from an H.264 Annex-B byte stream."""
    starts = []
    i = stream.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append(i)
        i = stream.find(b"\x00\x00\x01", i + 3)
    if not starts:
        return stream
    out = bytearray(stream[: starts[0]])
    for k, s in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(stream)
        nal_type = stream[s + 3] & 0x1F if s + 3 < len(stream) else None
        unit = stream[s:end]
        if nal_type != 6:
            out += unit
        elif out.endswith(b"\x00"):  # a 4-byte start code's leading zero belongs to this unit
            del out[-1]
    return bytes(out)


class TincAdapter(Codec):
    """tinc through its Python API; the quality is the target ratio itself."""

    name = "tinc"
    description = "tinc, default configuration"
    direct = True
    preset: dict = {}

    def __init__(self, time_limit: float | None = None, steps: int | None = None, **options):
        """`options`: further `TincConfig` fields, overriding the preset (e.g. batch=4096)."""
        self.time_limit, self.steps, self.extra = time_limit, steps, options

    def unavailable(self):
        try:
            import tinc

            tinc.compress, tinc.decompress  # noqa: B018
        except (ImportError, AttributeError) as error:
            return f"tinc.compress is not importable ({error})"
        return None

    def options(self) -> dict:
        options = dict(self.preset, quiet=True, **self.extra)
        if self.time_limit is not None:
            options["time_limit"] = self.time_limit
        if self.steps is not None:
            options["steps"] = self.steps
        return options

    def quality_range(self, array):
        return 1.0, math.inf

    def encode(self, array, quality):
        import tinc

        return bytes(tinc.compress(array, ratio=float(quality), **self.options()))

    def decode(self, data, shape, dtype):
        import tinc

        out = np.asarray(tinc.decompress(data))
        if out.shape != tuple(shape):
            out = out.reshape(shape)
        return out if out.dtype == np.dtype(dtype) else _restore(out, dtype)


class TincReferenceAdapter(TincAdapter):
    name = "tinc-reference"
    description = "tinc with the authors' published settings (2 levels, 1/.8/1.5, float32 weights, [0,100], adamax)"
    preset = dict(
        levels=2, level_weights=(1.0, 0.8, 1.5), layers=(2, 2, 3), weight_bits=32,
        value_range=(0.0, 100.0), optimizer="adamax", lr=1e-3,
    )


class SirenAdapter(TincAdapter):
    name = "siren"
    description = "one SIREN network (tinc with levels=0, 4 layers)"
    preset = dict(levels=0, layers=4)


CODECS: dict[str, type[Codec]] = {
    c.name: c
    for c in (
        SperrCodec, Sz3Codec, ZfpCodec, ZfpAccuracyCodec, Jpeg2000Codec, JpegXlCodec,
        HevcCodec, H264Codec, TincAdapter, TincReferenceAdapter, SirenAdapter,
    )
}


def make_codec(name: str, time_limit: float | None = None, steps: int | None = None) -> Codec:
    """The adapter named `name` (TincConfigError listing the valid names if unknown)."""
    cls = CODECS.get(name)
    if cls is None:
        raise TincConfigError(f"unknown codec {name!r}; valid: {', '.join(CODECS)}")
    if issubclass(cls, TincAdapter):
        return cls(time_limit=time_limit, steps=steps)
    return cls()


def parse_codecs(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return list(CODECS)
    if not names:
        raise TincConfigError("no codecs given")
    unknown = [n for n in names if n not in CODECS]
    if unknown:
        raise TincConfigError(f"unknown codec {unknown[0]!r}; valid: {', '.join(CODECS)} (or all)")
    return list(dict.fromkeys(names))


def parse_ratios(text: str) -> list[float]:
    try:
        ratios = [float(r) for r in str(text).split(",") if r.strip()]
    except ValueError:
        raise TincConfigError(f"ratios must be comma-separated numbers, got {text!r}") from None
    if not ratios:
        raise TincConfigError("no ratios given")
    bad = [r for r in ratios if not (r > 1 and math.isfinite(r))]
    if bad:
        raise TincConfigError(f"ratios must be finite and > 1, got {bad[0]:g}")
    return list(dict.fromkeys(ratios))


# ============================================================================ inputs
def load_input(name: str) -> np.ndarray:
    """Read an input: a file path, `skimage:NAME` (scikit-image's bundled images) or
    `nibabel:FILE` (nibabel's test data). Singleton axes are dropped."""
    name = str(name)
    check_input(name)
    if name.startswith("skimage:"):
        array = _skimage_sample(name.split(":", 1)[1], name)
    else:
        path = name
        if name.startswith("nibabel:"):
            from nibabel.testing import data_path

            path = os.path.join(data_path, name.split(":", 1)[1])
        array = _read_file(path)
    array = np.asarray(array)
    if array.dtype.kind not in "iuf":
        raise TincInputError(f"{name}: unsupported dtype {array.dtype} (integer or floating point data only)")
    if array.size == 0:
        raise TincInputError(f"{name}: empty array {array.shape}")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise TincInputError(f"{name}: contains NaN or infinite values")
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return np.ascontiguousarray(array.reshape(_squeezed(array.shape)))


def check_input(name: str) -> None:
    """Cheap checks that `load_input(name)` can find its input (TincInputError if not)."""
    name = str(name)
    if name.startswith("skimage:"):
        try:
            import skimage.data
        except ImportError:
            raise TincInputError(f"{name}: scikit-image is not installed") from None
        sample = name.split(":", 1)[1]
        if sample.startswith("_") or not callable(getattr(skimage.data, sample, None)):
            raise TincInputError(f"{name}: scikit-image has no sample image {sample!r}")
        return
    path = name
    if name.startswith("nibabel:"):
        try:
            from nibabel.testing import data_path
        except ImportError:
            raise TincInputError(f"{name}: nibabel is not installed") from None
        path = os.path.join(data_path, name.split(":", 1)[1])
    if not os.path.exists(path):
        raise TincInputError(f"{name}: no such file")
    if os.path.isdir(path):
        raise TincInputError(f"{name}: is a directory")


def _skimage_sample(name: str, label: str) -> np.ndarray:
    try:
        import skimage.data
    except ImportError:
        raise TincInputError(f"{label}: scikit-image is not installed") from None
    loader = getattr(skimage.data, name, None)
    if loader is None or name.startswith("_") or not callable(loader):
        raise TincInputError(f"{label}: scikit-image has no sample image {name!r}")
    try:
        return np.asarray(loader())
    except Exception:  # noqa: BLE001 - samples that need a download are unavailable offline
        raise TincInputError(f"{label}: not bundled with scikit-image (it needs a download)") from None


def _read_file(path: str) -> np.ndarray:
    try:
        from .io import read_with_metadata
    except ImportError:
        read_with_metadata = None
    if read_with_metadata is not None:
        return read_with_metadata(path)[0]
    lower = path.lower()
    try:
        if lower.endswith(".npy"):
            return np.load(path, allow_pickle=False)
        if lower.endswith((".tif", ".tiff")):
            import tifffile

            return tifffile.imread(path)
        if lower.endswith((".nii", ".nii.gz")):
            import nibabel

            return np.asanyarray(nibabel.load(path).dataobj)
    except Exception as error:  # noqa: BLE001
        raise TincInputError(f"{path}: cannot read ({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None
    raise TincInputError(f"{path}: unsupported format (use .npy, .tif, .nii or .nii.gz)")


# ============================================================================ one run
def _empty_row(label: str, codec: str, target: float, status: str, note: str) -> dict:
    row = {c: None for c in CSV_COLUMNS}
    row.update(input=label, codec=codec, target_ratio=target, status=status, note=note,
               quality=None, nbytes=None, compressed=None)
    return row


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def run_one(codec: Codec, array: np.ndarray, target: float, label: str = "", keep: bool = False) -> dict:
    """Compress `array` with `codec` at ratio >= `target` with the best fidelity found.

    Returns a result row (the CSV columns plus status, note, quality, nbytes, compressed and,
    with `keep`, the decoded array under 'reconstruction').
    """
    from . import metrics

    reason = codec.unavailable()
    if reason:
        return _empty_row(label, codec.name, target, "unavailable", f"unavailable: {reason}")
    raw = array.size * array.dtype.itemsize
    shape, dtype = array.shape, array.dtype
    encoded: dict[float, tuple[bytes, float]] = {}
    decoded: dict[float, tuple[np.ndarray, float, float]] = {}
    errors: list[str] = []

    def measure(q: float) -> float | None:
        try:
            t0 = time.perf_counter()
            data = codec.encode(array, q)
            seconds = time.perf_counter() - t0
        except Exception as error:  # noqa: BLE001 - a failing setting counts as infeasible
            errors.append(_one_line(error))
            return None
        ratio = raw / max(1, len(data))
        if ratio >= target:
            encoded[q] = (data, seconds)
        return ratio

    def reconstruct(q: float) -> tuple[np.ndarray, float, float]:
        if q not in decoded:
            t0 = time.perf_counter()
            rec = np.asarray(codec.decode(encoded[q][0], shape, dtype))
            seconds = time.perf_counter() - t0
            decoded.clear()  # keep one reconstruction in memory
            decoded[q] = (rec, seconds, metrics.psnr(array, rec))
        return decoded[q]

    if codec.direct:
        ratio = measure(float(target))
        if ratio is None:
            note = errors[-1] if errors else "failed"
            status = "unreachable" if "TincConfigError" in note else "error"
            return _empty_row(label, codec.name, target, status, f"{status}: {note}")
        if float(target) not in encoded:  # the codec broke its ratio promise
            return _empty_row(label, codec.name, target, "error", f"error: ratio {ratio:.2f} below target")
        quality = float(target)
    else:
        best, smallest = codec.quality_range(array)
        result = bisect_quality(
            measure, target, best, smallest, log=codec.log_scale, integer=codec.integer,
            score=lambda q: reconstruct(q)[2],
        )
        if result.quality is None:
            if result.max_ratio is None:
                return _empty_row(label, codec.name, target, "error", f"error: {errors[-1] if errors else 'failed'}")
            return _empty_row(label, codec.name, target, "unreachable",
                              f"unreachable: at most {result.max_ratio:.1f}x")
        quality = result.quality

    data, encode_s = encoded[quality]
    try:
        rec, decode_s, psnr = reconstruct(quality)
    except Exception as error:  # noqa: BLE001
        return _empty_row(label, codec.name, target, "error", f"error: decode failed ({_one_line(error)})")
    row = {
        "input": label, "codec": codec.name, "target_ratio": target,
        "actual_ratio": raw / len(data), "psnr": psnr,
        "psnr_range": metrics.psnr_range(array, rec), "ssim": metrics.ssim(array, rec),
        "encode_s": encode_s, "decode_s": decode_s,
        "status": "ok", "note": "", "quality": quality, "nbytes": len(data), "compressed": data,
    }
    if keep:
        row["reconstruction"] = rec
    return row


# ============================================================================ sweep
def run_bench(
    inputs: list[str],
    ratios: list[float],
    codecs: list[str | Codec],
    out_dir: str,
    time_limit: float | None = None,
    steps: int | None = None,
    quiet: bool = False,
) -> list[dict]:
    """Run every codec at every ratio on every input; write the reports into `out_dir`.

    `codecs` holds names (see `CODECS`) or `Codec` instances. Returns one dict per run with
    the CSV columns plus status ('ok', 'unreachable', 'unavailable', 'error'), note, quality
    (the codec setting chosen), nbytes and compressed (the bytes).
    """
    if not inputs:
        raise TincInputError("no inputs given")
    ratios = parse_ratios(",".join(str(float(r)) for r in ratios)) if ratios else []
    if not ratios:
        raise TincConfigError("no ratios given")
    adapters = [c if isinstance(c, Codec) else make_codec(c, time_limit, steps) for c in codecs]
    if not adapters:
        raise TincConfigError("no codecs given")
    for name in inputs:  # fail before any work on a missing input
        check_input(name)

    from tqdm import tqdm

    show_ratio = sorted(ratios)[(len(ratios) - 1) // 2]
    rows: list[dict] = []
    first: tuple[str, np.ndarray] | None = None
    shown: list[dict] = []
    info: dict[str, str] = {}
    total = len(inputs) * len(adapters) * len(ratios)
    with tqdm(total=total, disable=quiet, file=sys.stderr, unit="run", dynamic_ncols=True) as bar:
        for index, name in enumerate(inputs):
            array = load_input(name)
            info[name] = f"{'x'.join(map(str, array.shape))} {array.dtype}, {array.nbytes:,} bytes"
            if index == 0:
                first = (name, array)
            for codec in adapters:
                for target in ratios:
                    bar.set_description(f"{os.path.basename(str(name))} {codec.name} {target:g}x")
                    keep = index == 0 and target == show_ratio
                    row = run_one(codec, array, float(target), label=str(name), keep=keep)
                    if keep and row["status"] == "ok":
                        shown.append(row)
                    rows.append({k: v for k, v in row.items() if k != "reconstruction"})
                    if not quiet:
                        tqdm.write(_summary(row), file=sys.stderr)
                    bar.update(1)
    os.makedirs(out_dir, exist_ok=True)
    write_csv(rows, os.path.join(out_dir, "results.csv"))
    write_markdown(rows, os.path.join(out_dir, "results.md"), info)
    plot_rd(rows, os.path.join(out_dir, "rd.png"))
    if first is not None:
        plot_slices(first[1], shown, os.path.join(out_dir, "slices.png"), title=f"{first[0]} at {show_ratio:g}x")
    return rows


def _summary(row: dict) -> str:
    head = f"{os.path.basename(str(row['input']))} {row['codec']:>14} {row['target_ratio']:>6g}x:"
    if row["status"] != "ok":
        return f"{head} {row['note']}"
    return (f"{head} {row['actual_ratio']:8.1f}x  PSNR {row['psnr']:6.2f} dB  SSIM {row['ssim']:.4f}"
            f"  enc {row['encode_s']:.3f}s dec {row['decode_s']:.3f}s")


def write_csv(rows: list[dict], path: str) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else (repr(float(row[c])) if isinstance(row[c], float) else row[c])
                             for c in CSV_COLUMNS])


def write_markdown(rows: list[dict], path: str, info: dict[str, str] | None = None) -> None:
    def num(value, fmt):
        return "" if value is None else format(value, fmt)

    lines = ["# tinc bench results", ""]
    for name in dict.fromkeys(r["input"] for r in rows):
        lines.append(f"## {name}")
        if info and name in info:
            lines += ["", info[name]]
        lines += [
            "",
            "| codec | target | actual ratio | PSNR (dB) | PSNR range (dB) | SSIM | encode (s) | decode (s) | note |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in rows:
            if r["input"] != name:
                continue
            lines.append(
                f"| {r['codec']} | {r['target_ratio']:g} | {num(r['actual_ratio'], '.1f')} | {num(r['psnr'], '.2f')}"
                f" | {num(r['psnr_range'], '.2f')} | {num(r['ssim'], '.4f')} | {num(r['encode_s'], '.3f')}"
                f" | {num(r['decode_s'], '.3f')} | {r.get('note') or ''} |"
            )
        lines.append("")
    with open(path, "w") as handle:
        handle.write("\n".join(lines))


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_rd(rows: list[dict], path: str) -> None:
    """PSNR and SSIM against the actual ratio (log axis): one row of panels per input."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    names = list(dict.fromkeys(r["input"] for r in rows))
    codecs = list(dict.fromkeys(r["codec"] for r in rows))
    targets = sorted({float(r["target_ratio"]) for r in rows})
    figure = _figure(11, 4 * max(1, len(names)))
    axes = figure.subplots(max(1, len(names)), 2, squeeze=False)
    for i, name in enumerate(names):
        for k, codec in enumerate(codecs):
            points = sorted((r["actual_ratio"], r["psnr"], r["ssim"]) for r in rows
                            if r["input"] == name and r["codec"] == codec and r["status"] == "ok")
            points = [p for p in points if math.isfinite(p[1])]
            if not points:
                continue
            x = [p[0] for p in points]
            style = dict(marker="o", label=codec, color=f"C{k % 10}", linestyle="-" if k < 10 else "--")
            axes[i, 0].plot(x, [p[1] for p in points], **style)
            axes[i, 1].plot(x, [p[2] for p in points], **style)
        for ax, metric in zip(axes[i], ("PSNR (dB)", "SSIM")):
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(FixedLocator(targets))
            ax.xaxis.set_major_formatter(lambda value, _: f"{value:g}")
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("compression ratio")
            ax.set_ylabel(metric)
            ax.set_title(f"{os.path.basename(str(name))}: {metric}")
            ax.grid(True, which="both", alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    figure.savefig(path)


def middle_slice(array: np.ndarray) -> np.ndarray:
    """A 2-D view for display: middle indices along the leading axes (RGB images kept)."""
    x = array.reshape(_squeezed(array.shape))
    if x.ndim == 1:
        return x[None, :]
    if x.ndim == 3 and x.shape[-1] in (3, 4) and min(x.shape[:2]) > 4:
        return x
    while x.ndim > 2:
        x = x[x.shape[0] // 2]
    return x


def plot_slices(original: np.ndarray, rows: list[dict], path: str, title: str = "") -> None:
    """The middle slice of the original and of each codec's reconstruction, errors below."""
    orig = middle_slice(original).astype(np.float64)
    recs = [middle_slice(r["reconstruction"]).astype(np.float64) for r in rows]
    lo, hi = float(orig.min()), float(orig.max())
    errors = [np.abs(rec - orig) for rec in recs]
    if errors:
        emax = max(float(np.percentile(e, 99.5)) for e in errors) or max(float(e.max()) for e in errors) or 1.0
    else:
        emax = 1.0
    n = 1 + len(recs)
    figure = _figure(2.6 * n + 0.8, 5.6)
    axes = figure.subplots(2, n, squeeze=False)

    def show(ax, image, **kw):
        if image.ndim == 3:  # RGB(A)
            ax.imshow(np.clip((image - lo) / ((hi - lo) or 1.0), 0, 1))
        else:
            ax.imshow(image, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, **kw)

    show(axes[0, 0], orig)
    axes[0, 0].set_title("original", fontsize=9)
    last = None
    for k, (row, rec, err) in enumerate(zip(rows, recs, errors), start=1):
        show(axes[0, k], rec)
        axes[0, k].set_title(f"{row['codec']}\n{row['actual_ratio']:.0f}x  {row['psnr']:.2f} dB", fontsize=9)
        shown = err.mean(axis=-1) if err.ndim == 3 else err
        last = axes[1, k].imshow(shown, cmap="inferno", vmin=0, vmax=emax)
        axes[1, k].set_title("|error|", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1, 0].axis("off")
    if last is not None:
        figure.colorbar(last, ax=axes[1, -1], fraction=0.046, pad=0.02)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.savefig(path)


# ============================================================================ CLI
def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add `tinc bench` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "bench",
        help="rate-distortion benchmark of tinc against other codecs",
        description="For each input, codec and target ratio, search the codec's quality setting for the "
        "best fidelity at a ratio >= the target, and write results.csv, results.md, rd.png and slices.png.",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="array files (.npy, .tif, .nii, .nii.gz, .png) or bundled samples such as "
                        "skimage:cell or nibabel:example4d.nii.gz")
    p.add_argument("--ratios", default=DEFAULT_RATIOS, help=f"comma-separated target ratios (default {DEFAULT_RATIOS})")
    p.add_argument("--codecs", default=DEFAULT_CODECS,
                   help=f"comma-separated codecs, or all (default {DEFAULT_CODECS}); see --list-codecs")
    p.add_argument("--out", help="output folder (created if needed)")
    p.add_argument("--time-limit", type=float, default=None, help="seconds of training per tinc run")
    p.add_argument("--steps", type=int, default=None, help="training steps per tinc run")
    p.add_argument("--list-codecs", action="store_true", help="list the codecs and whether they work here, then exit")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress output")
    p.set_defaults(func=run_cli)
    return p


def run_cli(args) -> int:
    """Entry point of `tinc bench`; raises TincError subclasses for bad input/options."""
    if getattr(args, "list_codecs", False):
        for name, cls in CODECS.items():
            codec = make_codec(name)
            reason = codec.unavailable()
            print(f"{name:15} {'ok' if not reason else 'unavailable'}  {cls.description}"
                  + (f"  [{reason}]" if reason else ""))
        return 0
    if not args.inputs:
        raise TincInputError("bench needs at least one INPUT")
    if not args.out:
        raise TincConfigError("bench needs --out DIR")
    if args.steps is not None and args.steps < 0:
        raise TincConfigError(f"steps must be >= 0, got {args.steps}")
    if args.time_limit is not None and args.time_limit < 0:
        raise TincConfigError(f"time limit must be >= 0, got {args.time_limit}")
    rows = run_bench(
        args.inputs, parse_ratios(args.ratios), parse_codecs(args.codecs), args.out,
        time_limit=args.time_limit, steps=args.steps, quiet=getattr(args, "quiet", False),
    )
    if not getattr(args, "quiet", False):
        print(f"wrote {len(rows)} results to {os.path.join(args.out, 'results.csv')} "
              f"(and results.md, rd.png, slices.png)", file=sys.stderr)
    return 0


__all__ = [
    "Codec", "CODECS", "CSV_COLUMNS", "SearchResult", "add_parser", "bisect_quality", "check_input", "load_input",
    "make_codec", "parse_codecs", "parse_ratios", "run_bench", "run_cli", "run_one",
]
