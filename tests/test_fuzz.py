"""The decoder under fuzzing: benchmarks/fuzz.py's mutations and oracle on a few thousand
inputs, hypothesis-driven header and container forgeries, and the output-size opt-in."""

import argparse
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinc
from tinc import container
from tinc.cli import main
from tinc.decoder import Decoder
from tinc.errors import TincFormatError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fuzz  # noqa: E402

SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


@pytest.fixture(scope="module")
def seeds():
    return fuzz.make_seeds()


@pytest.fixture(scope="module", autouse=True)
def alarm():
    """fuzz.check bounds each decode's time with SIGALRM, which must raise fuzz.Hang."""

    def hang(signum, frame):
        raise fuzz.Hang

    previous = signal.signal(signal.SIGALRM, hang)
    yield
    signal.signal(signal.SIGALRM, previous)


def test_structured_mutations_keep_the_contract(seeds, tmp_path):
    args = argparse.Namespace(inputs=800, seed=7, time_bound=5.0, crashes=str(tmp_path), progress=0, verbose=False, target="decoder")
    tally = fuzz.run_structured(args, seeds)
    assert not tally.failures, tally.failures
    outcome = lambda mutation, result: tally.outcomes[(mutation, result)]  # noqa: E731
    for mutation in fuzz.MUTATIONS:
        assert outcome(mutation, "decoded") + outcome(mutation, "rejected") > 0, mutation
    # meaning-preserving rewrites decode exactly; damage is caught by the checksum
    assert outcome("shuffle-sections", "decoded") > 0 and outcome("unknown-section", "decoded") > 0
    for mutation in ("truncate", "bit-flips", "lying-length", "version", "meta-bomb"):
        assert outcome(mutation, "rejected") > 0 and outcome(mutation, "decoded") == 0, mutation
    assert tally.max_seconds < 5.0


@SETTINGS
@given(st.integers(0, 2), st.sampled_from(sorted(fuzz.MUTATIONS)), st.integers(0, 2**32))
def test_any_mutation_of_a_seed_meets_the_oracle(seeds, index, mutation, rng_seed):
    import random

    seed = seeds[index]
    made = fuzz.MUTATIONS[mutation](seed, random.Random(rng_seed))
    if made is not None:
        assert fuzz.check(*made, seed, 5.0) in ("decoded", "rejected")


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_behind_a_valid_checksum_are_a_format_error(body):
    for data in (fuzz.seal(container.MAGIC + bytes([container.FORMAT_VERSION]) + body), body):
        with pytest.raises(TincFormatError):
            Decoder(data, max_voxels=fuzz.MAX_VOXELS)


HUGE = st.sampled_from(fuzz.HUGE) | st.integers(0, 2**70)


@SETTINGS
@given(
    st.integers(0, 2),
    st.fixed_dictionaries({}, optional={
        "shape": st.lists(HUGE, min_size=1, max_size=9),
        "dtype": st.sampled_from(fuzz.DTYPES) | st.text(max_size=6),
        "channel_axis": st.none() | st.integers(-128, 127),
        "range": st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=2, max_size=2),
        "value_range": st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=2, max_size=2),
        "w0": st.floats(allow_nan=True, allow_infinity=True),
        "splits": st.lists(st.lists(st.sampled_from([1, 2]), min_size=1, max_size=5), max_size=14),
        "layers": st.lists(st.integers(0, 255), max_size=6),
        "widths": st.lists(HUGE | st.lists(HUGE, max_size=70), max_size=6),
    }),
)
def test_forged_header_fields_are_rejected_or_decode_to_the_declared_array(seeds, index, changes):
    seed = seeds[index]
    parsed = container.unpack(seed.data)
    try:
        forged = container.pack({**parsed.header, **changes}, parsed.weights, parsed.metadata)
    except (ValueError, OverflowError, TypeError, IndexError, UnicodeEncodeError, fuzz.struct.error):
        return  # not representable in the format at all
    assert fuzz.check(forged, "resealed", seed, 5.0) in ("decoded", "rejected")


def test_a_header_claiming_a_trillion_voxels_is_refused_before_any_allocation(seeds, monkeypatch):
    parsed = container.unpack(seeds[0].data)
    trillion = container.pack({**parsed.header, "shape": [10**4, 10**4, 10**4]}, parsed.weights)

    def no_model(*args, **kwargs):
        raise AssertionError("the networks were allocated")

    monkeypatch.setattr("tinc.format.TreeINR", no_model)
    with pytest.raises(TincFormatError, match="1000000000000 elements.*max_voxels"):
        tinc.decompress(trillion)
    with pytest.raises(TincFormatError, match="max_voxels"):
        tinc.decompress(trillion, max_voxels=10**12 - 1)


def test_max_voxels_is_an_opt_in_both_ways(seeds, tmp_path, capsys):
    seed = seeds[0]  # 12 x 10 x 9 = 1080 elements
    with pytest.raises(TincFormatError, match="1080 elements, more than the 1079 allowed"):
        tinc.decompress(seed.data, max_voxels=1079)
    assert np.array_equal(tinc.decompress(seed.data, max_voxels=1080), seed.array)
    path = tmp_path / "s.tinc"
    path.write_bytes(seed.data)
    assert main(["decompress", str(path), "-o", str(tmp_path / "s.npy"), "--max-voxels", "1000", "--quiet"]) == 2
    assert "more than the 1000 allowed" in capsys.readouterr().err and not (tmp_path / "s.npy").exists()
    assert main(["decompress", str(path), "-o", str(tmp_path / "s.npy"), "--max-voxels", "1080", "--quiet"]) == 0
    assert np.array_equal(np.load(tmp_path / "s.npy"), seed.array)


def test_duplicate_sections_and_meta_floods_are_format_errors(seeds):
    preamble, parts = fuzz.sections(seeds[0].data)
    head = [p for p in parts if p[0] == container.HEAD]
    with pytest.raises(TincFormatError, match="two HEAD sections"):
        container.unpack(fuzz.assemble(preamble, parts + head))
    flood = [(t, p) for t, p in parts if t != container.META] + [(container.META, fuzz.zlib_bomb(1 << 24))]
    with pytest.raises(TincFormatError, match="META section"):
        container.unpack(fuzz.assemble(preamble, flood))


def test_forged_range_beyond_the_dtype_and_non_finite_weights_are_rejected(seeds):
    parsed = container.unpack(seeds[2].data)  # float32, raw float32 weights
    with pytest.raises(TincFormatError, match="does not fit"):
        tinc.decompress(container.pack({**parsed.header, "range": [0.0, 1e308]}, parsed.weights))
    weights = bytearray(parsed.weights)
    weights[1:5] = np.float32(np.inf).tobytes()
    with pytest.raises(TincFormatError, match="not finite"):
        tinc.decompress(container.pack(parsed.header, bytes(weights)))


def test_zarr_chunk_bytes_meet_the_same_contract(seeds):
    """Chunk bytes are .tinc containers, decoded by the chunk codec; forged header fields
    included, since the chunk's shape bounds what a chunk may declare."""
    pytest.importorskip("tinc.zarr_codec")
    import random

    rng = random.Random(3)
    outcomes = set()
    for _ in range(400):
        seed = rng.choice(seeds)
        mutation = rng.choice(sorted(fuzz.MUTATIONS))
        made = fuzz.MUTATIONS[mutation](seed, rng)
        if made is not None:
            outcomes.add(fuzz.check(*made, seed, 5.0, fuzz.decode_zarr_chunk))
    assert outcomes == {"decoded", "rejected"}
