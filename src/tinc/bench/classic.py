"""Traditional codecs through imagecodecs: SPERR, SZ3, ZFP, JPEG 2000 and JPEG XL."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..bitstream import Reader, varint
from ..metrics import data_range
from .base import Codec, restore_dtype, squeezed_shape, work_float
from .frames import ColourCodec, from_colour_frames, from_frames, from_uint, to_colour_frames, to_frames, to_uint


def imagecodecs_missing(*names: str) -> str | None:
    """Why imagecodecs cannot run the codecs `names` here, or None when it can."""
    try:
        import imagecodecs
    except ImportError:
        return "imagecodecs is not installed"
    for name in names:
        codec = getattr(imagecodecs, name.upper(), None)
        if codec is None or not getattr(codec, "available", False):
            return f"imagecodecs has no {name} support in this build"
    return None


def pack_chunks(chunks: Sequence[bytes]) -> bytes:
    """Concatenate byte strings, each preceded by its length as a LEB128 varint."""
    return b"".join(varint(len(c)) + bytes(c) for c in chunks)


def unpack_chunks(data: bytes) -> list[bytes]:
    """Undo `pack_chunks` (TincFormatError if `data` is truncated)."""
    reader = Reader(bytes(data), 0, "truncated codestream")
    chunks = []
    while not reader.done():
        chunks.append(reader.take(reader.varint()))
    return chunks


def _at_most_4d(shape: Sequence[int]) -> tuple[int, ...]:
    """SZ3 and ZFP take 1-D to 4-D arrays: leading axes beyond that are merged."""
    squeezed = squeezed_shape(shape)
    return ((int(np.prod(squeezed[:-3])),) + squeezed[-3:]) if len(squeezed) > 4 else squeezed


class SperrCodec(Codec):
    """SPERR (wavelets + SPECK), 2-D or 3-D; quality = bits per value (BPP mode)."""

    name = "sperr"
    description = "SPERR 3-D wavelet codec (imagecodecs), fixed bits per value"

    def unavailable(self) -> str | None:
        return imagecodecs_missing("sperr")

    @staticmethod
    def _volume(shape: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(axis order, 3-D shape): SPERR codes at most 3 axes, so beyond three the shorter
        axes (e.g. time) go in front and fold into the first of the three longest, stacking
        whole volumes rather than cutting each one into thin slabs."""
        squeezed = squeezed_shape(shape)
        if len(squeezed) == 1:
            return (0,), (1,) + squeezed
        if len(squeezed) <= 3:
            return tuple(range(len(squeezed))), squeezed
        longest = sorted(sorted(range(len(squeezed)), key=lambda a: -squeezed[a])[:3])
        order = tuple(a for a in range(len(squeezed)) if a not in longest) + tuple(longest)
        folded = int(np.prod([squeezed[a] for a in order[:-2]]))
        return order, (folded, squeezed[order[-2]], squeezed[order[-1]])

    def quality_range(self, array: np.ndarray) -> tuple[float, float]:
        bits = 8.0 * array.dtype.itemsize
        return bits, bits / 1e5

    def encode(self, array: np.ndarray, quality: float) -> bytes:
        import imagecodecs

        order, volume = self._volume(array.shape)
        x = array.reshape(squeezed_shape(array.shape)).transpose(order).reshape(volume)
        return bytes(imagecodecs.sperr_encode(x.astype(work_float(array.dtype)), float(quality), "bpp"))

    def decode(self, data: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        import imagecodecs

        squeezed = squeezed_shape(shape)
        order, _ = self._volume(shape)
        values = np.asarray(imagecodecs.sperr_decode(data))  # the header holds shape and type
        values = values.reshape([squeezed[a] for a in order]).transpose(np.argsort(order))
        return restore_dtype(values.reshape(shape), dtype)


class Sz3Codec(Codec):
    """SZ3 (prediction + quantisation), 1-D to 4-D; quality = absolute error bound."""

    name = "sz3"
    description = "SZ3 error-bounded codec (imagecodecs), absolute error bound"

    def unavailable(self) -> str | None:
        return imagecodecs_missing("sz3")

    def quality_range(self, array: np.ndarray) -> tuple[float, float]:
        span = data_range(array)
        best = 0.25 if array.dtype.kind in "iub" else span * 1e-7  # < 0.5: integers stay exact
        return min(best, span * 1e-3), span * 0.5

    def encode(self, array: np.ndarray, quality: float) -> bytes:
        import imagecodecs

        x = array.reshape(_at_most_4d(array.shape)).astype(work_float(array.dtype))
        return bytes(imagecodecs.sz3_encode(x, mode="abs", abs=float(quality)))

    def decode(self, data: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        import imagecodecs

        values = imagecodecs.sz3_decode(data, shape=_at_most_4d(shape), dtype=work_float(dtype))
        return restore_dtype(np.asarray(values).reshape(shape), dtype)


class ZfpCodec(Codec):
    """ZFP (block transform), 1-D to 4-D; quality = bits per value (fixed-rate mode).

    Fixed rate is the only ZFP mode that reaches high ratios on small volumes (fixed
    accuracy saturates, e.g. ~60x on a 64^3 uint16 volume); `zfp-accuracy` is the other.
    """

    name = "zfp"
    description = "ZFP (imagecodecs), fixed rate in bits per value"
    mode = "rate"

    def unavailable(self) -> str | None:
        return imagecodecs_missing("zfp")

    def quality_range(self, array: np.ndarray) -> tuple[float, float]:
        bits = 8.0 * np.dtype(work_float(array.dtype)).itemsize
        return bits, 1e-3

    def encode(self, array: np.ndarray, quality: float) -> bytes:
        import imagecodecs

        x = array.reshape(_at_most_4d(array.shape)).astype(work_float(array.dtype))
        return bytes(imagecodecs.zfp_encode(x, float(quality), mode=self.mode))

    def decode(self, data: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        import imagecodecs

        return restore_dtype(np.asarray(imagecodecs.zfp_decode(data)).reshape(shape), dtype)


class ZfpAccuracyCodec(ZfpCodec):
    """ZFP fixed-accuracy mode; quality = absolute error tolerance."""

    name = "zfp-accuracy"
    description = "ZFP (imagecodecs), fixed accuracy (absolute tolerance)"
    mode = "accuracy"

    def quality_range(self, array: np.ndarray) -> tuple[float, float]:
        span = data_range(array)
        return span * 1e-7, span * 100.0


def _image_frames(array: np.ndarray) -> tuple[np.ndarray, bytes]:
    """2-D slices as uint8/uint16 images; other dtypes are mapped to 16 bits (header undoes it)."""
    frames = to_frames(array)
    if frames.dtype in (np.uint8, np.uint16):
        return frames, b""
    return to_uint(frames, 16)


def _from_image_frames(frames: np.ndarray, header: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    values = from_uint(frames, header) if header else frames
    return restore_dtype(from_frames(values, tuple(shape)), dtype)


class ColourImageCodec(ColourCodec):
    """An image codec that codes an RGB input as colour images, one per 2-D slice."""

    def _encode_colour(self, image: np.ndarray, quality: float) -> bytes:
        raise NotImplementedError

    def _decode_image(self, stream: bytes) -> np.ndarray:
        raise NotImplementedError

    def encode(self, array: np.ndarray, quality: float) -> bytes:
        if not self._colour(array.shape, array.dtype):
            return self._encode_grey(array, quality)
        return pack_chunks([self._encode_colour(image, quality) for image in to_colour_frames(array, self.channel_axis)])

    def decode(self, data: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        if not self._colour(shape, dtype):
            return self._decode_grey(data, shape, dtype)
        images = np.stack([self._decode_image(stream) for stream in unpack_chunks(data)])
        return from_colour_frames(images, tuple(shape), self.channel_axis).astype(dtype, copy=False)


class Jpeg2000Codec(ColourImageCodec):
    """JPEG 2000 (OpenJPEG): every 2-D slice a component of one codestream (no inter-component
    transform, so each slice is coded as a 2-D image; one shared header instead of one per
    slice); an RGB input as colour images with the colour transform (mct).
    quality = target PSNR in dB of OpenJPEG's fixed-quality mode."""

    name = "jpeg2000"
    description = "JPEG 2000 (imagecodecs/OpenJPEG), 2-D slices as components (RGB as colour), target PSNR"
    log_scale = False
    max_components = 16384  # the JPEG 2000 limit per codestream; more slices take several

    def unavailable(self) -> str | None:
        return imagecodecs_missing("jpeg2k")

    def quality_range(self, array: np.ndarray) -> tuple[float, float]:
        return 150.0, 5.0

    def _encode_colour(self, image: np.ndarray, quality: float) -> bytes:
        """On an RGB image the colour transform gave the astronaut 30.81 dB at 64x where its
        channels as separate components gave 27.38 (benchmarks/RESULTS.md)."""
        import imagecodecs

        return imagecodecs.jpeg2k_encode(image, float(quality), codecformat="j2k", colorspace=1, mct=True, reversible=False)

    def _decode_image(self, stream: bytes) -> np.ndarray:
        import imagecodecs

        return np.asarray(imagecodecs.jpeg2k_decode(stream))

    def _encode_grey(self, array: np.ndarray, quality: float) -> bytes:
        import imagecodecs

        frames, header = _image_frames(array)
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

    def _decode_grey(self, data: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        header, *streams = unpack_chunks(data)
        parts = []
        for stream in streams:
            image = self._decode_image(stream)
            parts.append(image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0))
        return _from_image_frames(np.concatenate(parts), header, shape, dtype)


class JpegXlCodec(ColourImageCodec):
    """JPEG XL (libjxl), one image per 2-D slice (an RGB input's in colour); quality = Butteraugli distance."""

    name = "jpegxl"
    description = "JPEG XL (imagecodecs/libjxl), per 2-D slice (RGB as colour), Butteraugli distance"

    def unavailable(self) -> str | None:
        return imagecodecs_missing("jpegxl")

    def quality_range(self, array: np.ndarray) -> tuple[float, float]:
        return 0.02, 25.0

    def _encode_colour(self, image: np.ndarray, quality: float) -> bytes:
        import imagecodecs

        return imagecodecs.jpegxl_encode(image, distance=float(quality))

    def _decode_image(self, stream: bytes) -> np.ndarray:
        import imagecodecs

        return np.asarray(imagecodecs.jpegxl_decode(stream))

    def _encode_grey(self, array: np.ndarray, quality: float) -> bytes:
        frames, header = _image_frames(array)
        return pack_chunks([header] + [self._encode_colour(f, quality) for f in frames])

    def _decode_grey(self, data: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        header, *streams = unpack_chunks(data)
        frames = np.stack([self._decode_image(s) for s in streams])
        return _from_image_frames(frames, header, shape, dtype)
