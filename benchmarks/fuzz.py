"""Fuzz the `.tinc` decoder: every input decodes to the array it was made from, or raises
`TincFormatError`; nothing else, within a time bound and a memory bound per input.

    python benchmarks/fuzz.py --inputs 100000 --seed 0        # structured mutations (default)
    python benchmarks/fuzz.py --engine atheris --inputs 100000  # coverage-guided (pip install atheris)

Inputs are mutations of a few small seed files (a 3-D uint16 volume with a META section,
an RGB image with unequal node widths, a 1-D float32 signal with raw float32 weights, the
volume with a `--max-error` correction).
Two families, with different oracles:

* intact: bytes changed without fixing the CRC-32 (truncations at every section boundary
  and elsewhere, bit flips, byte writes, insertions, deletions, swapped sections). Unless the
  bytes equal the seed's, the decoder must raise TincFormatError.
* resealed: the container rebuilt with a valid CRC-32, as a deliberate forger or a buggy
  writer would (shuffled, dropped, duplicated and unknown sections, lying length fields,
  unknown versions, huge / zero / negative header fields, random bytes inside HEAD, WGTS,
  META and CORR, zlib bombs). The decoder must raise TincFormatError or return an array of the
  declared shape and dtype whose values are finite and inside the declared range; a
  resealing that changes nothing of meaning (reordered or unknown sections) must decode
  to the seed's exact array.

Each input is decoded with `Decoder(data, max_voxels=MAX_VOXELS)` (then `.decode()`) and
described as `tinc info` does. Any other exception, a decode slower than `--time-bound`
seconds (cut by SIGALRM), or a rise of the process's peak RSS beyond the input's bound
(computed from its checked header: see `allocation_bound`) is a failure; failing inputs are
saved under `--crashes`. The last line is machine-readable.
"""


# One file, longer than the project's modules, on purpose: the seeds, the mutators and the
# oracles are read together, it runs as a script, and tests/test_fuzz.py imports it whole.
from __future__ import annotations

import argparse
import functools
import os
import random
import resource
import signal
import struct
import sys
import time
import traceback
import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from tinc import TincCodec, container
from tinc.cli import describe
from tinc.format import plan_from_header
from tinc.decoder import Decoder
from tinc.errors import TincFormatError

MAX_VOXELS = 1 << 20  # the fuzzer opts into a small output cap: hostile shapes stay cheap to try
HUGE = [0, 1, 2, 3, 255, 256, 4096, 4097, 1 << 20, 1 << 31, 1 << 32, 10**12, (1 << 63) - 1, 1 << 63, (1 << 70) - 1]
DTYPES = ["|b1", "<c8", "|O", "<f16", "S3", "<M8[s]", "V4", "<U2", "(2,)<i4", "i4,i4", "", "\xff\xfe", "<i8", "|u1",
          ">f8", "<f2", "float64", "int"]


@dataclass
class Seed:
    name: str
    data: bytes
    array: np.ndarray  # its decode: what every unchanged or meaning-preserving input must give


def make_seeds() -> list[Seed]:
    """Small deterministic seed files covering the header's optional fields and both weight codings."""
    rng = np.random.default_rng(0)
    grid = np.indices((12, 10, 9)).sum(axis=0)
    volume = (grid * 300 + rng.integers(0, 200, grid.shape)).astype(np.uint16)
    image = rng.integers(0, 256, (32, 30, 3)).astype(np.uint8)
    signal_1d = np.sin(np.linspace(0, 6, 300)).astype(np.float32)
    fast = dict(steps=20, batch=4096, quiet=True, min_width=4)
    made = [
        ("volume-u2-meta", volume, dict(ratio=6, levels=1, **fast), {"nifti_header": b"\x00" * 40, "note": b"x"}),
        ("rgb-variance", image, dict(ratio=3, levels=1, intra="variance", channel_axis=-1, value_range=(0.0, 2.0), w0=20.0, **fast), None),
        ("signal-f4-raw", signal_1d, dict(ratio=2, levels=0, weight_bits=32, **fast), None),
        # a CORR section (the context coder's, `correction.CONTEXT`): forged residual streams
        ("volume-u2-bound", volume, dict(ratio=6, levels=1, max_error=40, **fast), None),
    ]
    seeds = []
    for name, array, options, metadata in made:
        data = TincCodec(**options).encode(array, metadata=metadata)
        seeds.append(Seed(name, data, Decoder(data).decode()))
    return seeds


