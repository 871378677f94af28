import numpy as np
import pytest

from tinc import coding
from tinc.errors import TincConfigError, TincFormatError

RNG = np.random.default_rng(0)
TENSORS = [RNG.uniform(-0.1, 0.1, 4000), RNG.normal(0, 0.02, 300), RNG.laplace(0, 0.1, 2000), np.zeros(0), np.full(7, 0.25)]
SIZES = [t.size for t in TENSORS]


def test_raw_float32_round_trip_is_exact():
    decoded = coding.decode(coding.encode(TENSORS, None), SIZES)
    assert all(np.array_equal(a.astype(np.float32), b) for a, b in zip(TENSORS, decoded))


@pytest.mark.parametrize("log2_quality", [-10.0, -6.0, -3.0])
def test_quantization_error_is_at_most_half_a_step(log2_quality):
    decoded = coding.decode(coding.encode(TENSORS, log2_quality), SIZES)
    for values, restored in zip(TENSORS, decoded):
        if values.size:
            step = 2.0 ** log2_quality * max(np.std(values), 1e-8)
            step = max(step, np.abs(values).max() / coding.MAX_SYMBOL)
            # the stored step is rounded up to a power of 2^(1/256)
            assert np.abs(values - restored).max() <= step / 2 * 2 ** (1 / 256) + 1e-7


def test_coarser_quality_gives_smaller_output():
    sizes = [len(coding.encode(TENSORS, q)) for q in (-10, -8, -6, -4, -2)]
    assert sizes == sorted(sizes, reverse=True)
    # near the entropy of a uniform quantizer: about 1 bit per halving of the step
    assert 0.8 * 6300 / 8 < sizes[1] - sizes[2] < 1.3 * 2 * 6300 / 8


def test_encode_to_budget_lands_just_under_the_budget():
    for budget in (1500, 4000, 9000):
        coded, _ = coding.encode_to_budget(TENSORS, budget)
        assert 0.97 * budget <= len(coded) <= budget


def test_impossible_budget_is_a_config_error():
    with pytest.raises(TincConfigError, match="lower --ratio"):
        coding.encode_to_budget(TENSORS, 20)


def test_corrupt_streams_raise_format_errors():
    coded = coding.encode(TENSORS, -6)
    with pytest.raises(TincFormatError):
        coding.decode(coded[:-6], SIZES)
    with pytest.raises(TincFormatError):
        coding.decode(b"\x07" + coded[1:], SIZES)
    with pytest.raises(TincFormatError):
        coding.decode(coding.encode(TENSORS, None)[:-1], SIZES)
