"""Command line: `tinc compress | decompress | info | eval | bench`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import sys
import time
from typing import Any, Callable

import numpy as np

from . import container, metrics
from .tree import width_text
from .codec import TincCodec
from .format import MAX_DECODE_VOXELS, plan_from_header
from .config import INTRA_MODES, LEVEL_WEIGHT_RULES, OPTIMIZERS, TincConfig, read_config_file
from .errors import TincConfigError, TincError
from .io import check_writable, format_of, is_zarr_path, read_with_metadata, write_bytes


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> tuple[int, ...] | int:
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def _levels(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {text!r}") from None


def _layers(text: str) -> tuple[int, ...] | int | str:
    return text if text == "auto" else _ints(text)


def _level_weights(text: str) -> tuple[float, ...] | str:
    return text if text in LEVEL_WEIGHT_RULES else _floats(text)


def _loss_weight(text: str) -> tuple[float, float, float]:
    try:
        low, high, weight = (float(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW:HIGH:WEIGHT, got {text!r}") from None
    return (low, high, weight)


def _pair(text: str) -> tuple[float, float]:
    values = _floats(text)
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH, got {text!r}")
    return values


def _optional_float(text: str) -> float | None:
    return None if text in ("none", "auto") else float(text)


# One entry per TincConfig field: the flag is the field name with dashes. These are what a
# user decides (size or quality, time, where it runs); the rest are ADVANCED_FLAGS.
COMPRESS_FLAGS: dict[str, dict] = {
    "ratio": dict(type=float, help="target compression ratio; the file is at most raw bytes / RATIO (default 64)"),
    "target_psnr": dict(type=float, metavar="DB", help="smallest file reaching this PSNR (dB, peak of the dtype): searches the "
                        "ratio from --ratio, a whole fit per trial (bound each with --time-limit)"),
    "max_error": dict(type=float, metavar="E", help="guarantee every decoded value within E of the original (data units; "
                      "0 on integer data: lossless). Without --ratio the network's size is searched for the smallest file"),
    "max_error_rel": dict(type=float, metavar="R", help="--max-error as a fraction R of the data's range (max - min)"),
    "time_limit": dict(type=_optional_float, metavar="SECONDS", help="stop training after SECONDS and still write a valid file"),
    "channel_axis": dict(type=int, metavar="AXIS", help="axis holding channels (e.g. RGB); not split by the tree"),
    "device": dict(help="cpu (default), cuda, cuda:N or auto"),
    "seed": dict(type=int, help="random seed (default 0)"),
    "quiet": dict(action="store_true", help="no progress or summary output"),
    "checkpoint": dict(metavar="PATH", help="save the fit here every --checkpoint-every seconds; a rerun of the same "
                       "command resumes from it; removed once the output is written"),
    "checkpoint_every": dict(type=float, metavar="SECONDS", help="seconds between checkpoints (default 60)"),
}

# The tree, the fit and the rounding of the weights: accepted on every command line, listed by
# `tinc compress --help-advanced`.
ADVANCED_FLAGS: dict[str, dict] = {
    "levels": dict(type=_levels, help="tree depth below the root, or 'auto' (default: from data size and budget)"),
    "level_weights": dict(type=_level_weights, help="relative parameters per node of each level, e.g. 1,0.8,1.5; 'equal'; "
                          "'balanced' (default: every level gets the same share); or 'auto': shares from the data's "
                          "similarity between distant blocks"),
    "layers": dict(type=_layers, help="sine layers per node: one value, one per level, or auto (default): "
                                      "2 per node in a tree, 4 in a single network where they are at least 12 wide"),
    "intra": dict(choices=INTRA_MODES, help="share of a level's parameters per node (default equal)"),
    "aoi_threshold": dict(type=float, help="intensity above which voxels count as interesting for --intra aoi"),
    "loss_weight": dict(type=_loss_weight, action="append", metavar="LOW:HIGH:W", help="weight W for voxels with intensity in [LOW, HIGH]; repeatable"),
    "steps": dict(type=int, help="training steps (default 5000; with --time-limit, as many as fit in it)"),
    "batch": dict(type=int, help="voxels per step, all leaves together (default 8192)"),
    "lr": dict(type=float, help="peak learning rate (default 2e-3, halved for every tree level past the first)"),
    "optimizer": dict(choices=OPTIMIZERS, help="optimiser (default adam)"),
    "w0": dict(type=float, help="SIREN frequency (default 30)"),
    "weight_bits": dict(type=int, help="bits per weight assumed when sizing networks; 32 stores float32 (default 5)"),
    "qat_fraction": dict(type=float, metavar="F", help="last fraction of the fit trained through the rounded weights the "
                         "file stores (default 0.1; 0: off)"),
    "qat_damping": dict(type=float, metavar="D", help="pull of the weights toward their rounded values while training through "
                        "them, relative to the cost of rounding (default 20; 0: off)"),
    "spread_penalty": dict(type=float, metavar="K", help="weight of the weights' coded size in the objective before the "
                           "rounded phase, relative to the loss (default 0.1; 0: off)"),
    "value_range": dict(type=_pair, metavar="LOW,HIGH", help="range the data is scaled to for the fit (default -1,1)"),
    "min_width": dict(type=int, help="narrowest MLP allowed (default 8)"),
    "starts": dict(type=int, metavar="N", help="initial weights tried for a few hundred steps each; the fit continues "
                   "the best (default 4; 1: one start)"),
}

CONFIG_FLAGS: dict[str, dict] = {**COMPRESS_FLAGS, **ADVANCED_FLAGS}


# Chunked compression's own flags: how the array is cut and where the work runs, not TincConfig fields.
CHUNKED_FLAGS: dict[str, dict] = {
    "chunks": dict(type=_ints, metavar="C or C0,C1,..", help="chunk shape of the .zarr output, one tree per chunk (default 128)"),
    "halo": dict(type=int, metavar="VOXELS", help="voxels of neighbouring chunks fitted with each chunk, cropped on decode (default 4)"),
    "scheduler": dict(metavar="ADDRESS", help="dask.distributed scheduler to run on (default: a local cluster)"),
    "workers": dict(type=int, metavar="N", help="worker processes of the local cluster (default: one per core)"),
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _text_parsers() -> dict[str, Callable[[str], Any]]:
    """The flags' own parsers, for a --config file's string values (levels = "auto"); ValueError on bad text."""
    def parser_of(spec: dict) -> Callable[[str], Any]:
        def parse_text(text: str) -> Any:
            try:
                value = spec["type"](text)
            except argparse.ArgumentTypeError as error:
                raise ValueError(str(error)) from None
            return (value,) if spec.get("action") == "append" else value  # one --loss-weight
        return parse_text

    return {name: parser_of(spec) for name, spec in CONFIG_FLAGS.items() if "type" in spec}


def compress_options(args: argparse.Namespace) -> dict:
    """The TincConfig options of `tinc compress`: the --config file's, with the flags given on
    the command line over them."""
    options = read_config_file(args.config, _text_parsers()) if args.config else {}
    for field in dataclasses.fields(TincConfig):
        value = getattr(args, field.name, None)
        if value is not None and value is not False:
            options[field.name] = tuple(value) if field.name == "loss_weight" else value
    return options


def cmd_compress(args: argparse.Namespace) -> int:
    options = compress_options(args)
    args.checkpoint = options.get("checkpoint")  # an interrupt's message names it, wherever it was given
    if is_zarr_path(args.input) or is_zarr_path(args.output):
        return _compress_chunked(args, options)
    given = [flag for flag in CHUNKED_FLAGS if getattr(args, flag) is not None]
    if given:
        raise TincConfigError(f"--{given[0]} applies to chunked compression, whose output is a .zarr directory")
    started = time.perf_counter()
    check_writable(args.output)
    array, metadata = read_with_metadata(args.input)
    if "channel_axis" in metadata:
        options.setdefault("channel_axis", metadata.pop("channel_axis"))
    codec = TincCodec(**options)
    data = codec.encode(array, metadata={k: v for k, v in metadata.items() if k != "format"} or None)
    write_bytes(args.output, data)
    if codec.config.checkpoint:  # the output is safely on disk: the fit is no longer needed
        os.remove(codec.config.checkpoint)
    if not codec.config.quiet:
        recon = codec.decode(data)
        report = codec.report
        plan = report.plan
        nodes = "+".join(str(n) for n in plan.layout.nodes_per_level)
        stop = " (time limit)" if report.stopped_by_time else ""
        if len(report.start_losses) > 1:
            stop += f", start {report.start + 1} of {len(report.start_losses)} tried"
        if report.target_search is not None:
            stop += f", chosen from {len(report.target_search.trials)} trials for {report.target_search.target:g} dB"
        bound = ""
        if report.bound is not None:
            bound = (f", max error {report.max_error:g} <= {report.bound:g} (network {report.network_bytes} B, "
                     f"correction {len(data) - report.network_bytes} B)")
        print(
            f"{args.input} -> {args.output}: {len(data)} bytes, ratio {array.nbytes / len(data):.1f}x, "
            f"depth {plan.depth} ({nodes} nodes, widths {plan.widths_text()}), {report.steps} steps{stop}, "
            f"PSNR {metrics.psnr(array, recon):.2f} dB{bound}, {time.perf_counter() - started:.1f} s"
        )
        if report.level_energy:
            parts = "/".join(f"{100 * e:.0f}" for e in report.level_energy)
            shares = "/".join(f"{100 * p / plan.params:.0f}" for p in plan.params_per_level())
            print(f"  levels by similarity: variance parts {parts}%, parameter shares {shares}%")
    return 0


def _compress_chunked(args: argparse.Namespace, options: dict) -> int:
    from .chunked import DEFAULT_CHUNK, DEFAULT_HALO, compress

    summary = compress(args.input, args.output, chunks=DEFAULT_CHUNK if args.chunks is None else args.chunks,
                       halo=DEFAULT_HALO if args.halo is None else args.halo, scheduler=args.scheduler,
                       workers=args.workers, **options)
    if not options.get("quiet"):
        print("\n".join(summary.lines()))
    return 0


def cmd_decompress(args: argparse.Namespace) -> int:
    from .decode import Decoder, write_decoded

    if is_zarr_path(args.input):
        return _decompress_chunked(args)
    if args.scheduler is not None or args.workers is not None:
        raise TincConfigError("--scheduler and --workers apply to a chunked .zarr input")
    if not is_zarr_path(args.output):
        format_of(args.output)
        check_writable(args.output)
    with open(_existing(args.input), "rb") as handle:
        data = handle.read()
    decoder = Decoder(data, device=args.device, max_voxels=args.max_voxels)
    shape, dtype = write_decoded(args.output, decoder, roi=args.roi, scale=args.scale, shape=args.shape)
    if not args.quiet:
        leaves = decoder.plan.layout.leaves
        print(f"{args.input} -> {args.output}: {shape} {dtype}, {decoder.leaves_evaluated} of {leaves} leaf blocks evaluated")
    return 0


def _decompress_chunked(args: argparse.Namespace) -> int:
    from .chunked import decompress

    for flag in ("roi", "scale", "shape"):
        if getattr(args, flag) is not None:
            raise TincConfigError(f"--{flag} applies to a .tinc input; slice a chunked array with zarr.open(path)[...]")
    shape, dtype = decompress(args.input, args.output, scheduler=args.scheduler, workers=args.workers, quiet=args.quiet)
    if not args.quiet:
        print(f"{args.input} -> {args.output}: {shape} {dtype}")
    return 0


def describe(data: bytes, max_voxels: int = MAX_DECODE_VOXELS) -> dict:
    """What `tinc info` shows, as a dict."""
    parsed = container.unpack(data)
    header = parsed.header
    plan = plan_from_header(header, max_voxels)
    dtype = np.dtype(header["dtype"])
    raw = math.prod(header["shape"]) * dtype.itemsize
    per_node = [p / n for p, n in zip(plan.params_per_level(), plan.layout.nodes_per_level)]
    bound = None
    if parsed.correction is not None:
        from .correction import METHOD_NAMES, decode as decode_correction

        # decoded whole, as a decode would: `tinc info` also checks the residuals are readable
        found = decode_correction(parsed.correction, tuple(plan.layout.shape) + (plan.channels,))
        bound = {"max_error": found.bound, "measured_max_error": found.measured, "step": 2 * found.half_step,
                 "coding": METHOD_NAMES[found.method], "correction_bytes": parsed.sizes.get("CORR", 0),
                 "network_bytes": len(data) - parsed.sizes.get("CORR", 0)}
    return {
        "shape": header["shape"],
        "dtype": str(dtype),
        "levels": plan.depth,
        "splits": header["splits"],
        "nodes_per_level": list(plan.layout.nodes_per_level),
        "layers_per_level": list(plan.layers),
        "widths_per_level": [width_text(w) for w in plan.widths],
        "parameters_per_level": plan.params_per_level(),
        "level_weights": [round(p / per_node[-1], 2) for p in per_node],  # per node, relative to a leaf
        "parameters": plan.params,
        "block_shape": list(plan.layout.block_shape),
        "bytes": len(data),
        "section_bytes": parsed.sizes,
        "ratio": raw / len(data),
        "format_version": data[4],
        "bound": bound,
    }


def cmd_info(args: argparse.Namespace) -> int:
    with open(_existing(args.input), "rb") as handle:
        info = describe(handle.read(), args.max_voxels)
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{args.input}: {info['bytes']} bytes, ratio {info['ratio']:.2f}x, format v{info['format_version']}")
    print(f"  array     {tuple(info['shape'])} {info['dtype']}")
    print(f"  tree      depth {info['levels']}, leaf blocks {tuple(info['block_shape'])}, {info['parameters']} parameters")
    print("  level  nodes  layers  width      parameters  share  weight")
    for level in range(info["levels"] + 1):
        params = info["parameters_per_level"][level]
        print(f"  {level:5d}  {info['nodes_per_level'][level]:5d}  {info['layers_per_level'][level]:6d}  "
              f"{info['widths_per_level'][level]:<9}  {params:10d}  {100 * params / info['parameters']:4.0f}%  "
              f"{info['level_weights'][level]:6.2f}")
    print("  sections  " + ", ".join(f"{name} {size} B" for name, size in info["section_bytes"].items()))
    bound = info["bound"]
    if bound is not None:
        print(f"  bound     max error {bound['max_error']:g} guaranteed, {bound['measured_max_error']:g} measured at encode; "
              f"network {bound['network_bytes']} B + correction {bound['correction_bytes']} B ({bound['coding']}, step {bound['step']:g})")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.max_error is not None and not 0 <= args.max_error < math.inf:
        raise TincConfigError(f"--max-error must be a finite number >= 0, got {args.max_error:g}")
    original, _ = read_with_metadata(args.original)
    tinc_file = args.tinc
    if str(args.reconstruction).endswith(".tinc"):  # decoded in memory; it is also the file whose ratio counts
        from .decode import Decoder

        with open(_existing(args.reconstruction), "rb") as handle:
            recon = Decoder(handle.read()).decode()
        tinc_file = tinc_file or args.reconstruction
    else:
        recon, _ = read_with_metadata(args.reconstruction)
    size = os.path.getsize(_existing(tinc_file)) if tinc_file else None
    result = metrics.evaluate(original, recon, tuple(args.threshold or ()), size)
    if tinc_file:  # the bound the file promises, beside the error measured here: its CORR header suffices
        from .correction import read_header

        with open(tinc_file, "rb") as handle:
            payload = container.unpack(handle.read()).correction
        result["bound"] = None if payload is None else read_header(payload).bound
    if args.plot:
        from .io import atomic_path
        from .plots import rgb_axis, save_comparison

        title = f"PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.4f}" + (f", ratio {result['ratio']:.1f}x" if result["ratio"] else "")
        with atomic_path(args.plot) as temporary:
            save_comparison(original, recon, temporary, title, channel_axis=rgb_axis(original))
    exceeded = args.max_error is not None and not result["max_error"] <= args.max_error
    if args.json:
        print(json.dumps(result))
    else:
        print(f"PSNR {result['psnr']:.2f} dB (peak {metrics.peak_value(original):g}), "
              f"PSNR over data range {result['psnr_range']:.2f} dB, SSIM {result['ssim']:.4f}, max error {result['max_error']:g}"
              + (f" (bound {result['bound']:g})" if result.get("bound") is not None else ""))
        if result["ratio"] is not None:
            print(f"ratio {result['ratio']:.2f}x")
        for threshold, value in result["accuracy"].items():
            print(f"accuracy at threshold {threshold}: {value:.5f}")
    if exceeded:
        print(f"tinc: error: max error {result['max_error']:g} exceeds --max-error {args.max_error:g}", file=sys.stderr)
        return 1
    return 0


def _existing(path: str) -> str:
    if not os.path.isfile(path):
        raise TincConfigError(f"{path}: no such file")
    return path


COMPRESS_DESCRIPTION = "Fit a tree of small sine networks to an array and store its weights."
COMPRESS_EPILOG = ("Advanced options (the tree's depth, layers and widths; training steps, batch and learning rate; "
                   "the rounding of the weights) are accepted too: `tinc compress --help-advanced` lists them.")


class _HelpAdvanced(argparse.Action):
    """`--help-advanced`: the compress help with the advanced options listed, then exit."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        full = argparse.ArgumentParser(prog=parser.prog, description=parser.description)
        add_compress_arguments(full, show_advanced=True)
        full.print_help()
        parser.exit()


