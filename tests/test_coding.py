import os

import numpy as np
import pytest

from tinc import coding, container, sorted_runs
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
            # the stored step is rounded up, by at most 2^(1/16) (`step_codes`)
            assert np.abs(values - restored).max() <= step / 2 * 2 ** (1 / 16) + 1e-7


def test_coarser_quality_gives_smaller_output():
    sizes = [len(coding.encode(TENSORS, q)) for q in (-10, -8, -6, -4, -2)]
    assert sizes == sorted(sizes, reverse=True)
    # near the entropy of a uniform quantizer: about 1 bit per halving of the step
    assert 0.8 * 6300 / 8 < sizes[1] - sizes[2] < 1.3 * 2 * 6300 / 8


def test_encode_to_budget_lands_just_under_the_budget():
    for budget in (1500, 4000, 9000):
        coded, _ = coding.encode_to_budget(TENSORS, budget)
        assert 0.97 * budget <= len(coded) <= budget


def test_budget_search_finds_the_finest_quality_that_fits_from_any_first_guess():
    for budget in (1500, 4000, 9000):
        coded, quality = coding.encode_to_budget(TENSORS, budget)
        assert coded == coding.encode(TENSORS, quality)
        assert len(coding.encode(TENSORS, quality - 1 / 256)) > budget  # one unit finer does not fit
        for near in (-27.0, quality - 0.5, quality, quality + 3, 9.0):
            assert coding.encode_to_budget(TENSORS, budget, near=near) == (coded, quality)


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
    codes = [-2000, -1504, -896, 0, -1024]
    decoded = coding.decode(coding.encode_with_steps(TENSORS, codes), SIZES)
    for values, restored, code in zip(TENSORS, decoded, codes):
        step = coding.step_of(code)
        assert np.allclose(restored / step, np.rint(restored / step), atol=1e-3)
        assert np.abs(values - restored).max(initial=0) <= step / 2 + 1e-7


def test_step_codes_follow_the_scales_given():
    scales = np.array([1.0, 4.0, 0.25, 1.0, 1.0])
    codes = coding.step_codes(TENSORS, -8.0, scales)
    steps = np.array([coding.step_of(c) for c in codes])
    ratios = steps[:3] / (2.0 ** -8 * scales[:3])
    assert np.all(ratios >= 1 - 1e-9) and np.all(ratios < 2 ** (1 / 16))
    assert coding.step_codes(TENSORS, -8.0) == coding.step_codes(TENSORS, -8.0, [np.std(t) if t.size else 0 for t in TENSORS])


def test_step_codes_share_a_grid_and_move_together_with_the_quality():
    for quality in (-8.0, -8 + 5 / 256, -8 + 15 / 256, -8 + 16 / 256):
        codes = coding.step_codes(TENSORS, quality)
        assert all((c - codes[0]) % coding.STEP_GRID == 0 for c in codes)
        finer = coding.step_codes(TENSORS, quality - 1 / 256)
        assert [c - f for c, f in zip(codes, finer)] == [1] * len(codes)
    # so the size falls step by step as the quality coarsens, which the budget search relies on
    # (scales apart by half a code: a step grid from the quality's fraction would leave one behind)
    tensors, scales = [RNG.normal(0, 0.1, 3000) for _ in range(2)], [1.0, 2 ** (0.5 / 256)]
    sizes = [len(coding.encode(tensors, q, scales)) for q in np.linspace(-8, -7.5, 701)]
    assert all(a >= b for a, b in zip(sizes, sizes[1:])) and sizes[0] > sizes[-1]
    with pytest.raises(ValueError, match="multiples"):
        coding.encode_with_steps(TENSORS, [-2000, -1999, -900, 0, -1024])


def test_a_tensor_header_takes_three_bytes():
    one = coding.encode_with_steps(TENSORS[:1], [-2000])
    repeated = coding.encode_with_steps(TENSORS[:1] * 2 + [np.zeros(0)] * 6, [-2000] * 8)
    # the second copy adds its stream and one header; the empty tensors add a header each
    stream = len(one) - 1 - 4  # marker, header with a two-byte first step code
    assert len(repeated) - len(one) - 7 * 3 == pytest.approx(stream, abs=4)


@pytest.mark.parametrize("version", [2, 3, 4])
def test_files_of_earlier_formats_and_coders_still_decode(version):
    """format4.tinc was written by the coder of commit bd40e3b, before the sorted runs' tables
    were built all at once: a coder that changed their order or models would fail here."""
    import tinc

    here = os.path.join(os.path.dirname(__file__), "data")
    data = open(os.path.join(here, f"format{version}.tinc"), "rb").read()
    assert data[4] == version
    expected = np.load(os.path.join(here, f"format{version}-decoded.npy"))
    restored = tinc.decompress(data)
    assert restored.dtype == expected.dtype and np.abs(restored.astype(int) - expected).max() <= 1
    assert np.mean(restored == expected) > 0.99
    if version == 4:
        parsed = container.unpack(data)
        assert any(sorted_runs for _, sorted_runs in coding.section_tensors(parsed.weights, 2 * (sum(parsed.header["layers"]) + 1)))


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


def _rounded_over_budget(overshoot: int):
    """Tensors rounded to their steps, their latent values, the codes, and a budget `overshoot` bytes short."""
    latent = [RNG.normal(0, 0.1, 3000), RNG.normal(0, 0.02, 500)]
    codes = [-896, -1408]
    rounded = [np.rint(t / coding.step_of(c)) * coding.step_of(c) for t, c in zip(latent, codes)]
    return rounded, latent, codes, len(coding.encode_with_steps(rounded, codes)) - overshoot


