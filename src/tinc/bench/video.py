"""Video codecs (HEVC, H.264) through PyAV: the 2-D slices of an array as grey frames (an
RGB input's as colour frames, where the encoder has a 4:4:4 format)."""

from __future__ import annotations

import fractions
import importlib.util
from typing import Callable

import numpy as np

from .base import restore_dtype
from .frames import (UINT_HEADER, ColourCodec, frame_shape, from_colour_frames, from_frames, from_uint, grey_shape, needed_bits,
                     rgb_to_ycbcr, to_colour_frames, to_frames, to_uint, ycbcr_to_rgb)


def _run_isolated(function: Callable, *args):
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


def encode_video(encoder: str, pixel_format: str, frames: np.ndarray, crf: float, options: dict) -> bytes:
    """The raw stream from FFmpeg's `encoder` for (n, H, W) integer frames at constant quality `crf`."""
    import av

    av.logging.set_level(av.logging.ERROR)
    context = av.CodecContext.create(encoder, "w")
    context.width, context.height = int(frames.shape[2]), int(frames.shape[1])
    context.pix_fmt = pixel_format
    context.time_base = fractions.Fraction(1, 25)
    options = {k: str(v) for k, v in options.items()}
    options["crf"] = f"{crf:.3f}"
    context.options = options
    out = bytearray()
    for i, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=pixel_format)
        frame.pts = i
        for packet in context.encode(frame):
            out += bytes(packet)
    for packet in context.encode(None):
        out += bytes(packet)
    return bytes(out)


def _frame_array(frame, pixel_format: str, planes: int = 1) -> np.ndarray:
    """The first `planes` planes as decoded, [H, W] for one, else [H, W, planes]. (FFmpeg's
    H.264 decoder returns grey streams as yuv420p; converting those to grey would apply a
    limited-to-full range conversion. A colour stream's planes are read in coded order: luma
    first, whatever FFmpeg calls the format.)"""
    dtype = np.dtype(np.uint8) if pixel_format == "gray" else np.dtype("<u2")
    images = []
    for plane in frame.planes[:planes]:
        rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: frame.height]
        images.append(rows[:, : frame.width * dtype.itemsize].copy().view(dtype))
    return images[0] if planes == 1 else np.stack(images, axis=-1)


