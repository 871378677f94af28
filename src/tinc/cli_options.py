"""The options of `tinc compress`: TincConfig's fields as flags, in the groups its help
shows (what a user decides, then the advanced ones), the chunking flags, and `--config` files."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Callable

from .config import INTRA_MODES, LEVEL_WEIGHT_RULES, OPTIMIZERS, TincConfig, read_config_file


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
    "random_biases": dict(action="store_true", help="start every leaf's head at random biases near zero, not at the "
                          "data's mean"),
}

CONFIG_FLAGS: dict[str, dict] = {**COMPRESS_FLAGS, **ADVANCED_FLAGS}


# Chunked compression's own flags: how the array is cut and where the work runs, not TincConfig fields.
CHUNKED_FLAGS: dict[str, dict] = {
    "chunks": dict(type=_ints, metavar="C or C0,C1,..", help="chunk shape of the .zarr output, one tree per chunk (default 128)"),
    "halo": dict(type=int, metavar="VOXELS", help="voxels of neighbouring chunks fitted with each chunk, cropped on decode (default 4)"),
    "scheduler": dict(metavar="ADDRESS", help="dask.distributed scheduler to run on (default: a local cluster)"),
    "workers": dict(type=int, metavar="N", help="worker processes of the local cluster (default: one per core)"),
    "start_samples": dict(type=int, metavar="N", help="chunks fitted first; the others start from their mean weights "
                                                      "(default 4; 0: every chunk from random weights)"),
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
    parser.add_argument("input", help="TIFF / OME-TIFF, NIfTI (.nii, .nii.gz), .npy, PNG, DICOM (.dcm or a series directory), "
                        ".mgh/.mgz, .mnc, Analyze (.hdr/.img), PAR/REC, AFNI (.HEAD/.BRIK) or ECAT (.v); .zarr, TIFF or .npy when chunked")
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
        chunked.add_argument(_flag(name), dest=name, default=None, **spec)
