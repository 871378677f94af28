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


@pytest.fixture(scope="module")
def one_thread():
    """Tiny fits: a second torch thread only waits on the first (and on a busy machine spins).
    A module opts in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def decodes(monkeypatch):
    """Boxes passed to Decoder.decode_into, in call order."""
    from tinc.decoder import Decoder

    boxes = []
    original = Decoder.decode_into

    def spy(self, out, box, sampling, group_bytes=None):
        boxes.append(box)
        return original(self, out, box, sampling, group_bytes)

    monkeypatch.setattr(Decoder, "decode_into", spy)
    return boxes
