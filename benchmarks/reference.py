"""tinc against tinc-reference, each file the size of the reference's.

    python benchmarks/reference.py ../shared/data/brain64.tif skimage:cell --ratios 64,128,256,512 \
        --reference-time 300 --tinc-time 60
    python benchmarks/reference.py nibabel:example4d.nii.gz --ratios 64 --set batch=262144

For each input and target ratio, `tinc-reference` (the authors' published settings with
their tree as their sizing gives it) compresses at the target; float32 networks grow in
whole units of width, so its file often comes out smaller than the target asks. tinc then
compresses at the ratio the reference's file reached, so tinc's file is at most as large.
Prints a markdown table of PSNR at the dtype's peak, as `tinc bench` reports it. `--set`
changes one of the reference's `TincConfig` options (VALUE as JSON), e.g. the authors'
batch of 262144 voxels.
"""

from __future__ import annotations

import argparse
import json

from tinc.bench import load_input, parse_ratios, run_one
from tinc.bench.neural import TincAdapter, TincReferenceAdapter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--ratios", default="64,128,256,512")
    parser.add_argument("--reference-time", type=float, default=300, help="seconds of training per reference run")
    parser.add_argument("--tinc-time", type=float, default=60, help="seconds of training per tinc run")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a TincConfig option of the reference (VALUE as JSON); repeatable")
    args = parser.parse_args()
    options = {name: json.loads(value) for name, value in (item.split("=", 1) for item in args.set)}
    reference = TincReferenceAdapter(time_limit=args.reference_time, **options)
    tinc = TincAdapter(time_limit=args.tinc_time)
    print(f"\nreference {args.reference_time:g} s{''.join(f', {item}' for item in args.set)}, tinc {args.tinc_time:g} s "
          "per run; PSNR at the dtype's peak\n")
    print("| input | target | reference ratio | reference (dB) | tinc ratio | tinc (dB) | tinc - reference | reference tree |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name in args.inputs:
        array = load_input(name)
        for target in parse_ratios(args.ratios):
            ref_row = run_one(reference, array, target, label=name)
            if ref_row["status"] != "ok":
                print(f"| {name} | {target:g} | | | | | | {ref_row['note']} |", flush=True)
                continue
            tinc_row = run_one(tinc, array, ref_row["actual_ratio"], label=name)
            gap = tinc_row["psnr"] - ref_row["psnr"] if tinc_row["status"] == "ok" else float("nan")
            print(f"| {name} | {target:g} | {ref_row['actual_ratio']:.1f} | {ref_row['psnr']:.2f} | "
                  f"{tinc_row['actual_ratio'] or float('nan'):.1f} | {tinc_row['psnr'] or float('nan'):.2f} | {gap:+.2f} | "
                  f"{ref_row['note']} |", flush=True)


if __name__ == "__main__":
    main()
