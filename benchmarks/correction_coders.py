"""Which lossless coder stores the quantized residual of `--max-error` smallest.

For each input: one tinc fit (default options at `--ratio`, `--steps`), the
decoder's prediction, and at bounds of 1e-2, 1e-3 and 1e-4 of the data's range the
integer residuals `q` (`tinc.correction.quantize`), coded by:

- zstd-19, lzma (raw LZMA2, preset 9e), brotli-11 of the zigzagged, byte-shuffled residuals
  (`tinc.correction`), with no predictor and with a Lorenzo predictor (finite differences
  along every axis, inverted by cumulative sums);
- SZ3 (absolute), SPERR (point-wise error) and ZFP (accuracy) applied through imagecodecs to
  the float residual with the same half-step as bound (its output replaces q x step);
- `context`: tinc's context coder (`tinc.residual_coder`, CORR method 4) as `tinc compress`
  runs it: coarse-to-fine interpolation passes, each value stored as the prediction plus a
  whole number of steps (the prediction in whole steps or in sixteenths of a step, whichever
  codes smaller), errors coded under contexts of the neighbours' coded errors; where the
  original is the data's minimum or maximum, any value on the side the decoder clips;
  `context-q`: the same coder storing q itself (no fractions of a step, no free values);
- `entropy`: the ideal size of q under one empirical model, i.e. what a context-free
  entropy coder could reach, for reference.

    python benchmarks/correction_coders.py [--ratio 64] [--steps 1000 | --time-limit S] [--inputs ...] [--no-general]

(the general-purpose coders take minutes on inputs of millions of values; `context` seconds)
"""

from __future__ import annotations

import argparse
import time

import imagecodecs
import numpy as np

import tinc
from tinc import correction, residual_coder
from tinc.values import prediction
from tinc.decoder import Decoder

INPUTS = ["/work/shared/data/brain64.tif", "/work/shared/data/tinc_test.tif", "nibabel:example4d.nii.gz", "skimage:cell"]
FRACTIONS = (1e-2, 1e-3, 1e-4)


def entropy_bytes(q: np.ndarray) -> float:
    _, counts = np.unique(q, return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum() / 8)


def float_coders(residual: np.ndarray, half: float) -> dict[str, int]:
    x = np.squeeze(residual).astype(np.float64)
    sizes = {}
    if x.ndim <= 4:
        sizes["sz3"] = len(imagecodecs.sz3_encode(x if x.ndim <= 4 else x.reshape(-1), mode="abs", abs=half))
        sizes["zfp"] = len(imagecodecs.zfp_encode(x, half, mode="accuracy"))
    if 2 <= x.ndim <= 3:
        sizes["sperr"] = len(imagecodecs.sperr_encode(x, half, "pwe"))
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ratio", type=float, default=64)
    parser.add_argument("--time-limit", type=float, default=None)
    parser.add_argument("--steps", type=int, default=None, help="default 1000 when no --time-limit is given")
    parser.add_argument("--inputs", nargs="*", default=INPUTS)
    parser.add_argument("--general", action=argparse.BooleanOptionalAction, default=True,
                        help="the general-purpose coders too (minutes on millions of values)")
    args = parser.parse_args()
    print("| input | bound (of range) | E | q != 0 | entropy | zstd | lzma | brotli | zstd+L | lzma+L | brotli+L | context-q | context | sz3 | sperr | zfp | context encode / decode s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.inputs:
        array = tinc.read(name)
        steps = args.steps if args.steps is not None or args.time_limit else 1000
        data = tinc.compress(array, ratio=args.ratio, time_limit=args.time_limit, steps=steps, quiet=True)
        decoder = Decoder(data)
        network = decoder.network_values()
        values = np.moveaxis(array, decoder.channel_axis, -1) if decoder.channel_axis is not None else array[..., None]
        low, high = decoder.header.range
        residual = values.astype(np.float64) - prediction(network, decoder.header)
        for fraction in FRACTIONS:
            bound = fraction * (high - low)
            half = correction.half_step(bound, array.dtype, low, high)
            q = correction.quantize(residual, half)
            both = correction.encoded_sizes(q) if args.general else \
                {k + p: "-" for k in ("zstd", "lzma", "brotli") for p in ("", "+lorenzo")}
            sizes = {k: v for k, v in both.items() if "+" not in k}
            lsizes = {k.split("+")[0]: v for k, v in both.items() if "+" in k}
            fsizes = float_coders(residual, half) if args.general else {}
            none = np.zeros(q.shape, bool)
            plain = min(len(residual_coder._encode(q.astype(np.float64), none, none, sides, 0)[0]) for sides in (1, 4))
            started = time.perf_counter()
            body, stored, _ = residual_coder.encode(residual / (2 * half), values == low, values == high)
            encode_s = time.perf_counter() - started
            assert np.array_equal(residual_coder.decode(body, q.shape)[0], stored)
            decode_s = time.perf_counter() - started - encode_s  # (with the check of the decode)
            free = len(body)
            cells = [sizes["zstd"], sizes["lzma"], sizes["brotli"], lsizes["zstd"], lsizes["lzma"], lsizes["brotli"],
                     plain, free, fsizes.get("sz3", "-"), fsizes.get("sperr", "-"), fsizes.get("zfp", "-"),
                     f"{encode_s:.1f} / {decode_s:.1f}"]
            print(f"| {name.split('/')[-1]} {array.shape} | {fraction:g} | {bound:.4g} | {np.mean(q != 0):.3f} | "
                  f"{entropy_bytes(q):.0f} | " + " | ".join(str(c) for c in cells) + " |", flush=True)
        print(f"<!-- {name}: network {len(data)} bytes at ratio {args.ratio:g} -->", flush=True)


if __name__ == "__main__":
    main()