# ---------------------------------------------------------------------- container surgery
def sections(data: bytes) -> tuple[bytes, list[tuple[int, bytes]]]:
    """Preamble and (tag, payload) list of a well-formed file."""
    reader = container.Reader(data[:-4], 5, "")
    parts = []
    while not reader.done():
        tag = reader.byte()
        parts.append((tag, reader.take(reader.varint())))
    return data[:5], parts


def assemble(preamble: bytes, parts: list[tuple[int, bytes]], lengths: dict[int, bytes] | None = None) -> bytes:
    """Sections back to bytes with a valid CRC; `lengths` replaces section i's length varint."""
    lengths = lengths or {}
    body = preamble + b"".join(bytes([tag]) + lengths.get(i, container.varint(len(payload))) + payload
                               for i, (tag, payload) in enumerate(parts))
    return seal(body)


def seal(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def boundaries(data: bytes) -> list[int]:
    """Offsets where a section, its length, or its payload starts, and the checksum."""
    reader = container.Reader(data[:-4], 5, "")
    cuts = [0, 4, 5]
    while not reader.done():
        cuts.append(reader.position)
        reader.byte()
        cuts.append(reader.position)
        length = reader.varint()
        cuts.append(reader.position)
        reader.take(length)
    return cuts + [len(data) - 4, len(data) - 1]


def _flip(payload: bytes, rng: random.Random, flips: int) -> bytes:
    out = bytearray(payload)
    for _ in range(flips):
        if out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def _splice(payload: bytes, rng: random.Random) -> bytes:
    """One byte-level edit: overwrite, insert, delete or duplicate a short run."""
    out = bytearray(payload)
    at = rng.randrange(len(out) + 1)
    kind = rng.randrange(4)
    if kind == 0 and out:
        at = min(at, len(out) - 1)
        out[at] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
    elif kind == 1:
        out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    elif kind == 2:
        del out[at:at + rng.randint(1, 8)]
    else:
        out[at:at] = out[at:at + rng.randint(1, 16)]
    return bytes(out)


# ---------------------------------------------------------------------- mutations
# Each returns (bytes, expectation): "intact" (CRC not fixed), "resealed", or "same"
# (resealed, same meaning: must decode to the seed's array).
def m_truncate_boundary(seed: Seed, rng: random.Random):
    cut = rng.choice(boundaries(seed.data)) + rng.choice([-1, 0, 0, 1])
    return seed.data[:max(cut, 0)], "intact"


def m_truncate_anywhere(seed: Seed, rng: random.Random):
    return seed.data[:rng.randrange(len(seed.data))], "intact"


def m_bit_flips(seed: Seed, rng: random.Random):
    return _flip(seed.data, rng, rng.choice([1, 1, 2, 3, 8])), "intact"


def m_byte_edit(seed: Seed, rng: random.Random):
    return _splice(seed.data, rng), "intact"


def m_swap_sections_unsealed(seed: Seed, rng: random.Random):
    preamble, parts = sections(seed.data)
    rng.shuffle(parts)
    body = preamble + b"".join(bytes([t]) + container.varint(len(p)) + p for t, p in parts)
    return body + seed.data[-4:], "intact"


def m_append_garbage(seed: Seed, rng: random.Random):
    return seed.data + bytes(rng.randrange(256) for _ in range(rng.randint(1, 32))), "intact"


def m_shuffle_sections(seed: Seed, rng: random.Random):
    preamble, parts = sections(seed.data)
    rng.shuffle(parts)
    return assemble(preamble, parts), "same"


def m_unknown_section(seed: Seed, rng: random.Random):
    preamble, parts = sections(seed.data)
    tag = rng.choice([0, 5, 9, 200, 255])  # 4 is CORR
    parts.insert(rng.randrange(len(parts) + 1), (tag, bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))))
    return assemble(preamble, parts), "same"


def m_drop_or_duplicate_section(seed: Seed, rng: random.Random):
    preamble, parts = sections(seed.data)
    index = rng.randrange(len(parts))
    if rng.random() < 0.5:
        del parts[index]
    else:
        tag, payload = parts[index]
        parts.insert(rng.randrange(len(parts) + 1), (tag, _flip(payload, rng, rng.choice([0, 1]))))
    return assemble(preamble, parts), "resealed"


