"""tinc: Tree-structured Implicit Neural Compression of N-dimensional scientific arrays."""

from __future__ import annotations

import numpy as np

from .codec import TincCodec
from .config import TincConfig
from .errors import TincConfigError, TincError, TincFormatError, TincInputError

__version__ = "0.1.0"
__all__ = [
    "TincCodec", "TincConfig", "TincError", "TincInputError", "TincFormatError", "TincConfigError",
    "compress", "decompress", "read", "write",
]


def compress(array, ratio: float = 64.0, **options) -> bytes:
    """Compress `array` to .tinc bytes at most `array.nbytes / ratio` long."""
    return TincCodec(ratio=ratio, **options).encode(array)


def decompress(data: bytes, device: str = "cpu") -> np.ndarray:
    """Decode .tinc bytes to an array of the original shape and dtype."""
    return TincCodec(device=device, quiet=True).decode(data)


def read(path) -> np.ndarray:
    """Read TIFF, NIfTI, .npy or PNG into an array."""
    from .io import read_with_metadata

    return read_with_metadata(path)[0]


def write(path, array, metadata: dict | None = None) -> None:
    """Write `array` to TIFF, NIfTI, .npy or PNG (chosen by extension), atomically."""
    from .io import write as _write

    _write(path, array, metadata)
