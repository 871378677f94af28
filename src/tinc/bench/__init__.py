"""`tinc bench`: rate–distortion sweeps of tinc against traditional codecs.

For every (input, codec, target ratio) the codec's quality setting is searched by bisection
(`search`) for the best fidelity whose actual ratio (raw bytes / compressed bytes, raw =
elements x itemsize) is at least the target; tinc codecs take the ratio directly (no search).
Metrics are `tinc.metrics` (the same as `tinc eval`).

Modules: `base` (the `Codec` interface), `classic`, `video` and `neural` (the adapters),
`frames` (arrays as 2-D images for image and video codecs), `registry` (codecs by name),
`search`, `sweep` (running), `report` (results.csv, results.md, rd.png, slices.png); the
command line is here.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import TincConfigError, TincInputError
from .base import Codec
from .neural import TincAdapter
from .registry import CODECS, make_codec, parse_codecs
from .report import CSV_COLUMNS
from .search import SearchResult, bisect_quality
from .sweep import load_input, parse_ratios, read_input, run_bench, run_one

DEFAULT_CODECS = "sperr,sz3,zfp,jpeg2000,jpegxl,hevc,h264,tinc"
DEFAULT_RATIOS = "64,128,256,512"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add `tinc bench` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "bench",
        help="rate-distortion benchmark of tinc against other codecs",
        description="For each input, codec and target ratio, search the codec's quality setting for the "
        "best fidelity at a ratio >= the target, and write results.csv, results.md, rd.png and slices.png.",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="array files (.npy, .tif, .nii, .nii.gz, .png) or bundled samples such as "
                        "skimage:cell or nibabel:example4d.nii.gz")
    p.add_argument("--ratios", default=DEFAULT_RATIOS, help=f"comma-separated target ratios (default {DEFAULT_RATIOS})")
    p.add_argument("--codecs", default=DEFAULT_CODECS,
                   help=f"comma-separated codecs, or all (default {DEFAULT_CODECS}); see --list-codecs")
    p.add_argument("--out", help="output folder (created if needed)")
    p.add_argument("--time-limit", type=float, default=None, help="seconds of training per tinc run")
    p.add_argument("--steps", type=int, default=None, help="training steps per tinc run")
    p.add_argument("--list-codecs", action="store_true", help="list the codecs and whether they work here, then exit")
    p.add_argument("--max-error", nargs="?", const="1e-2,1e-3,1e-4", metavar="F1,F2,..",
                   help="instead of ratios: file size at equal guaranteed maximum error, bounds as fractions of the "
                        "data's range (default 1e-2,1e-3,1e-4), against SZ3 (absolute), SPERR (point-wise) and ZFP "
                        "(accuracy); writes max_error.csv and max_error.md")
    p.add_argument("--network-ratios", default=None, metavar="R1,R2,..",
                   help="with --max-error: network ratios tinc tries (one fit each, shared by all bounds; the smallest "
                        "file is kept; default 16,32,64,128,256,512)")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress output")
    p.set_defaults(func=run_cli)
    return p


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of `tinc bench`; raises TincError subclasses for bad input/options."""
    quiet = getattr(args, "quiet", False)  # SUPPRESS: absent unless given
    if args.list_codecs:
        for name, cls in CODECS.items():
            reason = make_codec(name).unavailable()
            print(f"{name:15} {'ok' if not reason else 'unavailable'}  {cls.description}"
                  + (f"  [{reason}]" if reason else ""))
        return 0
    if not args.inputs:
        raise TincInputError("bench needs at least one INPUT")
    if not args.out:
        raise TincConfigError("bench needs --out DIR")
    # checked before any work: TincConfig would only reject them at the first tinc run
    if args.steps is not None and args.steps < 0:
        raise TincConfigError(f"steps must be >= 0, got {args.steps}")
    if args.time_limit is not None and args.time_limit < 0:
        raise TincConfigError(f"time limit must be >= 0, got {args.time_limit}")
    if args.max_error is not None:
        from .bounded import DEFAULT_NETWORK_RATIOS, _parse_floats, run_bounded

        codecs = [c for c in args.codecs.split(",") if c in ("sz3", "sperr", "zfp")] if args.codecs != DEFAULT_CODECS else ["sz3", "sperr", "zfp"]
        rows = run_bounded(args.inputs, _parse_floats(args.max_error, "--max-error"),
                           _parse_floats(args.network_ratios or DEFAULT_NETWORK_RATIOS, "--network-ratios"), args.out,
                           codecs, time_limit=args.time_limit, steps=args.steps, quiet=quiet)
        if not quiet:
            print(f"wrote {len(rows)} results to {os.path.join(args.out, 'max_error.md')} (and max_error.csv)", file=sys.stderr)
        return 0
    if args.network_ratios is not None:
        raise TincConfigError("--network-ratios applies with --max-error")
    rows = run_bench(
        args.inputs, parse_ratios(args.ratios), parse_codecs(args.codecs), args.out,
        time_limit=args.time_limit, steps=args.steps, quiet=quiet,
    )
    if not quiet:
        print(f"wrote {len(rows)} results to {os.path.join(args.out, 'results.csv')} "
              f"(and results.md, rd.png, slices.png)", file=sys.stderr)
    return 0


__all__ = [
    "CODECS", "CSV_COLUMNS", "Codec", "SearchResult", "TincAdapter", "add_parser", "bisect_quality", "load_input",
    "make_codec", "parse_codecs", "parse_ratios", "read_input", "run_bench", "run_cli", "run_one",
]
