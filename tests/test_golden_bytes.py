"""The same input, options and seed give the same bytes: hashes recorded before the code was
restructured, so moving code cannot change a single byte of an encode.

Float results depend on the CPU's vector unit, its maker's kernels and torch's build, so the
hashes hold where they were recorded (`RECORDED_ON`: the AVX-512 machines, and AVX2 ones that
report "AMD EPYC", where 4 of the 10 cases differ); elsewhere the test is skipped, and
`TINC_RECORD_HASHES=1 pytest tests/test_golden_bytes.py -s` prints the machine's own."""

import hashlib
import os

import numpy as np
import pytest
import torch

from tinc import TincCodec, container


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            return next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    except OSError:
        return ""


# (vector unit, torch, numpy major, CPU model or None for any): which hashes hold there
AVX512, AVX2_EPYC = ("AVX512", "2.13.0+cpu", "2", None), ("AVX2", "2.13.0+cpu", "2", "AMD EPYC")
MACHINE = (torch.backends.cpu.get_cpu_capability(), torch.__version__, np.__version__.split(".")[0], _cpu_model())
RECORDED_ON = next((key for key in (AVX512, AVX2_EPYC) if key[:3] == MACHINE[:3] and key[3] in (None, MACHINE[3])), None)

pytestmark = pytest.mark.usefixtures("one_thread")


def _smooth(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    values = sum(np.sin((3 + i) * g + rng.uniform(0, 3)) for i, g in enumerate(grids))
    return values + 0.05 * rng.standard_normal(shape)


def _uint16(values) -> np.ndarray:
    values = (values - values.min()) / (values.max() - values.min())
    return (values * 60000).astype(np.uint16)


FAST = dict(steps=40, batch=1 << 12, quiet=True)

# name: (input, options, sha256 of the encoded bytes)
CASES = {
    "depth0": (lambda brain32: brain32, dict(levels=0, ratio=48, **FAST)),
    "depth1": (lambda brain32: brain32, dict(levels=1, ratio=32, **FAST)),
    "depth2-auto-weights": (lambda brain32: brain32, dict(levels=2, ratio=16, level_weights="auto", **FAST)),
    "depth1-variance-lossweight": (lambda brain32: brain32, dict(levels=1, ratio=24, intra="variance",
                                                                 loss_weight=((0, 20000, 0.5),), **FAST)),
    "channels": (lambda _: _uint16(_smooth((24, 20, 3))), dict(channel_axis=-1, ratio=12, **FAST)),
    "4d": (lambda _: _smooth((6, 10, 12, 5)).astype(np.float32), dict(ratio=10, **FAST)),
    "float32-weights": (lambda brain32: brain32, dict(levels=1, ratio=4, weight_bits=32, **FAST)),
    # two starts, and a fit restarted from the blocks' means
    "starts-and-restart": (lambda _: _uint16(_smooth((24, 24, 24))), dict(levels=1, ratio=4, steps=2000, batch=512,
                                                                          starts=2, lr=0.1, quiet=True)),
    "max-error": (lambda brain32: brain32, dict(levels=1, ratio=64, max_error=200, **FAST)),
    "automatic": (lambda brain64: brain64, dict(ratio=64, **FAST)),
}
HASHES_AVX512 = {
    "4d": "3db0e15aad4db9b937749f0d5f589500774b616fe24addfd607552ef15241958",
    "automatic": "eba6fcc6709fe8aa88cc3a4fbe82a1fe846504184a2f7cb07935b5a87c7151b2",
    "channels": "b13b0a42d0eb98c17b4efe8db222a7a3af9da2a47a92c791e584d02e1a9227e1",
    "depth0": "4e946950e887cb9765a6a3eaa23335d3b3db9282acff2f4b4d4efca8d82beeb3",
    "depth1": "0c203213336cb7a141dbb06923fe562068fd32ac45a023f70458f4c377e6483c",
    "depth1-variance-lossweight": "78e99d7db71dba43f93dad17dd40f2c295dcae85eb3408ca74e311bbaaf1a695",
    "depth2-auto-weights": "2f64344f57238c52c7e1de63d4989c5f43db85bee29a189c72901c828b358877",
    "float32-weights": "d1701333238b1efc847ba1a8a62c01423cccd3a41168f39a345016e2d769e416",
    # the residual's context coder (CORR method 4) replaced LZMA2 / Brotli here: the network
    # part below is the one recorded before, the correction 7098 bytes instead of 9447
    "max-error": "9f6030a5361d08910d7c44864f2bfa9bc183ea0561f70433f5b88c00b47a7673",
    "starts-and-restart": "f82d82b94340c307eedfcb71a34af6e09314c17dd200667544ee8082587e66e8",
}
# recorded at a55ad14, whose bytes on AVX-512 are those above
DIFFERENT_ON_AVX2_EPYC = {
    "automatic": "5984a41f127d70683acc1e65aaeccb0f8e88750deacc816bcc5d55f8e21a8dc2",
    "depth2-auto-weights": "b0cb18824d5af82dedc09550e8decfdf031446820afb32f975131bf71ca8b3d7",
    "float32-weights": "3963656a46d5415ccfe27a3d171a51df81bc95a383a44764140dc1819a5166ea",
    "starts-and-restart": "abc4b89b2e41b39a24d06ebe19a847b7dc9be970938a71095b150b48c6f5f226",
}
HASHES = {AVX512: HASHES_AVX512, AVX2_EPYC: {**HASHES_AVX512, **DIFFERENT_ON_AVX2_EPYC}}
# the max-error file without its CORR section: the network, unchanged by the residual's coder
NETWORK_PART = {"max-error": "2927242a692b4911a1ee4a5b52ca7e5da5723f93dc76ee79380e8d0c9ff8e704"}


def _input(name, brain32, brain64):
    make, _ = CASES[name]
    return make(brain64 if name == "automatic" else brain32)


@pytest.mark.parametrize("name", sorted(CASES))
def test_encode_gives_the_recorded_bytes(name, brain32, brain64):
    data = TincCodec(**CASES[name][1]).encode(_input(name, brain32, brain64))
    digest = hashlib.sha256(data).hexdigest()
    if os.environ.get("TINC_RECORD_HASHES"):
        print(f'\n    "{name}": "{digest}",')
        return
    if RECORDED_ON is None:
        pytest.skip(f"hashes recorded on {list(HASHES)}, this machine is {MACHINE}")
    assert digest == HASHES[RECORDED_ON][name]
    if name in NETWORK_PART:
        parsed = container.unpack(data)
        network = container.pack(parsed.header, parsed.weights, parsed.metadata)
        assert hashlib.sha256(network).hexdigest() == NETWORK_PART[name]
