"""Tree depth at equal compute: which depth a byte budget should get.

    python benchmarks/depth.py INPUT --ratio R --variants 0,0x2,1,2 [--steps 1500]

Every variant is a depth (`--levels`), optionally with `xF` to give it F times the compute.
Training compute is matched by steps: a step costs about (local samples per step) x
(parameters), and a deeper tree has fewer local samples per step (the batch is shared by
its leaf blocks), so it gets more steps. The reference is a single network (depth 0) at
`--steps` steps. One thread, and CPU seconds reported, so runs can be compared even when
the machine is shared; PSNR uses the dtype's peak, as `tinc eval`.
"""

from __future__ import annotations

import argparse
import time

import torch

import tinc
from tinc.allocation import plan_tree
from tinc.config import TincConfig
from tinc.metrics import psnr

BATCH = 1 << 14


def compute_per_step(shape, ratio: float, itemsize: int, levels: int) -> tuple[float, int]:
    """(local samples x parameters per step, depth actually planned) for a `levels`-deep tree."""
    config = TincConfig(ratio=ratio, levels=levels, batch=BATCH)
    plan, _ = plan_tree(shape, 0.95 * itemsize * float(torch.tensor(shape).prod()) / ratio, config, 1)
    samples = min(BATCH // plan.layout.leaves, int(torch.tensor(plan.layout.block_shape).prod()))
    return samples * plan.params, plan.depth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("--ratio", type=float, required=True)
    parser.add_argument("--variants", default="0,0x2,1,2", help="depths, each optionally xF for F times the compute")
    parser.add_argument("--steps", type=int, default=1500, help="steps of the depth-0 reference")
    args = parser.parse_args()
    torch.set_num_threads(1)
    array = tinc.read(args.input)
    reference, _ = compute_per_step(array.shape, args.ratio, array.dtype.itemsize, 0)
    print(f"{args.input}, ratio {args.ratio:g}, batch {BATCH}, compute of depth 0 at {args.steps} steps, 1 thread\n")
    print("| depth | compute | widths | steps | PSNR (dB) | CPU s |")
    print("|---:|---:|---|---:|---:|---:|")
    for variant in args.variants.split(","):
        levels, _, factor = variant.partition("x")
        levels, factor = int(levels), float(factor or 1)
        per_step, depth = compute_per_step(array.shape, args.ratio, array.dtype.itemsize, levels)
        if depth != levels:
            print(f"| {levels} | | the budget cannot feed depth {levels} | | | |")
            continue
        steps = int(factor * args.steps * reference / per_step)
        started = time.process_time()
        codec = tinc.TincCodec(ratio=args.ratio, levels=levels, batch=BATCH, steps=steps, quiet=True)
        restored = tinc.decompress(codec.encode(array))
        widths = "/".join(str(int(w.min())) for w in codec.report.plan.widths)
        print(f"| {depth} | {factor:g}x | {widths} | {steps} | {psnr(array, restored):.2f} | {time.process_time() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
