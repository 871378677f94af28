"""Chunked tinc stores: Zarr v3 arrays whose serializer is the `tinc` codec, one `.tinc`
container per chunk. Opening one to read (complete stores only), creating or reopening one
to write, chunk files written atomically, and the `tinc` attributes a finished run leaves."""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from . import container
from .boxes import chunk_boxes
from .config import TincConfig
from .errors import TincConfigError, TincFormatError, TincInputError, first_line
from .format import MAX_DECODE_VOXELS, plan_from_header
from .io import check_writable, native_dtype
from .zarr_codec import CODEC_NAME, TincNumcodec, TincZarrCodec

TEMPORARY_PREFIX = ".tinc-part-"  # chunk files being written; a killed run may leave them, a resume removes them


def open_compressed(path):
    """A complete chunked tinc array (`zarr.Array`), or a one-line error saying what it is not."""
    array, _ = _open_tinc_array(path)
    if not array.attrs.get("tinc", {}).get("complete"):
        raise TincInputError(f"{path}: incomplete (an interrupted `tinc compress`); rerun that command to finish it")
    return array


def _open_tinc_array(path):
    """(the `zarr.Array`, its `TincNumcodec`) of a chunked tinc store, complete or not."""
    import zarr

    if not os.path.isdir(path):
        raise TincInputError(f"{path}: no such Zarr directory")
    try:
        array = zarr.open_array(path, mode="r")
    except Exception as error:
        raise TincInputError(f"{path}: not a Zarr array ({first_line(error)})") from None
    codec = _tinc_codec(array)
    if codec is None:
        raise TincInputError(f"{path}: not compressed with the {CODEC_NAME} codec")
    return array, codec


def _tinc_codec(array) -> TincNumcodec | None:
    """The `TincNumcodec` the Zarr `array`'s chunks were compressed with, if any."""
    return next((c.codec for c in array.metadata.codecs if isinstance(c, TincZarrCodec)), None)


def codec_channel_axis(array) -> int | None:
    """The channel axis the chunks of the Zarr `array` were compressed with, if any."""
    codec = _tinc_codec(array)
    return None if codec is None else codec.tinc.config.channel_axis


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


def final_attributes(complete: bool, source: str, nbytes: int, ratio: float, psnr: float, chunk_psnr: dict[str, float],
                     input_metadata: dict | None = None) -> dict:
    """The array's `tinc` attributes: whether every chunk is written, what the run measured,
    and the input file's metadata (a NIfTI header, a DICOM spacing), coded as a `.tinc`
    file's META section is, so that a decompression to NIfTI or OME-Zarr restores it."""
    attributes = {"complete": complete, "source": source, "bytes": nbytes, "ratio": ratio, "psnr": psnr,
                  "chunk_psnr": chunk_psnr}
    if input_metadata:
        attributes["input"] = base64.b64encode(container.encode_metadata(input_metadata)).decode("ascii")
    return {"tinc": attributes}


def input_metadata(array, path: str) -> dict:
    """The input file's metadata `final_attributes` stored with the Zarr `array` at `path` ({} if none)."""
    coded = array.attrs.get("tinc", {}).get("input")
    if coded is None:
        return {}
    try:
        return container.decode_metadata(base64.b64decode(coded, validate=True))
    except TincFormatError as error:
        raise TincFormatError(f"{path}: input metadata: {error}") from None
    except (TypeError, binascii.Error) as error:
        raise TincFormatError(f"{path}: input metadata is unreadable ({first_line(error)})") from None


def metadata_bytes_with(array, attributes: dict) -> int:
    """Bytes of the array's `zarr.json` once `attributes` are merged into its attributes (as
    `update_attributes` does), by zarr's own encoding, without writing it."""
    from zarr.core.buffer import default_buffer_prototype

    metadata = array.metadata.update_attributes({**array.metadata.attributes, **attributes})
    return sum(len(buffer) for buffer in metadata.to_buffer_dict(default_buffer_prototype()).values())


def store_bytes(path: str) -> int:
    """Bytes of every file in a store: what its ratio counts."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def is_tinc_store(path: str) -> bool:
    try:
        _open_tinc_array(path)
    except TincInputError:
        return False
    return True


def describe_store(path: str, max_voxels: int = MAX_DECODE_VOXELS) -> dict:
    """What `tinc info` shows of a chunked store: its array, its chunks' trees, its bytes and
    the options it was compressed with (those that differ from tinc's defaults)."""
    array, codec = _open_tinc_array(path)
    trees: dict[str, int] = {}
    indices = [index for index, _ in chunk_boxes(array.shape, array.chunks)]
    for index in indices:
        chunk = os.path.join(path, array.metadata.encode_chunk_key(index))
        if not os.path.isfile(chunk):
            continue
        try:
            with open(chunk, "rb") as handle:
                header = container.unpack(handle.read()).header
            plan = plan_from_header(header, max_voxels)
        except TincFormatError as error:
            raise TincFormatError(f"{chunk}: {error}") from None
        tree = "constant" if header.range[0] == header.range[1] else f"depth {plan.depth}, widths {plan.widths_text()}"
        trees[tree] = trees.get(tree, 0) + 1
    nbytes = store_bytes(path)
    config, defaults = dataclasses.asdict(codec.tinc.config), dataclasses.asdict(TincConfig())
    attributes = array.attrs.get("tinc", {})
    chunk_psnr = list(attributes.get("chunk_psnr", {}).values())
    return {
        "shape": list(array.shape), "dtype": str(np.dtype(array.dtype)), "chunks": list(array.chunks), "halo": codec.halo,
        "chunk_count": len(indices), "chunks_written": sum(trees.values()), "trees": trees,
        "bytes": nbytes, "ratio": math.prod(array.shape) * np.dtype(array.dtype).itemsize / max(nbytes, 1),
        "complete": bool(attributes.get("complete")), "psnr": attributes.get("psnr"),
        "chunk_psnr_range": [min(chunk_psnr), max(chunk_psnr)] if chunk_psnr else None,
        "options": {k: v for k, v in config.items() if v != defaults[k] and k != "quiet"},
        "input_metadata": sorted(input_metadata(array, path)),
    }