def add_compress_arguments(parser: argparse.ArgumentParser, show_advanced: bool) -> None:
    """The arguments of `tinc compress`; the advanced ones are accepted either way, and listed
    in the help only with `show_advanced`."""
    parser.add_argument("input", help="TIFF / OME-TIFF, NIfTI (.nii, .nii.gz), .npy or PNG; .zarr, TIFF or .npy when chunked")
    parser.add_argument("--help-advanced", action=_HelpAdvanced,
                        help="show this help with the advanced options (tree, training, weight rounding) and exit")
    parser.add_argument("-o", "--output", required=True, help="output .tinc file, or a .zarr directory: one tree per chunk, on Dask")
    for name, spec in COMPRESS_FLAGS.items():
        parser.add_argument(_flag(name), dest=name, default=None, **spec)
    parser.add_argument("--config", metavar="FILE",
                        help="TOML or JSON file of options named as the flags (ratio = 128, level-weights = [1, 0.8], "
                             "device = \"cuda\", ...); flags given on the command line override it")
    advanced = parser.add_argument_group("advanced options")
    for name, spec in ADVANCED_FLAGS.items():
        advanced.add_argument(_flag(name), dest=name, default=None, **(spec if show_advanced else {**spec, "help": argparse.SUPPRESS}))
    chunked = parser.add_argument_group("chunked compression (.zarr output)")
    for name, spec in CHUNKED_FLAGS.items():
        chunked.add_argument("--" + name, dest=name, default=None, **spec)


