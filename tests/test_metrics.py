import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from tinc import metrics
from tinc.errors import TincInputError

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("dtype, low, high", [(np.uint8, 0, 200), (np.uint16, 1000, 5000), (np.int16, 0, 3000), (np.int16, -3000, 3000)])
def test_psnr_matches_scikit_image_convention(dtype, low, high):
    a = RNG.integers(low, high, size=(8, 9, 10)).astype(dtype)
    b = np.clip(a.astype(np.int64) + RNG.integers(-5, 6, size=a.shape), np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)
    assert metrics.psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b), rel=1e-9)


def test_psnr_range_uses_the_data_span_and_identity_is_infinite():
    a = np.array([0.0, 1.0, 2.0, 4.0], np.float32)
    b = a + np.array([0.0, 0.0, 0.0, 0.4], np.float32)
    expected = 10 * np.log10(16 / (0.16 / 4))
    assert metrics.psnr_range(a, b) == pytest.approx(expected, rel=1e-5)
    assert metrics.psnr(a, a) == float("inf")


def test_ssim_iterates_over_short_axes_and_detects_damage():
    from skimage.metrics import structural_similarity

    a = RNG.random((40, 40, 3, 2))
    b = a + RNG.normal(0, 0.1, a.shape)
    span = a.max() - a.min()
    per_slice = [structural_similarity(a[..., i, j], b[..., i, j], data_range=span) for i in range(3) for j in range(2)]
    assert metrics.ssim(a, b) == pytest.approx(np.mean(per_slice))
    assert metrics.ssim(a, a) == pytest.approx(1.0)
    assert metrics.ssim(a, a + RNG.normal(0, 0.3, a.shape)) < metrics.ssim(a, b) < 1


def test_accuracy_counts_voxels_on_the_same_side():
    a = np.array([100, 300, 600, 50])
    b = np.array([250, 300, 400, 50])
    assert metrics.accuracy(a, b, 200) == 0.75
    assert metrics.accuracy(a, b, 500) == 0.75


def test_shape_mismatch_is_an_input_error():
    with pytest.raises(TincInputError, match="shapes differ"):
        metrics.psnr(np.zeros((2, 2)), np.zeros((2, 3)))
