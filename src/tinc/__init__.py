"""tinc: Tree-structured Implicit Neural Compression of N-dimensional scientific arrays."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .codec import TincCodec
from .format import MAX_DECODE_VOXELS
from .config import TincConfig
from .errors import TincConfigError, TincError, TincFormatError, TincInputError, TincOutputError

if TYPE_CHECKING:
    from .decode import TincArray, TincStore

__version__ = "0.1.0"
__all__ = [
    "TincCodec", "TincConfig", "TincError", "TincInputError", "TincFormatError", "TincConfigError", "TincOutputError",
    "compress", "decompress", "read", "write",
]


def compress(array, ratio: float | None = None, **options) -> bytes:
    """Compress `array` to .tinc bytes at most `array.nbytes / ratio` long (default 64).
    With `max_error=E` (or `max_error_rel=R`) every decoded value is within E (R x the
    range) of the original; the ratio is then the network's, or searched when not given."""
    return TincCodec(ratio=ratio, **options).encode(array)


def decompress(data: bytes, device: str = "cpu", roi: str | tuple[slice, ...] | None = None,
               scale: float | None = None, shape: tuple[int, ...] | str | None = None,
               max_voxels: int = MAX_DECODE_VOXELS) -> np.ndarray:
    """Decode .tinc bytes to an array of the original shape and dtype.

    `roi` ("10:50,0:64,:" or a tuple of slices, one per axis) decodes only that region,
    evaluating only the leaf blocks it touches; the result equals the same crop of the full
    decode. `scale` (e.g. 2 or 0.5) or `shape` resamples every leaf block on a finer or
    coarser grid of its local coordinates (see `tinc.decoder.Decoder.sampling`); a `roi`
    then refers to the resampled grid. A file declaring more than `max_voxels` output elements
    (default 2^32) is refused before anything is allocated; pass a larger value to opt in.
    """
    from .decoder import Decoder

    return Decoder(data, device, max_voxels).decode(roi, scale, shape)


def open(path, device: str = "cpu", max_voxels: int = MAX_DECODE_VOXELS) -> "TincArray | TincStore":
    """Open a .tinc file (or a chunked tinc Zarr store) lazily: `tinc.open(path)[10:50, :, 3]`
    decodes only the leaf blocks (chunks) that region touches; `.shape`, `.dtype`, `.ndim`,
    `np.asarray(...)` as for an array, and `.to_dask()` for a `dask.array`.
    Not in `__all__`, so that `from tinc import *` cannot shadow the builtin `open`."""
    from .decode import TincArray, TincStore
    from .io import is_zarr_path

    if is_zarr_path(path):
        return TincStore(path)
    return TincArray.from_file(path, device, max_voxels)


def read(path) -> np.ndarray:
    """Read TIFF, NIfTI, .npy, PNG or DICOM (a .dcm file or a series directory) into an array."""
    from .io import read_with_metadata

    return read_with_metadata(path)[0]


def write(path, array, metadata: dict | None = None) -> None:
    """Write `array` to TIFF, NIfTI, .npy or PNG (chosen by extension), atomically."""
    from .io import write as _write

    _write(path, array, metadata)
