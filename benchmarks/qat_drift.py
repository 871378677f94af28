"""How many bytes the weights of quantization-aware training grow by, and what a file over its budget costs.

    python benchmarks/qat_drift.py skimage:cell ../shared/data/brain64.tif --ratios 128,256,512 --seeds 0,1 --steps 1500
    python benchmarks/qat_drift.py skimage:cell --ratios 512 --seeds 0 --steps 6000 --slack 0

Quantization-aware training chooses its steps when it starts, so that the weights of that
moment fill the budget less `codec.QAT_SLACK` bytes; it then trains through them, and the
weights it ends with code to another size. Per input, ratio and seed, one `TincCodec` run
with default options (and `--slack`, in place of `QAT_SLACK`) prints
- `budget`: the bytes the weights may take,
- `start`: the weights as rounded when training through the steps began, coded,
- `end`: the weights it ended with, coded with the same steps (over `budget`: the codec
  must give up roundings, `coding.encode_within_budget`, or round afresh),
- the PSNR over the data range of the network as trained and of the file, and how the
  file's weights were coded.
"""

from __future__ import annotations

import argparse

import torch

import tinc
from tinc import coding, encoder, entropy
from tinc.metrics import psnr_range


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--ratios", default="128,256,512")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--slack", type=int, help="bytes left free (default: entropy.QAT_SLACK)")
    args = parser.parse_args()
    if args.slack is not None:
        entropy.QAT_SLACK = args.slack
    seen: dict = {}
    to_budget, with_steps, fit = coding.encode_to_budget, coding.encode_with_steps, encoder.fit
    within = getattr(coding, "encode_within_budget", None)  # tinc before it rounded afresh

    def record_start(tensors, budget, scales=None):
        seen["searching"] = True  # its own calls of encode_with_steps are not the codec's
        try:
            coded, quality = to_budget(tensors, budget, scales)
        finally:
            seen["searching"] = False
        if "start" not in seen:  # the first call is the one that sets the training's steps
            seen["start"], seen["budget"] = len(coded), budget + entropy.QAT_SLACK
        else:
            seen["how"] = "rounded afresh"
        return coded, quality

    def record_end(tensors, codes):
        coded = with_steps(tensors, codes)
        if not seen.get("searching"):
            seen.setdefault("end", len(coded))
        return coded

    def record_within(*arguments, **options):
        coded = within(*arguments, **options)
        seen["how"] = "gave up roundings" if coded is not None else "rounded afresh"
        return coded

    def record_fit(model, blocks, weights, coords, config, **options):
        report = fit(model, blocks, weights, coords, config, **options)
        seen["trained"] = encoder.fit_psnr(_loss(model, blocks, weights, coords, options["rate"].forward_weights(model)), config)
        return report

    coding.encode_to_budget, coding.encode_with_steps, coding.encode_within_budget = record_start, record_end, record_within
    encoder.fit = record_fit
    print(f"slack {entropy.QAT_SLACK} bytes, {args.steps} steps; PSNR over the data range (dB)\n")
    print("| input | ratio | seed | budget (B) | start (B) | end (B) | end - budget | trained | file | weights coded |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name in args.inputs:
        array = tinc.read(name)
        for ratio in (float(r) for r in args.ratios.split(",")):
            for seed in (int(s) for s in args.seeds.split(",")):
                seen.clear()
                seen["how"] = "as trained"
                data = tinc.TincCodec(ratio=ratio, steps=args.steps, seed=seed, quiet=True).encode(array)
                file_psnr = psnr_range(array, tinc.decompress(data))
                print(f"| {name} | {ratio:g} | {seed} | {seen['budget']} | {seen['start']} | {seen['end']} | {seen['end'] - seen['budget']:+d} "
                      f"| {seen['trained']:.2f} | {file_psnr:.2f} | {seen['how']} |", flush=True)


def _loss(model, blocks, weights, coords, stored=None) -> float:
    with torch.no_grad():
        error = (model(coords, stored) - blocks).square().mean(-1)
        return float((error * weights).sum() / weights.sum())


if __name__ == "__main__":
    main()