def test_weights_just_over_the_budget_give_up_their_cheapest_roundings():
    rounded, latent, codes, budget = _rounded_over_budget(6)
    sensitivities = np.array([1.0, 1.0])
    coded = coding.encode_within_budget(rounded, latent, codes, budget, sensitivities)
    assert coded is not None and len(coded) <= budget
    restored = coding.decode(coded, [t.size for t in rounded])
    for values, kept, latent_values, code in zip(rounded, restored, latent, codes):
        step = coding.step_of(code)
        moved = np.abs(values - kept) > step / 2
        # a few symbols, each one step toward zero, among those whose latent value sits near a boundary
        assert np.allclose(np.abs(values[moved]) - np.abs(kept[moved]), step)
        assert np.abs(values - kept).max() <= step * 1.0001
        if moved.any():
            distance = np.abs(latent_values[moved] / step - np.rint(latent_values[moved] / step))
            assert distance.mean() > 0.3 > np.abs(latent_values / step - np.rint(latent_values / step)).mean()
    assert 0 < sum(int((np.abs(v - k) > coding.step_of(c) / 2).sum()) for v, k, c in zip(rounded, restored, codes)) < 0.1 * 3500


def test_weights_far_over_the_budget_are_left_to_a_fresh_rounding():
    rounded, latent, codes, budget = _rounded_over_budget(400)
    assert coding.encode_within_budget(rounded, latent, codes, budget, np.array([1.0, 1.0])) is None


def _sorted_runs(rng: np.random.Generator, family: str) -> tuple[np.ndarray, np.ndarray]:
    """Runs of 1 to 40 non-negative values, ascending within each run (a canonical bias tensor)."""
    runs = rng.integers(1, 41, size=30)
    draw = rng.normal if family == "gaussian" else rng.laplace
    values = np.concatenate([np.sort(np.abs(draw(0, 0.1, n))) for n in runs])
    return values, runs


@pytest.mark.parametrize("family", ["gaussian", "laplace"])
def test_sorted_runs_round_trip_and_save_their_signs_and_orders(family):
    import math

    rng = np.random.default_rng(3)
    values, runs = _sorted_runs(rng, family)
    tensors = [TENSORS[0], values, TENSORS[1]]
    all_runs = [None, runs, None]
    codes = coding.step_codes(tensors, -5.0)
    sorted_coded, plain = coding.encode_with_steps(tensors, codes, all_runs), coding.encode_with_steps(tensors, codes)
    restored = coding.decode(sorted_coded, [t.size for t in tensors], all_runs)
    for original, kept, code in zip(tensors, restored, codes):
        step = coding.step_of(code)
        assert np.allclose(kept, np.rint(original / step) * step, atol=1e-6)
    # ideally a sign per value and log2(n!) per run of n: within a fifth of that, allowing for ties
    ideal = sum(math.lgamma(n + 1) / math.log(2) + n for n in runs) / 8
    assert 0.8 * ideal < len(plain) - len(sorted_coded) < 1.05 * ideal


def test_runs_that_are_not_sorted_are_coded_as_usual():
    values, runs = _sorted_runs(np.random.default_rng(4), "gaussian")
    for broken in (values[::-1].copy(), -values):
        coded = coding.encode([broken], -5.0, runs=[runs])
        assert coded == coding.encode([broken], -5.0)
        assert np.allclose(coding.decode(coded, [broken.size], [runs])[0], broken, atol=0.05)


def test_a_sorted_tensor_needs_its_runs_to_decode():
    values, runs = _sorted_runs(np.random.default_rng(5), "gaussian")
    coded = coding.encode([values], -5.0, runs=[runs])
    with pytest.raises(TincFormatError, match="tensor 0 cannot be coded as sorted runs"):
        coding.decode(coded, [values.size])
    with pytest.raises(TincFormatError, match="tensor 0 cannot be coded as sorted runs"):
        coding.decode(coded, [values.size], [runs[1:]])


def test_sorted_tables_come_from_basic_arithmetic_that_matches_the_library_functions():
    import math

    # the decoder's tables must be the encoder's bit for bit on any machine, so they avoid
    # libm's exp and pow; these are the values those would give, to a few units in the last place
    for y in (-1e-9, -0.3, -1.0, -7.7, -100.0, -700.0):
        assert sorted_runs.exp(y) == pytest.approx(math.exp(y), rel=1e-13)
    assert all(coding._exact_scale(byte) == pytest.approx(coding.scale_of(byte), rel=1e-14) for byte in range(256))


def test_moves_into_the_budget_leave_sorted_runs_alone():
    rounded, latent, codes, _ = _rounded_over_budget(0)
    values, runs = _sorted_runs(np.random.default_rng(6), "gaussian")
    code = coding.step_codes([values], -5.0)[0]
    code += (codes[0] - code) % coding.STEP_GRID
    rounded, latent, codes = rounded + [np.rint(values / coding.step_of(code)) * coding.step_of(code)], latent + [values], codes + [code]
    all_runs = [None, None, runs]
    budget = len(coding.encode_with_steps(rounded, codes, all_runs)) - 6
    coded = coding.encode_within_budget(rounded, latent, codes, budget, np.ones(3), runs=all_runs)
    assert coded is not None and len(coded) <= budget
    restored = coding.decode(coded, [t.size for t in rounded], all_runs)
    assert np.allclose(restored[2], rounded[2], atol=1e-6)
    assert not np.allclose(restored[0], rounded[0], atol=1e-6)