class VideoCodec(ColourCodec):
    """FFmpeg encoders through PyAV: the 2-D slices as the frames of a grey video.

    Data needing more bits than the encoder's deepest grey format are scaled from their
    min/max onto it; the offset and scale are stored in the bytes (17-byte header), so
    decoding restores the original value range. quality = CRF.

    An RGB input (`for_input`, `frames.is_colour`), where the encoder has `colour_formats`,
    is coded as colour frames: full-range YCbCr 4:4:4 at 10 bits for 8-bit samples (12 for
    deeper ones, scaled from their min/max), luma in the format's first plane.
    """

    encoder = ""
    decoder = ""
    formats: dict[int, str] = {}
    """Grey pixel format per bit depth."""
    colour_formats: dict[int, str] = {}
    """4:4:4 pixel format per bit depth for colour frames (none: RGB as grey frames)."""
    log_scale = False
    isolate = False
    """Encode in a forked child process (for encoders known to crash)."""
    options = {"preset": "medium", "tune": "psnr"}

    @property
    def codes_colour(self) -> bool:
        return bool(self.colour_formats)

    def unavailable(self) -> str | None:
        if importlib.util.find_spec("av") is None:
            return "PyAV is not installed (pip install av)"
        try:
            import av

            av.codec.Codec(self.encoder, "w")
            av.codec.Codec(self.decoder, "r")
        except Exception as error:  # noqa: BLE001
            return f"FFmpeg in PyAV has no {self.encoder}/{self.decoder} ({error})"
        return None

    def quality_range(self, array: np.ndarray) -> tuple[float, float]:
        return 0.0, 51.0

    def _bits(self, frames: np.ndarray) -> int:
        """The shallowest supported bit depth that holds the data exactly, else the deepest."""
        need = needed_bits(frames)
        for bits in sorted(self.formats):
            if need <= bits:
                return bits
        return max(self.formats)

    def _padded_size(self, height: int, width: int) -> tuple[int, int]:
        """Frame size the encoder accepts; padding is cropped on decode."""
        return height, width

    def _strip(self, stream: bytes) -> bytes:
        """Drop parts of the stream that carry no picture data."""
        return stream

    def encode(self, array: np.ndarray, quality: float) -> bytes:
        if self._colour(array.shape, array.dtype):
            q, header = self._colour_frames(array)
            pixel_format = self.colour_formats[header[0]]
        else:
            frames = to_frames(array)
            bits = self._bits(frames)
            q, header = to_uint(frames, bits)
            pixel_format = self.formats[bits]
        h, w = q.shape[1:3]
        ph, pw = self._padded_size(h, w)
        if (ph, pw) != (h, w):
            q = np.pad(q, ((0, 0), (0, ph - h), (0, pw - w)) + ((0, 0),) * (q.ndim - 3), mode="edge")
        args = (self.encoder, pixel_format, q, float(quality), dict(self.options))
        stream = _run_isolated(encode_video, *args) if self.isolate else encode_video(*args)
        return header + self._strip(stream)

    def _colour_frames(self, array: np.ndarray) -> tuple[np.ndarray, bytes]:
        """(n, H, W, 3) uint16 frames laid out as PyAV takes a GBR planar image (R, G, B
        slots; G is the first plane), holding Cr, Y, Cb; and the header that undoes them."""
        frames = to_colour_frames(array, self.channel_axis)
        bits = 10 if needed_bits(frames) <= 8 else 12
        low, high = float(frames.min()), float(frames.max())
        span = high - low if high > low else 1.0
        ycc = rgb_to_ycbcr((frames - low) / span)
        top = (1 << bits) - 1
        q = np.clip(np.rint(ycc * top), 0, top).astype(np.uint16)
        return np.ascontiguousarray(q[..., [2, 0, 1]]), UINT_HEADER.pack(bits, low, span)

    def decode(self, data: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        import av

        header, stream = data[: UINT_HEADER.size], data[UINT_HEADER.size :]
        colour = self._colour(shape, dtype)
        pixel_format, planes = (self.colour_formats[header[0]], 3) if colour else (self.formats[header[0]], 1)
        context = av.CodecContext.create(self.decoder, "r")
        images = []
        for packet in list(context.parse(stream)) + list(context.parse(None)):
            images.extend(_frame_array(f, pixel_format, planes) for f in context.decode(packet))
        images.extend(_frame_array(f, pixel_format, planes) for f in context.decode(None))
        if colour:
            bits, low, span = UINT_HEADER.unpack(header)
            n, h, w = frame_shape(grey_shape(tuple(shape), self.channel_axis))
            rgb = ycbcr_to_rgb(np.stack(images)[:n, :h, :w].astype(np.float64) / ((1 << bits) - 1)) * span + low
            return restore_dtype(from_colour_frames(rgb, tuple(shape), self.channel_axis), dtype)
        n, h, w = frame_shape(tuple(shape))
        frames = np.stack(images)[:n, :h, :w]
        return restore_dtype(from_frames(from_uint(frames, header), tuple(shape)), dtype)


class HevcCodec(VideoCodec):
    """HEVC (libx265, preset medium, tune psnr, no encoder-info SEI); grey 8/10/12-bit, RGB as
    YCbCr 4:4:4 10/12-bit."""

    name = "hevc"
    description = "HEVC / libx265 via PyAV, slices as grey 8/10/12-bit frames (RGB as YCbCr 4:4:4), CRF"
    encoder, decoder = "libx265", "hevc"
    formats = {8: "gray", 10: "gray10le", 12: "gray12le"}
    colour_formats = {10: "gbrp10le", 12: "gbrp12le"}
    options = {"preset": "medium", "tune": "psnr", "x265-params": "log-level=error:info=0"}
    isolate = True

    def _padded_size(self, height: int, width: int) -> tuple[int, int]:
        # The libx265 bundled with PyAV rejects frames under 16 pixels and corrupts its heap
        # on widths 33..48: pad (edge values, cropped on decode) around both.
        height, width = max(height, 16), max(width, 16)
        if 32 < width <= 48:
            width = 56
        return height, width


class H264Codec(VideoCodec):
    """H.264 (libx264, preset medium, tune psnr); grey 8/10-bit. x264's ~600-byte SEI with its
    version and settings is dropped from the stream (it carries no picture data)."""

    name = "h264"
    description = "H.264 / libx264 via PyAV, slices as grey 8/10-bit frames, CRF"
    encoder, decoder = "libx264", "h264"
    formats = {8: "gray", 10: "gray10le"}

    def _strip(self, stream: bytes) -> bytes:
        return drop_h264_sei(stream)


def drop_h264_sei(stream: bytes) -> bytes:
    """Remove SEI NAL units (type 6) from an H.264 Annex-B byte stream."""
    starts = []
    i = stream.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append(i)
        i = stream.find(b"\x00\x00\x01", i + 3)
    if not starts:
        return stream
    out = bytearray(stream[: starts[0]])
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(stream)
        nal_type = stream[start + 3] & 0x1F if start + 3 < len(stream) else None
        if nal_type != 6:
            out += stream[start:end]
        elif out.endswith(b"\x00"):  # a 4-byte start code's leading zero belongs to this unit
            del out[-1]
    return bytes(out)