def m_lying_length(seed: Seed, rng: random.Random):
    preamble, parts = sections(seed.data)
    index = rng.randrange(len(parts))
    true = len(parts[index][1])
    lie = rng.choice([0, 1, true - 1, true + 1, true * 2, rng.randrange(1 << 16), *HUGE])
    encoded = container.varint(max(lie, 0)) if rng.random() < 0.8 else b"\xff" * rng.randint(9, 12) + b"\x01"
    return assemble(preamble, parts, {index: encoded}), "resealed"


def m_version(seed: Seed, rng: random.Random):
    body = bytearray(seed.data[:-4])
    body[4] = rng.choice([0, container.FORMAT_VERSION + 1, container.FORMAT_VERSION + 2, 127, 255])
    return seal(bytes(body)), "resealed"


def m_magic(seed: Seed, rng: random.Random):
    body = bytearray(seed.data[:-4])
    body[rng.randrange(4)] = rng.randrange(256)
    return seal(bytes(body)), "resealed"


def m_header_field(seed: Seed, rng: random.Random):
    """A semantic header edit: one field set to a hostile value, then repacked and resealed."""
    parsed = container.unpack(seed.data)
    header = dict(parsed.header)
    field = rng.choice(["shape", "dtype", "channel_axis", "range", "value_range", "w0", "splits", "layers", "widths"])
    if field == "shape":
        shape = list(header["shape"])
        if rng.random() < 0.2:
            shape = shape + [rng.choice(HUGE)] if rng.random() < 0.5 else shape[:-1] or [rng.choice(HUGE)]
        else:
            shape[rng.randrange(len(shape))] = rng.choice(HUGE + [s * 2 for s in shape] + [s - 1 for s in shape])
        header["shape"] = shape
    elif field == "dtype":
        header["dtype"] = rng.choice(DTYPES)
    elif field == "channel_axis":
        header["channel_axis"] = rng.choice([None, -128, -9, -2, -1, 0, 1, 2, 5, 127])
    elif field in ("range", "value_range"):
        values = [float("nan"), float("inf"), -float("inf"), 0.0, -1.0, 1e308, -1e308, 5e-324, 2.0**63, -(2.0**63)]
        header[field] = [rng.choice(values), rng.choice(values)]
    elif field == "w0":
        header["w0"] = rng.choice([float("nan"), float("inf"), 0.0, -30.0, 1e300, 5e-324])
    elif field == "splits":
        depth = rng.choice([0, 1, 2, 5, 12, 13, 40])
        ndim = len(header["splits"][0]) if header["splits"] else len(header["shape"])
        header["splits"] = [[rng.choice([1, 2]) for _ in range(ndim)] for _ in range(depth)]
    elif field == "layers":
        header["layers"] = [rng.choice([0, 1, 2, 16, 17, 255]) for _ in range(rng.choice([len(header["layers"]), 1, 3]))]
    else:
        widths = list(header["widths"])
        level = rng.randrange(len(widths))
        value = rng.choice(HUGE)
        if isinstance(widths[level], list) and rng.random() < 0.5:
            widths[level] = [rng.choice([w, value]) for w in widths[level]]
        elif rng.random() < 0.2:
            widths[level] = [value] * rng.choice([1, 2, 7, 8, 64])
        else:
            widths[level] = value
        header["widths"] = widths
    try:
        head = container.encode_header(header)
    except (ValueError, OverflowError, UnicodeEncodeError, struct.error):
        return None  # not representable in the format; another mutation is drawn
    preamble, parts = sections(seed.data)
    parts = [(tag, head if tag == container.HEAD else payload) for tag, payload in parts]
    return assemble(preamble, parts), "resealed"


def m_section_bytes(seed: Seed, rng: random.Random):
    """Random byte edits inside one section's payload, resealed: reaches the HEAD, WGTS and
    META parsers and the ANS decoder with inputs the checksum would otherwise stop."""
    preamble, parts = sections(seed.data)
    index = rng.randrange(len(parts))
    tag, payload = parts[index]
    for _ in range(rng.choice([1, 1, 2, 4])):
        payload = _flip(payload, rng, 1) if rng.random() < 0.5 else _splice(payload, rng)
    parts[index] = (tag, payload)
    return assemble(preamble, parts), "resealed"


