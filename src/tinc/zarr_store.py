"""Chunked tinc stores: Zarr v3 arrays whose serializer is the `tinc` codec, one `.tinc`
container per chunk. Opening one to read (complete stores only), creating or reopening one
to write, chunk files written atomically, and the `tinc` attributes a finished run leaves."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np

from . import container
from .errors import TincConfigError, TincFormatError, TincInputError, first_line
from .io import check_writable, native_dtype
from .zarr_codec import CODEC_NAME, TincNumcodec, TincZarrCodec

TEMPORARY_PREFIX = ".tinc-part-"  # chunk files being written; a killed run may leave them, a resume removes them


def open_compressed(path):
    """A complete chunked tinc array (`zarr.Array`), or a one-line error saying what it is not."""
    import zarr

    if not os.path.isdir(path):
        raise TincInputError(f"{path}: no such Zarr directory")
    try:
        array = zarr.open_array(path, mode="r")
    except Exception as error:
        raise TincInputError(f"{path}: not a Zarr array ({first_line(error)})") from None
    if not any(isinstance(c, TincZarrCodec) for c in array.metadata.codecs):
        raise TincInputError(f"{path}: not compressed with the {CODEC_NAME} codec")
    if not array.attrs.get("tinc", {}).get("complete"):
        raise TincInputError(f"{path}: incomplete (an interrupted `tinc compress`); rerun that command to finish it")
    return array


def codec_channel_axis(array) -> int | None:
    """The channel axis the chunks of the Zarr `array` were compressed with, if any."""
    for codec in array.metadata.codecs:
        if isinstance(codec, TincZarrCodec):
            return codec.codec.tinc.config.channel_axis
    return None


def open_output(path: str, shape: tuple[int, ...], dtype: np.dtype, chunks: tuple[int, ...], codec: TincNumcodec):
    """The output array: created, or reopened to resume when its settings match exactly."""
    import zarr

    serializer = TincZarrCodec(**codec.get_config())
    if os.path.exists(path):
        try:
            array = zarr.open_array(path, mode="r+")
        except Exception:
            raise TincInputError(f"{path}: exists and is not a Zarr array; remove it or choose another output") from None
        stored = [c for c in array.metadata.codecs if isinstance(c, TincZarrCodec)]
        if (array.shape, array.chunks, np.dtype(array.dtype)) != (shape, chunks, native_dtype(dtype)) \
                or not stored or stored[0] != serializer:
            raise TincConfigError(f"{path}: exists with other settings (shape, chunks, dtype or codec options); "
                                  "rerun the command that created it to resume, or remove it to start over")
        for leftover in Path(path).rglob(TEMPORARY_PREFIX + "*"):  # from a killed run
            leftover.unlink(missing_ok=True)
        return array
    check_writable(path)
    return zarr.create_array(
        store=path, shape=shape, chunks=chunks, dtype=native_dtype(dtype),
        serializer=serializer, compressors=None, fill_value=0,
        attributes={"tinc": {"complete": False}},
    )


def stored_chunk(path: str) -> bytes | None:
    """A chunk file's bytes if it exists and passes the container's checksum, else None."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        container.unpack(data)
    except (OSError, TincFormatError):
        return None
    return data


def write_atomically(path: str, data: bytes) -> None:
    """Write a file under a temporary name beside it, then rename: readers see all or nothing."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def final_attributes(complete: bool, source: str, nbytes: int, ratio: float, psnr: float, chunk_psnr: dict[str, float]) -> dict:
    """The array's `tinc` attributes: whether every chunk is written, and what the run measured."""
    return {"tinc": {"complete": complete, "source": source, "bytes": nbytes, "ratio": ratio, "psnr": psnr,
                     "chunk_psnr": chunk_psnr}}


def metadata_bytes_with(array, attributes: dict) -> int:
    """Bytes of the array's `zarr.json` once `attributes` are merged into its attributes (as
    `update_attributes` does), by zarr's own encoding, without writing it."""
    from zarr.core.buffer import default_buffer_prototype

    metadata = array.metadata.update_attributes({**array.metadata.attributes, **attributes})
    return sum(len(buffer) for buffer in metadata.to_buffer_dict(default_buffer_prototype()).values())
