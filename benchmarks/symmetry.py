"""What the canonical form's sorted runs save: one default file per input and ratio, its
weights coded again at the same steps with and without `coding.SORTED`.

    python benchmarks/symmetry.py skimage:cell ../shared/data/brain64.tif --ratios 128,256 --steps 1500

The stored network is already canonical (non-negative, sorted biases), so the difference
is what the order statistics save; `ideal` is a sign per non-zero bias plus log2(n!) per
node of n neurons, what coding the biases as an unordered set of magnitudes would save at
best (ties save less). The last column is the time to code the weights with the runs
and without (best of five each): what each trial of the budget search costs.
"""

from __future__ import annotations

import argparse
import math
import timeit

import numpy as np

import tinc
from tinc import coding, container
from tinc.entropy import stored_tensors
from tinc.format import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--ratios", default="128,256")
    parser.add_argument("--steps", type=int, default=1500)
    args = parser.parse_args()
    print(f"{args.steps} steps, default options; bytes of the weight section\n")
    print("| input | ratio | file | weights, sorted runs | weights, plain | saved | ideal | saved / file | coding time, sorted / plain (ms) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for path in args.inputs:
        array = tinc.read(path)
        for ratio in (float(r) for r in args.ratios.split(",")):
            data = tinc.compress(array, ratio=ratio, steps=args.steps, quiet=True)
            parsed = container.unpack(data)
            _, model = build_model(parsed.header, parsed.weights, "cpu")
            tensors, runs = stored_tensors(model), model.bias_runs()
            codes = [code for code, _ in coding.section_tensors(parsed.weights, len(tensors))]
            sorted_runs = len(coding.encode_with_steps(tensors, codes, runs))
            plain = len(coding.encode_with_steps(tensors, codes))
            seconds = [min(timeit.repeat(lambda r=r: coding.encode_with_steps(tensors, codes, r), number=1, repeat=5))
                       for r in (runs, None)]
            ideal = 0.0
            for values, code, lengths in zip(tensors, codes, runs):
                if lengths is not None:
                    nonzero = int(np.count_nonzero(np.rint(values / coding.step_of(code))))
                    ideal += (nonzero + sum(math.lgamma(n + 1) for n in lengths) / math.log(2)) / 8
            print(f"| {path} | {ratio:g} | {len(data)} | {sorted_runs} | {plain} | {plain - sorted_runs} | {ideal:.0f} "
                  f"| {(plain - sorted_runs) / len(data):.1%} | {1e3 * seconds[0]:.1f} / {1e3 * seconds[1]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
