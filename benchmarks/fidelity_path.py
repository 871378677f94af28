"""Where fidelity goes between the fit and the file: one default compression, four PSNRs.

    python benchmarks/fidelity_path.py skimage:cell --ratio 64 --time-limit 20,60,180
    python benchmarks/fidelity_path.py skimage:cell --ratio 64 --steps 10000 --set qat_damping=0

For each time limit (or `--steps`, without one), one `TincCodec` run with default options
and those of `--set`; the fitted model is taken as `fit` returns it. Prints the `rounding
pull` (the weight of the pull toward the rounded weights: `--qat-damping` x the relative
rise of the loss under rounding) and the PSNR over the data range of
- `float`: the fitted network with unrounded weights,
- `trained`: the same with the rounding that quantization-aware training ran with,
- `coded`: the network decoded from the file (before restoring the dtype),
- `file`: the decoded array, clipped and cast to the input's dtype,
all over every voxel (weighted by the fit's loss weights, except `file`). `trained` above `coded` means the coder stored another network than
the one trained; `coded` above `file` is what casting to the dtype (e.g. uint8) costs.
"""

from __future__ import annotations

import argparse
import json

import torch

import tinc
from tinc import container, encoder
from tinc.format import build_model
from tinc.metrics import psnr_range


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("--ratio", type=float, default=64)
    parser.add_argument("--time-limit", default="60", help="one or several seconds, comma-separated")
    parser.add_argument("--steps", type=int, help="fit exactly this many steps, with no time limit (reproducible)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a TincConfig option (VALUE as JSON), e.g. qat_damping=0; repeatable")
    args = parser.parse_args()
    options = {name: json.loads(value) for name, value in (item.split("=", 1) for item in args.set)}
    if args.steps is not None:
        options["steps"] = args.steps
    array = tinc.read(args.input)
    seen = {}
    fit = encoder.fit

    def psnr_of(network, blocks, weights, coords, config, stored=None) -> float:
        with torch.no_grad():
            error = (network(coords, stored) - blocks).square().mean(-1)
            return encoder.fit_psnr(float((error * weights).sum() / weights.sum()), config)

    def fit_and_measure(model, blocks, weights, coords, config, **options):
        report = fit(model, blocks, weights, coords, config, **options)
        rate = options["rate"]
        trained = rate.forward_weights(model)
        seen["trained"] = psnr_of(model, blocks, weights, coords, config, trained) if trained is not None else float("nan")
        seen["float"] = psnr_of(model, blocks, weights, coords, config)
        seen["grid"] = (blocks, weights, coords, config)
        seen["pull"] = rate.rounding_pull
        return report

    encoder.fit = fit_and_measure
    print(f"{args.input}, ratio {args.ratio:g}, options {options or 'default'}, PSNR over the data range (dB)\n")
    print("| time limit (s) | steps | rounding pull | float | trained | coded | file |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    limits = [None] if args.steps is not None else [float(x) for x in args.time_limit.split(",")]
    for limit in limits:
        codec = tinc.TincCodec(ratio=args.ratio, time_limit=limit, quiet=True, **options)
        data = codec.encode(array)
        parsed = container.unpack(data)
        _, decoded = build_model(parsed.header, parsed.weights, seen["grid"][2].device)
        coded = psnr_of(decoded, *seen["grid"])
        print(f"| {limit if limit is not None else 'none'} | {codec.report.steps} | {seen['pull']:.2f} | {seen['float']:.2f} | {seen['trained']:.2f} | {coded:.2f} "
              f"| {psnr_range(array, tinc.decompress(data)):.2f} |", flush=True)


if __name__ == "__main__":
    main()