def subcommand_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """`tinc`'s subcommands by name (compress, decompress, info, eval, bench)."""
    sub = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return dict(sub.choices)


def build_parser(show_advanced: bool = False) -> argparse.ArgumentParser:
    """The `tinc` command line; `show_advanced` lists compress's advanced options in its help."""
    parser = argparse.ArgumentParser(prog="tinc", description="Tree-structured implicit neural compression of N-D arrays.")
    parser.add_argument("--version", action="version", version=f"tinc {__import__('tinc').__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compress", help="compress an array file to .tinc, or chunk by chunk to a .zarr array",
                       description=COMPRESS_DESCRIPTION, epilog=None if show_advanced else COMPRESS_EPILOG)
    add_compress_arguments(p, show_advanced)
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("decompress", help="decode a .tinc file or a chunked .zarr array")
    p.add_argument("input", help=".tinc file, or a .zarr array written by tinc compress")
    p.add_argument("-o", "--output", required=True, help="output .tif, .nii, .nii.gz, .npy, .png or .zarr (OME-Zarr multiscale)")
    p.add_argument("--roi", metavar="A:B,C:D,..", help="decode only this region: start:stop per axis of the output "
                   "(channel axis included; ':' or empty for a whole axis); only the leaf blocks it touches are evaluated")
    grid = p.add_mutually_exclusive_group()
    grid.add_argument("--scale", type=float, help="resample every leaf block on a grid S times finer (e.g. 2) or coarser (0.5)")
    grid.add_argument("--shape", metavar="D0,D1,..", help="resample to this output shape (one size per axis; channels unchanged)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    _add_max_voxels(p)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--scheduler", **CHUNKED_FLAGS["scheduler"])
    p.add_argument("--workers", **CHUNKED_FLAGS["workers"])
    p.set_defaults(func=cmd_decompress)

    p = sub.add_parser("info", help="describe a .tinc file")
    p.add_argument("input")
    _add_max_voxels(p)
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("eval", help="compare an original with a reconstruction")
    p.add_argument("original")
    p.add_argument("reconstruction", help="a decompressed file, or the .tinc file itself (then its ratio is reported too)")
    p.add_argument("--tinc", help="the .tinc file, to report the actual ratio")
    p.add_argument("--threshold", type=float, action="append", help="binary accuracy at this intensity; repeatable")
    p.add_argument("--json", action="store_true", help="one JSON object: psnr, psnr_range, ssim, ratio, accuracy")
    p.add_argument("--plot", metavar="PNG", help="also write original / reconstruction / error slices to this PNG")
    p.add_argument("--max-error", type=float, metavar="E", help="exit with status 1 if any value is off by more than E")
    p.set_defaults(func=cmd_eval)

    try:
        from . import bench
    except ImportError:
        bench = None
    if bench is not None:
        bench.add_parser(sub)
    return parser


