"""The one configuration object. Field names are the CLI flags and the keyword arguments."""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable

from .errors import TincConfigError

INTRA_MODES = ("equal", "aoi", "variance")
LEVEL_WEIGHT_RULES = ("auto", "balanced", "equal")
# A single network gained 0.3-1.1 dB with 4 layers instead of 2 at 512x, where the 4 layers
# were 13-21 wide (RESULTS-ARCHIVE.md section 12), and lost 0.1-0.9 dB where they were 9-11 wide
# (anatomical.nii at 170x-256x, section 25); in trees, 3 layers per node lost (section 12,
# cell at 64x).
AUTO_TREE_LAYERS, AUTO_SINGLE_NETWORK_LAYERS, AUTO_SINGLE_NETWORK_MIN_WIDTH = 2, 4, 12
# a tree's leaves: one layer lost 0.1-1.9 dB on the corpus at the same time (benchmarks/RESULTS.md)
AUTO_LEAF_LAYERS = 2
OPTIMIZERS = ("adam", "adamax")
DEFAULT_STEPS = 5000
# Adam's rate for a tree of depth 0 or 1; each further level halves it (`learning_rate`).
DEFAULT_LR = 2e-3
# The fraction of every leaf block one step samples (batch / leaves / block voxels) below
# which the rate falls in proportion to it (`learning_rate`). On the 197x233x189
# grey-matter map (depth 1, blocks of 1.1 M voxels, 1/1075 of each per step) 2e-3 leaves a
# fit near its blocks' means (15.1 dB at 128x, 22.1 at 256x) and 6.9e-4 (the square root
# of the fall) gives 30.8 at 128x, where 3.5e-4 gives 34.6 and 2.4e-4 34.6 (150 s fits);
# on the 1955x1841 radiograph (1/440) the fall costs 0.1-0.2 dB. The four small inputs
# and the 1024x1024 MR sample see 1/128 or more of each block and keep their rate and
# their files. Today's figures: benchmarks/SCOREBOARD.md.
FULL_RATE_COVERAGE = 1 / 128


