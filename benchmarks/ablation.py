"""Ablation: each option changed alone from the defaults, same input, ratio and time.

    python benchmarks/ablation.py ../shared/data/brain64.tif --ratio 64 --time-limit 40
    python benchmarks/ablation.py IN1 IN2 --ratio 128,256 --only "defaults,lr 1e-3"
    python benchmarks/ablation.py IN --ratio 64 --steps 5000 --only "defaults,batch 65536"   # no time limit
    python benchmarks/ablation.py IN --ratio 256 --steps 3000 --seeds 4   # the mean over seeds 0-3, and each


Prints, per input and ratio, one markdown row per variant: PSNR (dtype peak), PSNR over the data range, the
tree chosen, steps reached and the quantization quality the rate control settled on (with
`--seeds N`: the mean PSNR over seeds 0 .. N-1, each seed's, and the last seed's other columns).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from unittest import mock

import tinc
from tinc import allocation, config
from tinc.training import loop, policies
from tinc.metrics import psnr, psnr_range

# A variant's module constants to change for its run, {(module, name): value}: rules that no
# option spells, such as an earlier default.
PATCH = "patch"

VARIANTS = {
    "defaults": {},
    "data scaled to 0..100 (authors)": {"value_range": (0.0, 100.0)},
    "data scaled to 0..1": {"value_range": (0.0, 1.0)},
    "batch 262144 and lr 1e-3 (first defaults)": {"batch": 1 << 18, "lr": 1e-3},
    "batch 16384": {"batch": 1 << 14},
    "batch 65536": {"batch": 1 << 16},
    "equal level weights": {"level_weights": "equal"},
    "balanced level weights": {"level_weights": "balanced"},
    "level weights by similarity": {"level_weights": "auto"},
    "level weights by similarity, exponent 0.25": {"level_weights": "auto", PATCH: {(allocation, "SIMILARITY_EXPONENT"): 0.25}},
    "level weights by similarity, exponent 1": {"level_weights": "auto", PATCH: {(allocation, "SIMILARITY_EXPONENT"): 1.0}},
    # the automatic rule of section 11: a node weighs the square root of the leaves below it
    "level weights by the square root of the leaves": {"level_weights": "balanced", PATCH: {(allocation, "AUTO_LEVEL_EXPONENT"): 0.5}},
    "level weights by the leaves to the power 1.5": {"level_weights": "balanced", PATCH: {(allocation, "AUTO_LEVEL_EXPONENT"): 1.5}},
    "lr 1e-3": {"lr": 1e-3},
    "lr 4e-3": {"lr": 4e-3},
    "lr 8e-3": {"lr": 8e-3},
    "no quantization-aware training": {"qat_fraction": 0.0},
    "quantization-aware training over the last 20%": {"qat_fraction": 0.2},
    "no pull toward the rounded weights": {"qat_damping": 0.0},
    "no spread penalty": {"spread_penalty": 0.0},
    "sized for 4-bit weights": {"weight_bits": 4},
    "sized for 5-bit weights": {"weight_bits": 5},
    "sized for 6-bit weights": {"weight_bits": 6},
    "sized for 7-bit weights": {"weight_bits": 7},
    "sized for 8-bit weights": {"weight_bits": 8},
    "sized for 8-bit weights without quantization-aware training": {"weight_bits": 8, "qat_fraction": 0.0},
    "sized for 10-bit weights": {"weight_bits": 10},
    "one start": {"starts": 1},
    "sized for 5-bit weights with one start": {"weight_bits": 5, "starts": 1},
    "sized for 6-bit weights with one start": {"weight_bits": 6, "starts": 1},
    "8 starts": {"starts": 8},
    "20000 steps": {"steps": 20000},
    "one network (depth 0)": {"levels": 0},
    "one 4-layer network (siren)": {"levels": 0, "layers": 4},
    "depth 1": {"levels": 1},
    "depth 2": {"levels": 2},
    "depth 2 at lr 2e-3": {"levels": 2, "lr": 2e-3},
    "depth 3": {"levels": 3},
    "depth 3 at lr 2.5e-4": {"levels": 3, "lr": 2.5e-4},
    "depth 3 at lr 1e-3": {"levels": 3, "lr": 1e-3},
    "depth 3 at lr 2e-3": {"levels": 3, "lr": 2e-3},
    "intra-level shares by variance": {"intra": "variance"},
    "3 layers per node": {"layers": 3},
    "2 layers per node": {"layers": 2},
    "leaves of one layer": {PATCH: {(config, "AUTO_LEAF_LAYERS"): 1}},
    "depth 1 with a 3-layer root": {"levels": 1, "layers": (3, 2)},
    "depth 1 with a 4-layer root": {"levels": 1, "layers": (4, 2)},
    "w0 = 20": {"w0": 20.0},
    "w0 = 45": {"w0": 45.0},
    # section 25: a fit counted as escaped from its leaves' means only below half their loss
    "escaped only below half the leaves' means": {PATCH: {(policies.RestartWhenStuck, "ESCAPED"): 0.5}},
    "stuck after 1000 steps at the leaves' means": {PATCH: {(policies.RestartWhenStuck, "STUCK_STEPS"): 1000}},
    "restarts in single networks too": {PATCH: {(loop, "RESTART_MIN_DEPTH"): 0}},
    # section 25: a single network took 4 layers wherever they reached --min-width
    "4 layers down to --min-width": {PATCH: {(config, "AUTO_SINGLE_NETWORK_MIN_WIDTH"): 0}},
    # until 2026-12-07 the leaves' heads started with small random biases, an output near the
    # middle of the data's range, instead of at the data's mean, and the rate rose over 100 steps
    "heads start at random biases": {"random_biases": True},
    # 0e53e93, reverted: the mean start with the 100-step warm-up and the collapse at 4x
    "the mean start alone": {PATCH: {(loop, "WARMUP_STEPS"): 100, (policies.RecoverFromDivergence, "DIVERGED"): 4.0}},
    "the mean start alone at peak rate 1e-3": {PATCH: {(loop, "WARMUP_STEPS"): 100, (policies.RecoverFromDivergence, "DIVERGED"): 4.0,
                                                       (config, "DEFAULT_LR"): 1e-3}},
    # until 2026-12-07 a window counted as a collapse past 4x the best
    "collapse at 4x the best": {PATCH: {(policies.RecoverFromDivergence, "DIVERGED"): 4.0}},
    "the defaults of 2026-12-06": {"random_biases": True, PATCH: {(loop, "WARMUP_STEPS"): 100,
                                                                  (policies.RecoverFromDivergence, "DIVERGED"): 4.0}},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--ratio", default="64", help="one ratio or several, comma-separated")
    parser.add_argument("--time-limit", type=float, default=40)
    parser.add_argument("--steps", type=int, help="fit this many steps (a variant may change it) with no time limit")
    parser.add_argument("--only", help="comma-separated variant names to run (names hold no commas)")
    parser.add_argument("--seeds", type=int, default=1, help="run each variant with seeds 0 .. N-1")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(VARIANTS)
    for path in args.inputs:
        array = tinc.read(path)
        for ratio in (float(r) for r in args.ratio.split(",")):
            bound = f"{args.steps} steps" if args.steps else f"{args.time_limit:g} s"
            print(f"\n{path}, ratio {ratio:g}, {bound} per run\n")
            seeds = " | PSNR per seed (dB)" if args.seeds > 1 else ""
            print(f"| variant | PSNR (dB) | PSNR range (dB) | depth | widths | steps | log2 quality | bytes | s{seeds} |")
            print("|---|---:|---:|---:|---|---:|---:|---:|---:" + ("|---" if args.seeds > 1 else "") + "|")
            for name in names:
                print(row(name, array, ratio, args.time_limit, args.steps, args.seeds), flush=True)


def row(name: str, array, ratio: float, time_limit: float, steps: int | None = None, seeds: int = 1) -> str:
    started = time.perf_counter()
    bound = {"steps": steps, "time_limit": None} if steps else {"steps": 100000, "time_limit": time_limit}
    options = dict(VARIANTS[name])
    patches = options.pop(PATCH, {})
    figures = []
    for seed in range(seeds):
        codec = tinc.TincCodec(ratio=ratio, quiet=True, **{**bound, "seed": seed, **options})
        with contextlib.ExitStack() as stack:
            for (module, constant), value in patches.items():
                stack.enter_context(mock.patch.object(module, constant, value))
            data = codec.encode(array)
        restored = tinc.decompress(data)
        figures.append((psnr(array, restored), psnr_range(array, restored)))
    report = codec.report
    widths = "/".join(str(int(w.max())) for w in report.plan.widths)
    quality = "raw" if report.log2_quality is None else f"{report.log2_quality:.2f}"
    peak, ranged = (sum(f[i] for f in figures) / seeds for i in (0, 1))
    each = f" | {' '.join(f'{f[0]:.2f}' for f in figures)}" if seeds > 1 else ""
    return (f"| {name} | {peak:.2f} | {ranged:.2f} | {report.plan.depth} | {widths} | "
            f"{report.steps} | {quality} | {len(data)} | {(time.perf_counter() - started) / seeds:.0f}{each} |")


if __name__ == "__main__":
    main()