def m_correction_bytes(seed: Seed, rng: random.Random):
    """Byte edits inside a CORR section's coded residuals (its method byte kept or changed),
    resealed: reaches the residual decoders (tables, ANS stream, raw bits) past the checksum."""
    preamble, parts = sections(seed.data)
    index = next((i for i, (tag, _) in enumerate(parts) if tag == container.CORR), None)
    if index is None:
        return None
    payload = parts[index][1]
    header, body = payload[:21], payload[21:]
    if rng.random() < 0.1:
        header = bytes([rng.randrange(6)]) + header[1:]
    for _ in range(rng.choice([1, 1, 2, 4])):
        body = _flip(body, rng, 1) if rng.random() < 0.5 else _splice(body, rng)
    parts[index] = (container.CORR, header + body)
    return assemble(preamble, parts), "resealed"


@functools.cache
def zlib_bomb(size: int) -> bytes:
    return zlib.compress(b"\x00" * size, 9)


def m_meta_bomb(seed: Seed, rng: random.Random):
    """META as a zlib bomb, garbage, or records with lying length varints."""
    choice = rng.randrange(3)
    if choice == 0:
        payload = zlib_bomb(rng.choice([1 << 20, 1 << 24, (1 << 24) + 1, 1 << 26]))
    elif choice == 1:
        payload = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
    else:
        payload = zlib.compress(container.varint(rng.choice(HUGE[:12])) + b"key" + container.varint(rng.choice(HUGE[:12])) + b"v")
    preamble, parts = sections(seed.data)
    parts = [(t, p) for t, p in parts if t != container.META] + [(container.META, payload)]
    return assemble(preamble, parts), "resealed"


MUTATIONS = {
    "truncate-boundary": m_truncate_boundary, "truncate": m_truncate_anywhere, "bit-flips": m_bit_flips,
    "byte-edit": m_byte_edit, "swap-unsealed": m_swap_sections_unsealed, "append": m_append_garbage,
    "shuffle-sections": m_shuffle_sections, "unknown-section": m_unknown_section,
    "drop-duplicate-section": m_drop_or_duplicate_section, "lying-length": m_lying_length, "version": m_version,
    "magic": m_magic, "header-field": m_header_field, "section-bytes": m_section_bytes, "meta-bomb": m_meta_bomb,
    "correction-bytes": m_correction_bytes,
}


# ---------------------------------------------------------------------- oracle
class Failure(Exception):
    """The decoder broke its contract on one input."""


class Hang(BaseException):
    """Raised by SIGALRM inside a decode that ran past the time bound."""


def allocation_bound(data: bytes) -> int:
    """Bytes a decode of `data` may add to the process's peak memory, from its checked header:
    per output element (and per padded leaf-block element) the float32 render, its float64
    restore and the output; the model's padded weights with gradients-free copies; the
    renderer's activation chunks; and a fixed allowance for allocator slack."""
    try:
        parsed = container.unpack(data)
        plan = plan_from_header(parsed.header, max_voxels=MAX_VOXELS)
    except TincFormatError:
        return 64 << 20
    padded = plan.layout.leaves * plan.layout.block_voxels * plan.channels
    model = sum(len(w) * int(w.max()) * (int(w.max()) + 16) * n for w, n in zip(plan.widths, plan.layers))
    return 48 * padded + 16 * model + 4 * (1 << 25) * 3 + (64 << 20)


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def decode_file(data: bytes, expected_shape: tuple[int, ...]) -> np.ndarray:
    """What `tinc info` and `tinc decompress` do with a file, under the fuzzer's output cap
    (a file's reader has no expected shape, so `expected_shape` is not used)."""
    describe(data, MAX_VOXELS)
    return Decoder(data, max_voxels=MAX_VOXELS).decode()


def decode_zarr_chunk(data: bytes, expected_shape: tuple[int, ...]) -> np.ndarray:
    """A Zarr chunk's bytes through the chunk codec (tinc.zarr_codec) as Zarr calls it: the
    chunk's shape bounds the declared array, and a chunk of another shape is refused."""
    from tinc.zarr_codec import TincNumcodec

    array = TincNumcodec().decode(data, chunk_shape=expected_shape)
    if array.shape != tuple(expected_shape):
        raise TincFormatError(f"tinc chunk holds {array.shape}, the array expects {tuple(expected_shape)}")
    return array


