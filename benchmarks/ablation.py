"""Ablation: each option changed alone from the defaults, same input, ratio and time.

    python benchmarks/ablation.py ../shared/data/brain64.tif --ratio 64 --time-limit 40

Prints one markdown row per variant: PSNR (dtype peak), PSNR over the data range, the
tree chosen, steps reached and the quantization quality the rate control settled on.
"""

from __future__ import annotations

import argparse
import time

import tinc
from tinc.metrics import psnr, psnr_range

VARIANTS = {
    "defaults": {},
    "data scaled to 0..100 (authors)": {"value_range": (0.0, 100.0)},
    "data scaled to 0..1": {"value_range": (0.0, 1.0)},
    "batch 262144 and lr 1e-3 (first defaults)": {"batch": 1 << 18, "lr": 1e-3},
    "batch 16384": {"batch": 1 << 14},
    "lr 1e-3": {"lr": 1e-3},
    "lr 4e-3": {"lr": 4e-3},
    "lr 8e-3": {"lr": 8e-3},
    "sized for 6-bit weights": {"weight_bits": 6},
    "sized for 10-bit weights": {"weight_bits": 10},
    "one network (depth 0)": {"levels": 0},
    "depth 2": {"levels": 2},
    "intra-level shares by variance": {"intra": "variance"},
    "3 layers per node": {"layers": 3},
    "w0 = 20": {"w0": 20.0},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("--ratio", type=float, default=64)
    parser.add_argument("--time-limit", type=float, default=40)
    parser.add_argument("--only", help="comma-separated variant names to run (names hold no commas)")
    args = parser.parse_args()
    array = tinc.read(args.input)
    names = args.only.split(",") if args.only else list(VARIANTS)
    print(f"{args.input}, ratio {args.ratio:g}, {args.time_limit:g} s per run\n")
    print("| variant | PSNR (dB) | PSNR range (dB) | depth | widths | steps | log2 quality | bytes | s |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for name in names:
        options = VARIANTS[name]
        started = time.perf_counter()
        codec = tinc.TincCodec(ratio=args.ratio, time_limit=args.time_limit, steps=100000, quiet=True, **options)
        data = codec.encode(array)
        restored = tinc.decompress(data)
        report = codec.report
        widths = "/".join(str(int(w.max())) for w in report.plan.widths)
        quality = "raw" if report.log2_quality is None else f"{report.log2_quality:.2f}"
        print(f"| {name} | {psnr(array, restored):.2f} | {psnr_range(array, restored):.2f} | {report.plan.depth} | {widths} | "
              f"{report.steps} | {quality} | {len(data)} | {time.perf_counter() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