def _add_max_voxels(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-voxels", type=int, default=MAX_DECODE_VOXELS, metavar="N",
                        help=f"refuse files declaring more than N output elements, before allocating anything (default 2^32 = {MAX_DECODE_VOXELS})")


class Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C so that temporary outputs are removed on the way out."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    if hasattr(signal, "pthread_sigmask"):  # a parent's blocked signals are inherited: Ctrl-C must reach the fit
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        return args.func(args)
    except TincError as error:
        print(f"tinc: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tinc: interrupted; {_what_was_left(args)}", file=sys.stderr)
        return 130
    except Terminated:
        print(f"tinc: terminated; {_what_was_left(args)}", file=sys.stderr)
        return 143
    except MemoryError:
        print("tinc: error: out of memory", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


def _what_was_left(args: argparse.Namespace) -> str:
    """The end of the one-line message after an interrupt: what the user can do next."""
    output = getattr(args, "output", None)
    if args.command == "compress" and output and is_zarr_path(output) and os.path.isdir(output):
        return f"the chunks written so far are kept; rerun the same command to finish {output}"
    checkpoint = getattr(args, "checkpoint", None)
    hint = f"; rerun the same command to resume from {checkpoint}" if checkpoint and os.path.exists(checkpoint) else ""
    return "no output written" + hint


if __name__ == "__main__":
    sys.exit(main())
