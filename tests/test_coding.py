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


def test_explicit_steps_round_each_tensor_to_its_own_step():
    codes = [-2000, -1500, -900, 0, -1024]
    decoded = coding.decode(coding.encode_with_steps(TENSORS, codes), SIZES)
    for values, restored, code in zip(TENSORS, decoded, codes):
        step = coding.step_of(code)
        assert np.allclose(restored / step, np.rint(restored / step), atol=1e-3)
        assert np.abs(values - restored).max(initial=0) <= step / 2 + 1e-7


def test_step_codes_follow_the_scales_given():
    scales = np.array([1.0, 4.0, 0.25, 1.0, 1.0])
    codes = coding.step_codes(TENSORS, -8.0, scales)
    steps = np.array([coding.step_of(c) for c in codes])
    assert np.allclose(steps[:3] / (2.0 ** -8 * scales[:3]), 1, rtol=2 ** (1 / 256) - 1 + 1e-9)
    assert coding.step_codes(TENSORS, -8.0) == coding.step_codes(TENSORS, -8.0, [np.std(t) if t.size else 0 for t in TENSORS])


def test_sensitivity_scales_give_steps_inversely_proportional_to_the_root_curvature():
    sensitivities = np.array([1.0, 4.0, 16.0, 0.0, 100.0])
    scales = coding.sensitivity_scales(TENSORS, sensitivities)
    assert scales[0] / scales[1] == pytest.approx(2) and scales[1] / scales[2] == pytest.approx(2)
    assert np.isfinite(scales).all() and scales[3] == scales.max()  # a tensor nothing depends on gets the coarsest step
    # normalised so that log2_quality keeps its meaning on average: same size-weighted log mean as the stds
    sizes = np.array(SIZES, dtype=float)
    spreads = np.array([max(np.std(t), 1e-8) if t.size else 1.0 for t in TENSORS])
    assert np.sum(sizes * np.log(scales)) == pytest.approx(np.sum(sizes * np.log(spreads)))


def test_steps_from_sensitivities_lose_less_than_std_steps_at_the_same_size():
    # two tensors alike in spread, one 100 times as sensitive: at equal bytes, its finer step
    # buys a lower weighted error than equal std-relative steps
    tensors = [RNG.normal(0, 0.1, 5000), RNG.normal(0, 0.1, 5000)]
    sensitivities = np.array([100.0, 1.0])

    def weighted_error(scales):
        coded, _ = coding.encode_to_budget(tensors, 5000, scales)
        restored = coding.decode(coded, [5000, 5000])
        return sum(s * np.sum((t - r) ** 2) for s, t, r in zip(sensitivities, tensors, restored))

    assert weighted_error(coding.sensitivity_scales(tensors, sensitivities)) < 0.8 * weighted_error(None)