TARGETS = {"decoder": decode_file, "zarr": decode_zarr_chunk}


def check(data: bytes, expectation: str, seed: Seed, time_bound: float, decode=decode_file) -> str:
    """'decoded' or 'rejected'; raises Failure when the contract is broken."""
    signal.setitimer(signal.ITIMER_REAL, time_bound)
    try:
        try:
            array = decode(data, seed.array.shape)
        except TincFormatError:
            if expectation == "same":
                raise Failure("a file with the seed's meaning was rejected") from None
            return "rejected"
    except Hang:
        raise Failure(f"no result within {time_bound} s") from None
    except Failure:
        raise
    except BaseException as error:  # the contract allows nothing else
        raise Failure(f"{type(error).__name__}: {error}".splitlines()[0][:200]) from error
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if expectation == "intact" or expectation == "same":
        if data != seed.data and expectation == "intact":
            raise Failure("a corrupted file decoded without error")
        if array.dtype != seed.array.dtype or not np.array_equal(array, seed.array):
            raise Failure("decoded to a different array")
        return "decoded"
    header = container.unpack(data).header
    low, high = header["range"]
    declared = tuple(header["shape"])
    if decode is decode_zarr_chunk:
        # an edge chunk's tree covers only the voxels inside the array, and the codec pads it to
        # the chunk: a declared shape within the chunk is valid, and the result is the chunk's
        shape_ok = array.shape == tuple(seed.array.shape) and len(declared) == array.ndim \
            and all(d <= c for d, c in zip(declared, array.shape))
    else:
        shape_ok = array.shape == declared
    if not shape_ok or array.dtype != np.dtype(header["dtype"]):
        raise Failure(f"decoded shape {array.shape} {array.dtype}, header says {header['shape']} {header['dtype']}")
    values = array.astype(np.float64)
    if not np.all(np.isfinite(values)) or values.min() < low or values.max() > high:
        raise Failure("decoded values are not finite or outside the declared range")
    return "decoded"


@dataclass
class Tally:
    inputs: int = 0
    max_seconds: float = 0.0
    max_rss_growth: int = 0
    max_growth_over_bound: float = 0.0

    def __post_init__(self):
        self.outcomes: Counter = Counter()
        self.failures: Counter = Counter()


def run_one(data: bytes, expectation: str, mutation: str, seed: Seed, tally: Tally, args, baseline: int) -> None:
    before = peak_rss()
    started = time.perf_counter()
    try:
        outcome = check(data, expectation, seed, args.time_bound, TARGETS[args.target])
    except Failure as failure:
        outcome = "FAILED"
        key = f"{mutation}: {failure}"
        if not tally.failures[key]:
            os.makedirs(args.crashes, exist_ok=True)
            with open(os.path.join(args.crashes, f"{mutation}-{len(tally.failures)}.tinc"), "wb") as handle:
                handle.write(data)
            if args.verbose:
                traceback.print_exception(failure.__cause__ or failure, file=sys.stderr)
        tally.failures[key] += 1
    seconds = time.perf_counter() - started
    after = peak_rss()
    tally.inputs += 1
    tally.outcomes[(mutation, outcome)] += 1
    tally.max_seconds = max(tally.max_seconds, seconds)
    tally.max_rss_growth = max(tally.max_rss_growth, after - baseline)
    if after > before:  # this input raised the high-water mark: hold it to its own bound
        growth = after - before
        bound = allocation_bound(data)
        tally.max_growth_over_bound = max(tally.max_growth_over_bound, growth / bound)
        if growth > bound:
            tally.failures[f"{mutation}: peak RSS rose {growth >> 20} MiB, bound {bound >> 20} MiB"] += 1


def report(tally: Tally, seconds: float) -> None:
    print(f"\n{'mutation':<24}{'decoded':>9}{'rejected':>10}{'FAILED':>8}")
    for mutation in MUTATIONS:
        counts = [tally.outcomes[(mutation, o)] for o in ("decoded", "rejected", "FAILED")]
        if any(counts):
            print(f"{mutation:<24}{counts[0]:>9}{counts[1]:>10}{counts[2]:>8}")
    for key, count in tally.failures.most_common():
        print(f"FAILURE x{count}: {key}")
    totals = Counter()
    for (_, outcome), count in tally.outcomes.items():
        totals[outcome] += count
    print(f"inputs={tally.inputs} decoded={totals['decoded']} rejected={totals['rejected']} failed={sum(tally.failures.values())} "
          f"max_seconds_per_input={tally.max_seconds:.3f} max_rss_growth_mib={tally.max_rss_growth / 2**20:.1f} "
          f"max_growth_over_bound={tally.max_growth_over_bound:.3f} wall_seconds={seconds:.0f}")


