"""Video codecs (HEVC, H.264) through PyAV: the 2-D slices of an array as grey frames."""

from __future__ import annotations

import fractions
import importlib.util
from typing import Callable

import numpy as np

from .base import Codec, restore_dtype
from .frames import UINT_HEADER, frame_shape, from_frames, from_uint, needed_bits, to_frames, to_uint


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


def _frame_array(frame, pixel_format: str) -> np.ndarray:
    """The luma plane as decoded. (FFmpeg's H.264 decoder returns grey streams as yuv420p;
    converting those to grey would apply a limited-to-full range conversion.)"""
    plane = frame.planes[0]
    dtype = np.dtype(np.uint8) if pixel_format == "gray" else np.dtype("<u2")
    rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: frame.height]
    return rows[:, : frame.width * dtype.itemsize].copy().view(dtype)


class VideoCodec(Codec):
    """FFmpeg encoders through PyAV: the 2-D slices as the frames of a grey video.

    Data needing more bits than the encoder's deepest grey format are scaled from their
    min/max onto it; the offset and scale are stored in the bytes (17-byte header), so
    decoding restores the original value range. quality = CRF.
    """

    encoder = ""
    decoder = ""
    formats: dict[int, str] = {}
    """Grey pixel format per bit depth."""
    log_scale = False
    isolate = False
    """Encode in a forked child process (for encoders known to crash)."""
    options = {"preset": "medium", "tune": "psnr"}

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
        frames = to_frames(array)
        bits = self._bits(frames)
        q, header = to_uint(frames, bits)
        h, w = q.shape[1:]
        ph, pw = self._padded_size(h, w)
        if (ph, pw) != (h, w):
            q = np.pad(q, ((0, 0), (0, ph - h), (0, pw - w)), mode="edge")
        args = (self.encoder, self.formats[bits], q, float(quality), dict(self.options))
        stream = _run_isolated(encode_video, *args) if self.isolate else encode_video(*args)
        return header + self._strip(stream)

    def decode(self, data: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        import av

        header, stream = data[: UINT_HEADER.size], data[UINT_HEADER.size :]
        pixel_format = self.formats[header[0]]
        context = av.CodecContext.create(self.decoder, "r")
        images = []
        for packet in list(context.parse(stream)) + list(context.parse(None)):
            images.extend(_frame_array(f, pixel_format) for f in context.decode(packet))
        images.extend(_frame_array(f, pixel_format) for f in context.decode(None))
        n, h, w = frame_shape(tuple(shape))
        frames = np.stack(images)[:n, :h, :w]
        return restore_dtype(from_frames(from_uint(frames, header), tuple(shape)), dtype)


class HevcCodec(VideoCodec):
    """HEVC (libx265, preset medium, tune psnr, no encoder-info SEI); grey 8/10/12-bit."""

    name = "hevc"
    description = "HEVC / libx265 via PyAV, slices as grey 8/10/12-bit frames, CRF"
    encoder, decoder = "libx265", "hevc"
    formats = {8: "gray", 10: "gray10le", 12: "gray12le"}
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
