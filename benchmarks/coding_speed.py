"""Time of the coder on trained trees: the budget search and decoding a file.

    python benchmarks/coding_speed.py skimage:cell nibabel:example4d.nii.gz --ratio 128 --steps 300

For each input, one default compression for exactly `--steps` steps (reproducible), during
which every call of `coding.encode_to_budget` (quantization-aware training's start, and
the final coding where it runs) is recorded with its arguments. Each recorded search is
then timed again (best of `--repeats`) and its codings of the weights are counted;
`tinc.decompress` of the file and, within it, `coding.decode` of its weight section are
timed too. The file's size and a hash of its bytes come with the times, so two source trees run on the same
fits (`PYTHONPATH=... python benchmarks/coding_speed.py ...`) show whether they write the
same bytes, and how fast.
"""

from __future__ import annotations

import argparse
import hashlib
import time

import tinc
from tinc import coding


def best_seconds(function, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def count_codings(function) -> int:
    """How many times `function` codes the weights (`coding.encode`)."""
    encode, count = coding.encode, [0]

    def counting(*call_args, **call_kwargs):
        count[0] += 1
        return encode(*call_args, **call_kwargs)

    coding.encode = counting
    try:
        function()
    finally:
        coding.encode = encode
    return count[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--ratio", type=float, default=128)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    search, decode = coding.encode_to_budget, coding.decode
    calls, decode_seconds = [], []

    def recording(*call_args, **call_kwargs):
        calls.append((call_args, call_kwargs))
        return search(*call_args, **call_kwargs)

    def timed_decode(*call_args, **call_kwargs):
        start = time.perf_counter()
        tensors = decode(*call_args, **call_kwargs)
        decode_seconds.append(time.perf_counter() - start)
        return tensors

    print(f"ratio {args.ratio:g}, {args.steps} steps, best of {args.repeats}\n")
    print("| input | file bytes | sha1 | budget searches | codings per search | search time (ms) | decode time (ms) "
          "| weight section decode (ms) |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for path in args.inputs:
        array = tinc.read(path)
        calls.clear()
        coding.encode_to_budget = recording
        try:
            data = tinc.compress(array, ratio=args.ratio, steps=args.steps, quiet=True)
        finally:
            coding.encode_to_budget = search
        searching = sum(best_seconds(lambda: search(*a, **k), args.repeats) for a, k in calls)
        codings = ", ".join(str(count_codings(lambda: search(*a, **k))) for a, k in calls)
        decode_seconds.clear()
        coding.decode = timed_decode
        try:
            decoding = best_seconds(lambda: tinc.decompress(data), args.repeats)
        finally:
            coding.decode = decode
        print(f"| {path} | {len(data)} | {hashlib.sha1(data).hexdigest()[:12]} | {len(calls)} | {codings} "
              f"| {1000 * searching:.1f} | {1000 * decoding:.1f} | {1000 * min(decode_seconds):.1f} |", flush=True)


if __name__ == "__main__":
    main()
