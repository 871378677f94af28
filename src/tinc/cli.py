"""Command line: `tinc compress | decompress | info | eval | bench`."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time

import numpy as np

from . import container, metrics
from .tree import width_text
from .codec import TincCodec
from .format import MAX_DECODE_VOXELS, plan_from_header
from .cli_options import CHUNKED_FLAGS, COMPRESS_DESCRIPTION, COMPRESS_EPILOG, add_compress_arguments, compress_options
from .errors import TincConfigError, TincError
from .io import check_writable, format_of, is_zarr_path, read_with_metadata, write_bytes


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
            f"{summary_psnr(data, array, codec.config.device)}{bound}, {time.perf_counter() - started:.1f} s"
        )
        if report.level_energy:
            parts = "/".join(f"{100 * e:.0f}" for e in report.level_energy)
            shares = "/".join(f"{100 * p / plan.params:.0f}" for p in plan.params_per_level())
            print(f"  levels by similarity: variance parts {parts}%, parameter shares {shares}%")
    return 0


# A decode of about this many FLOPs takes some 5-15 s on 2 CPU cores (30-50 GFLOPS). The
# compress summary's PSNR then comes from evenly spaced slices instead: a 30 s fit of a
# 57 M-voxel volume was followed by a 51 s decode for its summary line.
SUMMARY_DECODE_FLOPS = 4e11
SUMMARY_SLICES = 16


def summary_psnr(data: bytes, array: np.ndarray, device: str) -> str:
    """The PSNR of the written file against `array`, for the compress summary: over the whole
    array, or, where that decode would be long, over `SUMMARY_SLICES` evenly spaced slices
    of the first spatial axis (exact for those voxels: a region decodes as its crop)."""
    from .decoder import Decoder

    decoder = Decoder(data, device=device)
    axis = 1 if decoder.channel_axis == 0 else 0
    count = array.shape[axis]
    # every node runs on every local coordinate of a leaf block
    flops = 2 * decoder.plan.layout.block_voxels * decoder.plan.params
    if flops <= SUMMARY_DECODE_FLOPS or count <= 2 * SUMMARY_SLICES:
        return f"PSNR {metrics.psnr(array, decoder.decode()):.2f} dB"
    picked = np.unique(np.linspace(0, count - 1, SUMMARY_SLICES).round().astype(int))
    full = [slice(None)] * array.ndim
    decoded = np.concatenate([decoder.decode(roi=tuple(full[:axis] + [slice(i, i + 1)] + full[axis + 1:])) for i in picked], axis=axis)
    psnr = metrics.psnr(np.take(array, picked, axis=axis), decoded, peak=metrics.peak_value(array))
    return f"PSNR {psnr:.2f} dB (over {len(picked)} evenly spaced of {count} slices)"


def _compress_chunked(args: argparse.Namespace, options: dict) -> int:
    from .chunked import DEFAULT_CHUNK, DEFAULT_HALO, DEFAULT_START_SAMPLES, compress

    summary = compress(args.input, args.output, chunks=DEFAULT_CHUNK if args.chunks is None else args.chunks,
                       halo=DEFAULT_HALO if args.halo is None else args.halo, scheduler=args.scheduler,
                       workers=args.workers, start_samples=DEFAULT_START_SAMPLES if args.start_samples is None else args.start_samples,
                       **options)
    if not options.get("quiet"):
        print("\n".join(summary.lines()))
    return 0


def cmd_decompress(args: argparse.Namespace) -> int:
    from .decode import write_decoded
    from .decoder import Decoder

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
    dtype = np.dtype(header.dtype)
    raw = math.prod(header.shape) * dtype.itemsize
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
        "shape": header.shape,
        "dtype": str(dtype),
        "levels": plan.depth,
        "splits": header.splits,
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
        "input_metadata": sorted(parsed.metadata),
    }


def cmd_info(args: argparse.Namespace) -> int:
    if is_zarr_path(args.input):
        return _store_info(args)
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
    if info["input_metadata"]:
        print("  input     " + ", ".join(info["input_metadata"]) + " (restored on decompression)")
    bound = info["bound"]
    if bound is not None:
        print(f"  bound     max error {bound['max_error']:g} guaranteed, {bound['measured_max_error']:g} measured at encode; "
              f"network {bound['network_bytes']} B + correction {bound['correction_bytes']} B ({bound['coding']}, step {bound['step']:g})")
    return 0


def _store_info(args: argparse.Namespace) -> int:
    from .zarr_store import describe_store

    info = describe_store(args.input, args.max_voxels)
    if args.json:
        print(json.dumps(info))
        return 0
    state = "complete" if info["complete"] else f"incomplete: {info['chunks_written']} of {info['chunk_count']} chunks written"
    print(f"{args.input}: {info['bytes']} bytes, ratio {info['ratio']:.2f}x, chunked store ({state})")
    print(f"  array     {tuple(info['shape'])} {info['dtype']}, {info['chunk_count']} chunks of {tuple(info['chunks'])}, halo {info['halo']}")
    if info["psnr"] is not None:
        low, high = info["chunk_psnr_range"] or (info["psnr"], info["psnr"])
        print(f"  measured  PSNR {info['psnr']:.2f} dB when compressed; chunks {low:.2f} to {high:.2f} dB")
    print("  options   " + (", ".join(f"{k} {v}" for k, v in info["options"].items()) or "tinc's defaults"))
    if info["input_metadata"]:
        print("  input     " + ", ".join(info["input_metadata"]) + " (restored on decompression)")
    for tree, count in sorted(info["trees"].items(), key=lambda item: -item[1]):
        print(f"  {count:8d}  chunk{'s' if count > 1 else ' '}  {tree}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.max_error is not None and not 0 <= args.max_error < math.inf:
        raise TincConfigError(f"--max-error must be a finite number >= 0, got {args.max_error:g}")
    original, _ = read_with_metadata(args.original)
    tinc_file = args.tinc
    if str(args.reconstruction).endswith(".tinc"):  # decoded in memory; it is also the file whose ratio counts
        from .decoder import Decoder

        with open(_existing(args.reconstruction), "rb") as handle:
            recon = Decoder(handle.read()).decode()
        tinc_file = tinc_file or args.reconstruction
    else:
        recon, _ = read_with_metadata(args.reconstruction)
    size = os.path.getsize(_existing(tinc_file)) if tinc_file else None
    if tinc_file is None and is_zarr_path(args.reconstruction):
        from .zarr_store import is_tinc_store, store_bytes

        size = store_bytes(args.reconstruction) if is_tinc_store(args.reconstruction) else None  # a chunked store's ratio
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
    if os.path.isdir(path):
        raise TincConfigError(f"{path}: is a directory, not a .tinc file (a chunked store's name ends in .zarr)")
    if not os.path.isfile(path):
        raise TincConfigError(f"{path}: no such file")
    return path


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

    p = sub.add_parser("info", help="describe a .tinc file or a chunked .zarr store")
    p.add_argument("input")
    _add_max_voxels(p)
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("eval", help="compare an original with a reconstruction")
    p.add_argument("original")
    p.add_argument("reconstruction", help="a decompressed file, or the .tinc file or chunked .zarr store itself (then its ratio is reported too)")
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
        status = args.func(args)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is caught below
        return status
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
    except BrokenPipeError:  # the reader of stdout went away (`tinc info F | head`): stop quietly, as tools killed by SIGPIPE do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the interpreter's last flush must not fail again
        return 141
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
