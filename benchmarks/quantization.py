"""Quantization: what rounding the weights costs, one fitted network coded several ways.

    python benchmarks/quantization.py ../shared/data/brain64.tif --ratio 128 --time-limit 30

Fits one tree with float32 weights (no quantization-aware training), sized as the default
8-bit file at `--ratio` would be, then codes the same weights to that file's byte budget
with steps proportional to each tensor's standard deviation, and with steps from the
loss's curvature along each tensor (`coding.sensitivity_scales`, what `tinc` does). The
PSNR of the float network is the ceiling both approach; the gap to it is what rounding cost.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import tinc
from tinc import coding, container
from tinc.encoder import loss_weights
from tinc.entropy import WeightCoder, stored_tensors
from tinc.format import build_model
from tinc.config import TincConfig
from tinc.metrics import psnr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--ratio", type=float, default=128)
    parser.add_argument("--time-limit", type=float, default=30)
    args = parser.parse_args()
    print(f"ratio {args.ratio:g}, {args.time_limit:g} s fit per input, one fit: float32, and coded two ways\n")
    print("| input | tensors | float32 network (dB) | std steps (dB) | sensitivity steps (dB) | bytes |")
    print("|---|---:|---:|---:|---:|---:|")
    for path in args.inputs:
        array = tinc.read(path)
        # float32 weights at a quarter of the ratio: the parameter count an 8-bit file at the ratio gets
        float_file = tinc.compress(array, ratio=args.ratio / 4, weight_bits=32, qat_fraction=0.0,
                                   time_limit=args.time_limit, steps=10**6, quiet=True)
        parsed = container.unpack(float_file)
        budget = int(array.nbytes // args.ratio) - (len(float_file) - len(parsed.weights))
        plan, model = build_model(parsed.header, parsed.weights, torch.device("cpu"))
        tensors = stored_tensors(model)
        channels_last = array[..., None] if parsed.header["channel_axis"] is None else np.moveaxis(array, parsed.header["channel_axis"], -1)
        config = TincConfig()
        weights = torch.as_tensor(loss_weights(channels_last, plan.layout, config))
        coords = torch.as_tensor(plan.layout.block_coordinates())
        row = [psnr(array, tinc.decompress(float_file))]
        for scales in (None, WeightCoder(budget, weights, coords, config.batch, config.seed).step_scales(model)):
            coded, _ = coding.encode_to_budget(tensors, budget, scales)
            data = container.pack(parsed.header, coded, parsed.metadata)
            row.append(psnr(array, tinc.decompress(data)))
        size = len(data)
        print(f"| {path} | {len(tensors)} | {row[0]:.2f} | {row[1]:.2f} | {row[2]:.2f} | {size} |", flush=True)


if __name__ == "__main__":
    main()