def run_structured(args, seeds: list[Seed]) -> Tally:
    rng = random.Random(args.seed)
    tally = Tally()
    baseline = peak_rss()
    names = list(MUTATIONS)
    while tally.inputs < args.inputs:
        seed = rng.choice(seeds)
        mutation = rng.choice(names)
        made = MUTATIONS[mutation](seed, rng)
        if made is None:
            continue
        run_one(*made, mutation, seed, tally, args, baseline)
        if args.progress and tally.inputs % args.progress == 0:
            print(f"{tally.inputs} inputs, {sum(tally.failures.values())} failures", file=sys.stderr)
    return tally


def run_atheris(args, seeds: list[Seed]) -> None:
    """libFuzzer's coverage-guided mutations. The first input byte picks the seed whose
    array an unchanged file must give and whether the harness fixes the CRC-32 (so the
    mutations reach past the checksum); the rest is the file (without its CRC if fixed)."""
    import atheris

    tally = Tally()
    baseline = peak_rss()
    started = time.perf_counter()

    def one_input(raw: bytes) -> None:
        if not raw:
            return
        seed = seeds[raw[0] % len(seeds)]
        resealed = raw[0] & 0x80
        data = seal(raw[1:]) if resealed else raw[1:]
        expectation = "resealed" if resealed else "intact"
        if data == seed.data:
            expectation = "same"
        run_one(data, expectation, "atheris-resealed" if resealed else "atheris-intact", seed, tally, args, baseline)
        if tally.inputs == args.inputs:  # libFuzzer ends the process without returning: report here
            report(tally, time.perf_counter() - started)
            sys.stdout.flush()
            os._exit(1 if tally.failures else 0)

    MUTATIONS.update({"atheris-intact": None, "atheris-resealed": None})
    corpus = os.path.join(args.crashes, "atheris-corpus")
    os.makedirs(corpus, exist_ok=True)
    for index, seed in enumerate(seeds):
        for flag in (0, 0x80):
            with open(os.path.join(corpus, f"{seed.name}-{flag}"), "wb") as handle:
                handle.write(bytes([index | flag]) + (seed.data[:-4] if flag else seed.data))
    atheris.instrument_all()  # coverage feedback from every loaded Python function, tinc's included
    atheris.Setup([sys.argv[0], "-max_len=4096", corpus], one_input)
    atheris.Fuzz()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engine", choices=["structured", "atheris"], default="structured")
    parser.add_argument("--target", choices=sorted(TARGETS), default="decoder",
                        help="decoder: tinc info + Decoder; zarr: the Zarr chunk codec's decode")
    parser.add_argument("--time-bound", type=float, default=5.0, help="seconds one input may take")
    parser.add_argument("--crashes", default="fuzz-crashes", help="where failing inputs are saved")
    parser.add_argument("--progress", type=int, default=0, help="print a line every N inputs")
    parser.add_argument("--verbose", action="store_true", help="print the traceback of each new failure")
    args = parser.parse_args()

    def hang(signum, frame):
        raise Hang

    signal.signal(signal.SIGALRM, hang)
    torch.set_num_threads(1)  # one core: the decodes are tiny, and the machine is shared
    seeds = make_seeds()
    print("seeds: " + ", ".join(f"{s.name} ({len(s.data)} B, {s.array.shape} {s.array.dtype})" for s in seeds))
    cap = f"max_voxels={MAX_VOXELS}" if args.target == "decoder" else "the chunk's shape"
    print(f"target {args.target}, output cap {cap}; time bound {args.time_bound} s per input")
    started = time.perf_counter()
    if args.engine == "atheris":
        run_atheris(args, seeds)
        return
    tally = run_structured(args, seeds)
    report(tally, time.perf_counter() - started)
    sys.exit(1 if tally.failures else 0)


if __name__ == "__main__":
    main()
