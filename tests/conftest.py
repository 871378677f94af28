import os

import numpy as np
import pytest
import tifffile

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.fixture(scope="session")
def brain64() -> np.ndarray:
    """The 64^3 uint16 HiP-CT crop from shared/data, without its trailing singleton axis."""
    return tifffile.imread(os.path.join(SHARED, "brain64.tif"))[..., 0]


@pytest.fixture(scope="session")
def brain32(brain64) -> np.ndarray:
    return np.ascontiguousarray(brain64[16:48, 16:48, 16:48])


FAST = dict(steps=40, batch=1 << 14, quiet=True)