@dataclass
class TincConfig:
    """How to compress. `tinc compress --level-weights 1,0.8,1.5` is `level_weights=(1, .8, 1.5)`."""

    ratio: float | None = 64.0
    """Target compression ratio: the whole file is at most raw_bytes / ratio. With a
    `max_error` it is the network's budget and the correction comes on top; None (with a
    `max_error` only) searches the network's ratio for the smallest whole file."""
    target_psnr: float | None = None
    """If set, search the ratio for the smallest file whose PSNR reaches this (dB, peak of
    the dtype); `ratio` is where the search starts."""
    levels: int | None = None
    """Tree depth L (0 = one network). None chooses it from the data size and budget."""
    level_weights: tuple[float, ...] | str = "balanced"
    """Relative parameters per node, one per level (L+1 values); "equal"; "balanced": every
    level gets the same share; or "auto": each level's share follows the part of the data's
    variance its nodes can hold, from the similarity of distant blocks (`allocation.level_weights`;
    it gave 1.0-1.2 dB less than "balanced" on the grey-matter map, benchmarks/RESULTS.md, design decisions)."""
    layers: tuple[int, ...] | int | str = "auto"
    """Sine layers per node: one value, one per level, or "auto": `AUTO_TREE_LAYERS` per node
    in a tree, `AUTO_SINGLE_NETWORK_LAYERS` in a single network (depth 0) where they are at
    least `AUTO_SINGLE_NETWORK_MIN_WIDTH` wide."""
    intra: str = "equal"
    """How nodes of one level share that level's parameters: equal, aoi or variance."""
    aoi_threshold: float | None = None
    """Intensity above which a voxel is 'of interest' for intra='aoi' (default: the mean)."""
    loss_weight: tuple[tuple[float, float, float], ...] = ()
    """(low, high, weight) triples: voxels with intensity in [low, high] weigh `weight`."""
    steps: int | None = None
    """Training steps. None: `DEFAULT_STEPS`, or as many as fit in `time_limit` when one is set."""
    batch: int = 1 << 13
    """Voxels per training step (all leaves together)."""
    lr: float | None = None
    """Adam's peak learning rate. None: `DEFAULT_LR`, halved for every tree level past the
    first (see `learning_rate`)."""
    optimizer: str = "adam"
    time_limit: float | None = None
    """Seconds of training after which the fit stops early (a valid file is still written)."""
    w0: float = 30.0
    """SIREN frequency of every sine layer."""
    weight_bits: int = 5
    """Bits per weight assumed when sizing the networks (the tree's depth and layers are chosen
    as for at least `encoder.SHAPE_BITS`); 32 stores raw float32 weights."""
    qat_fraction: float = 0.1
    """Last fraction of the fit (of its steps or time) trained through the weights rounded as
    the coder will store them (quantization-aware training); 0 turns it off."""
    qat_damping: float = 20.0
    """Pull of the weights toward their rounded values during quantization-aware training,
    which stops them flipping across rounding boundaries: a penalty of `qat_damping` x how
    much rounding raised the loss (relative) x the loss x the mean squared distance in steps,
    grown over that phase from 0. 0 turns it off."""
    spread_penalty: float = 0.1
    """Weight, relative to the loss, of the weights' coded size in the objective before the
    rounded phase (`TreeINR.spread_penalty`): narrower weight distributions code in fewer
    bits, and within the budget the bits saved become finer steps. 0 turns it off."""
    value_range: tuple[float, float] = (-1.0, 1.0)
    """Range the data is scaled to for the fit."""
    min_width: int = 8
    """No node's MLP may be narrower; the automatic depth respects it."""
    channel_axis: int | None = None
    """Axis holding channels (e.g. RGB), not partitioned by the tree."""
    starts: int = 4
    """Initial weights tried, each for a few hundred steps (at most a tenth of the fit); the
    fit continues the one with the lowest loss (see `training.starts.start_steps`). 1: one start."""
    random_biases: bool = False
    """Every leaf's head starts at random biases near zero rather than at the data's mean.
    Chunked compression fits its sample chunks so: their mean weights are then a better start
    for the other chunks (`tinc.chunk_starts`)."""
    seed: int = 0
    device: str = "cpu"
    quiet: bool = False
    checkpoint: str | None = None
    """File the fit is saved to every `checkpoint_every` seconds; a run with the same input
    and options resumes from it (see `tinc.training`)."""
    checkpoint_every: float = 60.0
    max_error: float | None = None
    """Guaranteed bound on every decoded value's error, in the data's units: the residual
    after the network is quantized and stored too (`tinc.correction`). 0 on integer data
    is lossless."""
    max_error_rel: float | None = None
    """`max_error` as a fraction of the data's range (max - min)."""

    def __post_init__(self) -> None:
        # lists from JSON configs or the CLI become the tuples the fields are typed as
        if not isinstance(self.level_weights, str):
            self.level_weights = tuple(float(w) for w in self.level_weights)
        if not isinstance(self.layers, (int, str)):
            self.layers = tuple(int(n) for n in self.layers)
        self.loss_weight = tuple(tuple(float(x) for x in triple) for triple in self.loss_weight)
        self.value_range = tuple(float(x) for x in self.value_range)
        self.validate()

    def validate(self) -> None:
        """Raise `TincConfigError` naming the first field whose value cannot be used."""
        self._validate_goal()
        self._validate_tree()
        self._validate_training()

    def _validate_goal(self) -> None:
        """What the file must reach: a ratio, a PSNR or an error bound."""
        if self.ratio is None:
            if self.max_error is None and self.max_error_rel is None:
                raise TincConfigError("ratio must be a number > 1 (only a max_error may leave it to a search)")
        elif not self.ratio or not (self.ratio > 1):
            raise TincConfigError(f"ratio must be > 1, got {self.ratio}")
        for name in ("max_error", "max_error_rel"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf")):
                raise TincConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.max_error is not None and self.max_error_rel is not None:
            raise TincConfigError("give max_error or max_error_rel, not both")
        if self.target_psnr is not None and (self.max_error is not None or self.max_error_rel is not None):
            raise TincConfigError("target_psnr and max_error ask for different things: give one")
        if self.target_psnr is not None and not 0 < self.target_psnr < 400:
            raise TincConfigError(f"target_psnr must be a positive number of dB, got {self.target_psnr}")

    def _validate_tree(self) -> None:
        """The tree's shape and how its parameters are shared."""
        if self.levels is not None and not 0 <= self.levels <= 8:
            raise TincConfigError(f"levels must be between 0 and 8, got {self.levels}")
        if self.intra not in INTRA_MODES:
            raise TincConfigError(f"intra must be one of {', '.join(INTRA_MODES)}, got {self.intra!r}")
        if isinstance(self.level_weights, str):
            if self.level_weights not in LEVEL_WEIGHT_RULES:
                raise TincConfigError(f"level_weights must be numbers or one of {', '.join(LEVEL_WEIGHT_RULES)}, got {self.level_weights!r}")
        elif not self.level_weights or any(not w > 0 for w in self.level_weights):
            raise TincConfigError("level weights must be positive")
        if isinstance(self.layers, str):
            if self.layers != "auto":
                raise TincConfigError(f"layers must be numbers or auto, got {self.layers!r}")
        else:
            layers = (self.layers,) if isinstance(self.layers, int) else tuple(self.layers)
            if not layers or any(n < 1 for n in layers):
                raise TincConfigError(f"layers must be >= 1, got {self.layers}")
        if self.min_width < 1:
            raise TincConfigError("min_width must be >= 1")

    def _validate_training(self) -> None:
        """The fit, the rounding of its weights and its checkpoints."""
        if self.optimizer not in OPTIMIZERS:
            raise TincConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.steps is not None and self.steps < 0:
            raise TincConfigError(f"steps must be >= 0, got {self.steps}")
        if self.lr is not None and not 0 < self.lr < 1:
            raise TincConfigError(f"lr must be in (0, 1), got {self.lr}")
        if self.starts < 1:
            raise TincConfigError(f"starts must be >= 1, got {self.starts}")
        if self.batch < 1:
            raise TincConfigError(f"batch must be >= 1, got {self.batch}")
        if self.time_limit is not None and self.time_limit < 0:
            raise TincConfigError(f"time_limit must be >= 0, got {self.time_limit}")
        if self.weight_bits not in (32,) and not 2 <= self.weight_bits <= 16:
            raise TincConfigError(f"weight_bits must be 2..16 or 32, got {self.weight_bits}")
        if not 0 <= self.qat_fraction < 1:
            raise TincConfigError(f"qat_fraction must be in [0, 1), got {self.qat_fraction}")
        if not self.qat_damping >= 0:
            raise TincConfigError(f"qat_damping must be >= 0, got {self.qat_damping}")
        if not self.spread_penalty >= 0:
            raise TincConfigError(f"spread_penalty must be >= 0, got {self.spread_penalty}")
        low, high = self.value_range
        if not low < high:
            raise TincConfigError(f"value_range must be increasing, got {self.value_range}")
        for low_w, high_w, weight in self.loss_weight:
            if low_w > high_w or weight < 0:
                raise TincConfigError(f"bad loss weight {low_w}:{high_w}:{weight}")
        if not self.checkpoint_every >= 0:
            raise TincConfigError(f"checkpoint_every must be >= 0 seconds, got {self.checkpoint_every}")

    @classmethod
    def from_options(cls, ratio: float | None = None, **options: Any) -> "TincConfig":
        """Build from keyword arguments, rejecting unknown names with the list of valid ones."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise TincConfigError(f"unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        if ratio is not None:
            options["ratio"] = ratio
        elif "ratio" not in options and (options.get("max_error") is not None or options.get("max_error_rel") is not None):
            options["ratio"] = None  # a bound alone: the network's size is searched for the smallest file
        return cls(**options)

    def step_count(self) -> int | None:
        """The steps to run; None when only `time_limit` bounds the fit."""
        if self.steps is not None:
            return self.steps
        return None if self.time_limit else DEFAULT_STEPS

    def replace(self, **changes: Any) -> "TincConfig":
        return dataclasses.replace(self, **changes)

    def requested_depth(self) -> int | None:
        """The depth asked for, explicitly or implied by per-level lists; None for automatic."""
        if self.levels is not None:
            return self.levels
        if not isinstance(self.level_weights, str):
            return len(self.level_weights) - 1
        if not isinstance(self.layers, (int, str)):
            return len(tuple(self.layers)) - 1
        return None

    def layer_choices(self, depth: int) -> list[tuple[tuple[int, ...], int]]:
        """(sine layers of each level's nodes, narrowest width they are used at) for a tree of
        `depth` levels below the root, in order of preference: the first whose widths the
        budget can feed to that width (and to the depth's floor) is used."""
        if self.layers != "auto":
            return [(_per_level(self.layers, depth, "layers"), 0)]
        tree = (AUTO_TREE_LAYERS,) * depth + (AUTO_LEAF_LAYERS,)
        return [((AUTO_SINGLE_NETWORK_LAYERS,), AUTO_SINGLE_NETWORK_MIN_WIDTH), (tree, 0)] if depth == 0 else [(tree, 0)]

    def learning_rate(self, depth: int, coverage: float = 1.0) -> float:
        """The peak rate for a tree of `depth` whose steps sample `coverage` of every leaf
        block. Sine layers chained through more levels are more fragile: on example4d at 8x
        a depth-3 tree stays at the data's mean at 2e-3 and 1e-3 and trains at 5e-4, and
        depth 2 gains 1.3 dB at 1e-3 over 2e-3 (RESULTS-ARCHIVE.md section 14). A step that
        sees a small part of large blocks gives a noisy gradient, which a high rate turns
        into a fit stuck near the blocks' means (`FULL_RATE_COVERAGE`). Where even that is
        too high, `training.policies` halve it."""
        if self.lr is not None:
            return self.lr
        return DEFAULT_LR / 2 ** max(0, depth - 1) * min(1.0, coverage / FULL_RATE_COVERAGE)

    def level_weights_for(self, depth: int) -> tuple[float, ...]:
        """Numbers or "equal", one per level; the rules depend on the layout (`allocation.level_weights`)."""
        return _per_level(1.0 if isinstance(self.level_weights, str) else self.level_weights, depth, "level_weights")


def _per_level(value, depth: int, name: str) -> tuple:
    """One value per level. A longer list (a tree made shallower) keeps its deepest entries."""
    if isinstance(value, (int, float)):
        return (value,) * (depth + 1)
    values = tuple(value)
    if len(values) < depth + 1:
        raise TincConfigError(f"{name} has {len(values)} values, the tree has {depth + 1} levels")
    return values[len(values) - depth - 1:]


def read_config_file(path: str, text_parsers: dict[str, Callable[[str], Any]] | None = None) -> dict[str, Any]:
    """The options a TOML or JSON file gives: TincConfig field names (dashes or underscores)
    and values, type-checked and validated together; the command line's flags go over them.
    A string value of a field in `text_parsers` is read as its flag reads it (levels = "auto")."""
    if not os.path.isfile(path):
        raise TincConfigError(f"{path}: no such file")
    raw = _parse_config_file(path)
    hints = typing.get_type_hints(TincConfig)
    options: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in hints:
            raise TincConfigError(f"{path}: unknown option {key!r}; valid: {', '.join(sorted(hints))}")
        if name in options:
            raise TincConfigError(f"{path}: {name} is given twice")
        try:
            parsed = text_parsers[name](value) if isinstance(value, str) and name in (text_parsers or {}) else value
            options[name] = _conform(parsed, hints[name])
        except (_Mismatch, ValueError):  # a text parser raises ValueError on text it cannot read
            raise TincConfigError(f"{path}: {name} must be {_describe(hints[name])}, got {value!r}") from None
    try:
        TincConfig.from_options(**options)
    except TincConfigError as error:  # a bad value, named by the message
        raise TincConfigError(f"{path}: {error}") from None
    return options


def _parse_config_file(path: str) -> dict[str, Any]:
    """The file's top-level table: JSON for a .json file, TOML otherwise."""
    try:
        with open(path, "rb") as handle:
            text = handle.read()
    except OSError as error:
        raise TincConfigError(f"{path}: cannot read ({error.strerror})") from None
    if path.lower().endswith(".json"):
        try:
            parsed = json.loads(text)
        except (ValueError, UnicodeDecodeError) as error:
            raise TincConfigError(f"{path}: not valid JSON ({error})") from None
    else:
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise TincConfigError(f"{path}: reading TOML needs Python 3.11 or later; give a .json file") from None
        try:
            parsed = tomllib.loads(text.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise TincConfigError(f"{path}: not valid TOML ({error})") from None
    if not isinstance(parsed, dict):
        raise TincConfigError(f"{path}: expected a table of option names and values")
    return parsed


class _Mismatch(Exception):
    """A value from a file is not of its field's type."""


def _conform(value: Any, hint: Any) -> Any:
    """`value` as the field typed `hint` holds it (lists become tuples, integers become floats
    where a number is expected, as the command line's parsers give them); else `_Mismatch`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _conform(value, option)
            except _Mismatch:
                pass
    elif hint is type(None) and value is None:
        return None
    elif hint in (bool, str) and isinstance(value, hint):
        return value
    elif hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif origin is tuple and isinstance(value, (list, tuple)):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_conform(item, args[0]) for item in value)
        if len(value) == len(args):
            return tuple(_conform(item, arg) for item, arg in zip(value, args))
    raise _Mismatch


_TYPE_NAMES = {bool: ("true or false", "booleans"), int: ("an integer", "integers"),
               float: ("a number", "numbers"), str: ("a string", "strings")}


def _describe(hint: Any, plural: bool = False) -> str:
    """A field's type in words, for an error message: "a number or a list of numbers"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(option, plural) for option in args if option is not type(None))
    if origin is tuple:
        count = "" if len(args) == 2 and args[1] is Ellipsis else f"{len(args)} "
        return f"{'lists' if plural else 'a list'} of {count}{_describe(args[0], plural=True)}"
    return _TYPE_NAMES[hint][plural]
