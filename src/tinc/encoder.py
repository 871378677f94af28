"""Encoding one array at one ratio, in stages: prepare the values, plan the tree for the
byte budget, fit it, code its weights to the budget, pack the file (and, with a bound, add
the correction). `tinc.codec.TincCodec` calls `encode`; the searches of `tinc.target`
call it once per trial.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from . import coding, container, correction, metrics
from .allocation import level_energy, plan_tree
from .bitstream import varint
from .config import TincConfig
from .decoder import Decoder
from .devices import torch_device
from .entropy import RateTerms, WeightCoder
from .errors import TincConfigError, TincError
from .format import Header, make_header
from .model import TreeINR
from .partition import TreeLayout
from .training import FitReport, data_mean, fit
from .training.policies import RecoverFromDivergence
from .tree import TreePlan
from .values import channels_last, check_array, normalise, prediction, restore

# The tree's depth and layers are chosen as if weights cost at least this many bits, the widths
# for `weight_bits`: the depth floor was measured on networks sized for 6 bits, and sizing for
# 5 throughout moved cell at 64x and 512x to other depths and lost 3.7 and 1.7 dB there, while
# it gains in most other cells (RESULTS-ARCHIVE.md sections 13 and 15).
SHAPE_BITS = 6
PLANNING_PASSES = 4  # a plan and its overhead agree after two passes but where they alternate
_STREAM_SLACK = 16  # the ANS stream ends on a 32-bit word; the WGTS length varint may grow


@dataclass
class EncodeReport:
    """What happened during an encode, for progress lines and `tinc info`."""

    plan: TreePlan | None = None
    steps: int = 0
    fit_seconds: float = 0.0
    fit_psnr: float = float("nan")
    stopped_by_time: bool = False
    resumed_from: int = 0
    log2_quality: float | None = None
    start_losses: list[float] = field(default_factory=list)
    """Per initial weights tried, its loss after its trial steps (empty: one start)."""
    start: int = 0
    """The start the fit continued."""
    target_search: "TargetSearch | None" = None  # noqa: F821
    """The ratio search of `target_psnr`, if one ran."""
    notes: list[str] = field(default_factory=list)
    nbytes: int = 0
    level_energy: tuple[float, ...] = ()
    """Under level_weights="auto": each level's part of the data's variance (`allocation.level_energy`)."""
    network_bytes: int = 0
    """Bytes of the file without its correction (all of it without a `max_error`)."""
    bound: float | None = None
    """The guaranteed maximum error (data units), with a `max_error`."""
    max_error: float | None = None
    """The largest error of the file's decode, measured before writing it."""
    ratio_trials: list[tuple[float, int, int]] = field(default_factory=list)
    """(network ratio, network bytes, whole file bytes) per fit of a `max_error` ratio search."""
    learned_start: bool = False
    """The fit began from a `LearnedStart`, not from random weights."""
    fitted: "LearnedStart | None" = None
    """The fitted weights before coding, a start for fits of similar arrays."""

    def note(self, config: TincConfig, message: str) -> None:
        self.notes.append(message)
        say(config, message)


@dataclass(frozen=True, eq=False)
class LearnedStart:
    """Initial weights learned on similar arrays (`tinc.chunked` fits a few chunks of a volume
    first and starts the others from their mean): a fit whose plan has `signature` begins
    from `weights`, one start only; any other plan starts from random weights as usual."""

    signature: str  # `TreePlan.signature`
    weights: np.ndarray  # float32, flat: `TreeINR.flat`

    @classmethod
    def means(cls, starts: "Sequence[LearnedStart]") -> "list[LearnedStart]":
        """One start per signature: the mean weights of the starts that have it."""
        signatures = sorted({s.signature for s in starts})
        return [cls(signature, np.mean([s.weights for s in starts if s.signature == signature], axis=0,
                                       dtype=np.float64).astype(np.float32)) for signature in signatures]


@dataclass(eq=False)
class Prepared:
    """The array as the fit sees it: channels last, scaled to `value_range`."""

    original: np.ndarray
    spatial: tuple[int, ...]
    values: np.ndarray
    low: float
    high: float
    normalised: np.ndarray
    budget: int
    _blocks: dict = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return self.normalised.shape[-1]

    def blocks(self, layout: TreeLayout) -> tuple[np.ndarray, np.ndarray]:
        """The data cut into `layout`'s leaf blocks, and which voxels are real (not padding)."""
        if layout not in self._blocks:  # the planning passes and the fit cut the data by the same layout
            self._blocks[layout] = layout.to_blocks(self.normalised), layout.valid_mask()
        return self._blocks[layout]


def encode(array, config: TincConfig, metadata: dict | None = None,
           starts: Sequence[LearnedStart] = ()) -> tuple[bytes, EncodeReport]:
    """The `.tinc` bytes of `array` at `config.ratio`, and what happened; the fit begins
    from the one of `starts` whose signature its plan has, if any."""
    prepared = prepare(check_array(array), config)
    report = EncodeReport()
    plan, header = plan_for_budget(prepared, config, metadata, report)
    # the WGTS length varint grows with the payload: reserve its largest size
    weight_budget = prepared.budget - len(container.pack(header, b"", metadata)) - len(varint(prepared.budget)) + 1
    coded = fit_and_code(prepared, plan, config, weight_budget, report, starts)
    data = container.pack(header, coded, metadata)
    report.network_bytes = len(data)
    bound = correction_bound(config, prepared.low, prepared.high)
    if bound is not None:
        data, report.max_error = with_correction(data, prepared.original, bound)
        report.bound = bound
    report.nbytes = len(data)
    return data, report


def prepare(original: np.ndarray, config: TincConfig) -> Prepared:
    spatial, values = channels_last(original, config.channel_axis)
    low, high = float(np.min(values)), float(np.max(values))
    normalised = normalise(values, low, high, config.value_range)
    budget = int(original.size * original.dtype.itemsize // config.ratio)
    return Prepared(original, spatial, values, low, high, normalised, budget)


def plan_for_budget(prepared: Prepared, config: TincConfig, metadata: dict | None, report: EncodeReport) -> tuple[TreePlan, Header]:
    """The tree for the bytes the budget leaves for weights, and its header.

    The overhead depends on the plan, and the plan on the bytes left for weights: plan from
    the overhead of the smallest plan (one network, min_width wide), then again with each
    plan's real overhead until it no longer changes. Near a choice of layers the passes can
    alternate (4 layers need more tensor headers than the 2 they fall back to): the plan
    kept is the last one whose overhead the bytes it was planned with cover."""
    original, budget = prepared.original, prepared.budget

    def header_of(plan: TreePlan) -> Header:
        return make_header(original, plan, config.channel_axis, config.value_range, config.w0, prepared.low, prepared.high)

    def overhead_of(plan: TreePlan) -> int:
        """Bytes of the file that are not weights: container, header, tensor headers, stream slack."""
        n_tensors = 2 * (sum(plan.layers) + 1)
        return len(container.pack(header_of(plan), b"", metadata)) + 1 + n_tensors * coding.TENSOR_HEADER_BYTES + _STREAM_SLACK

    smallest = TreePlan(TreeLayout(prepared.spatial, ()), min((layers for layers, _ in config.layer_choices(0)), key=sum),
                        (np.array([config.min_width]),), prepared.channels)
    overhead, chosen = overhead_of(smallest), None
    for _ in range(PLANNING_PASSES):
        params = max(budget - overhead, 0) * 8 / config.weight_bits
        shape_params = max(budget - overhead, 0) * 8 / max(config.weight_bits, SHAPE_BITS)
        if params <= 0:
            hint = "use a lower --ratio" if original.nbytes > overhead else f"the array ({original.nbytes} bytes) is too small to compress"
            raise TincConfigError(f"ratio {config.ratio:g} leaves {budget} bytes for this array; {hint}")
        plan, note = plan_tree(prepared.spatial, params, config, prepared.channels, prepared.blocks, shape_params)
        planned_with, overhead = overhead, overhead_of(plan)
        if overhead <= planned_with:
            chosen = plan, note
        if overhead == planned_with:
            break
    plan, note = chosen or (plan, note)
    report.plan = plan
    if config.level_weights == "auto" and plan.depth > 0:
        report.level_energy = tuple(float(e) for e in level_energy(plan.layout, *prepared.blocks(plan.layout)))
    if note:
        report.note(config, note)
    return plan, header_of(plan)


def fit_and_code(prepared: Prepared, plan: TreePlan, config: TincConfig, weight_budget: int, report: EncodeReport,
                 starts: Sequence[LearnedStart] = ()) -> bytes:
    """Fit the tree (quantization-aware, to the coder's steps for `weight_budget`) and code its weights."""
    device = torch_device(config.device)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    blocks = torch.as_tensor(prepared.blocks(plan.layout)[0], device=device)
    weights = torch.as_tensor(loss_weights(prepared.values, plan.layout, config), device=device)
    mean = None if config.random_biases else data_mean(blocks, weights)
    model = TreeINR(plan, w0=config.w0, generator=generator, output_mean=mean).to(device)
    start = next((s for s in starts if s.signature == plan.signature), None)
    if start is not None:
        with torch.no_grad():
            model.flat.copy_(torch.as_tensor(start.weights, device=device))
        # other starts would be random weights: trials would only spend the steps the learned start saves
        config, report.learned_start = config.replace(starts=1), True
    coords = torch.as_tensor(plan.layout.block_coordinates(), device=device)
    coder = WeightCoder(weight_budget, weights, coords, config.batch, config.seed)
    raw = config.weight_bits == 32
    rate = RateTerms.for_config(config, None if raw else coder.coder_steps)
    if prepared.high == prepared.low:
        # any weights decode a constant array exactly (`values.prediction` maps every output to
        # its one value), and zeros code smallest. Background chunks of a scan often are
        # constant (12 of the 80 of benchmarks/scale.py's cine)
        with torch.no_grad():
            model.flat.zero_()
        fitted = FitReport(0, 0.0, float("nan"), False)
    else:
        progress = None if config.quiet else FitProgress(config)
        try:
            fitted = fit(model, blocks, weights, coords, config, progress=progress and progress.update_fit, rate=rate)
        finally:
            if progress:
                progress.close()
    report.steps, report.fit_seconds, report.stopped_by_time = fitted.steps, fitted.seconds, fitted.stopped_by_time
    report.resumed_from, report.start_losses, report.start = fitted.resumed_from, fitted.start_losses, fitted.start
    if fitted.restarts:
        report.note(config, f"the fit stayed at the blocks' mean values and started again {fitted.restarts} time(s), "
                            "with half the learning rate each time")
    if fitted.recoveries:
        report.note(config, f"the fit's loss jumped past {RecoverFromDivergence.DIVERGED:g}x its best {fitted.recoveries} time(s); "
                            "it went back to its last healthy state with half the learning rate each time")
    if fitted.loss == fitted.loss and fitted.loss > 0:
        report.fit_psnr = fit_psnr(fitted.loss, config)
    report.fitted = LearnedStart(plan.signature, model.flat.detach().cpu().numpy().copy())
    coded = coder.code(model, rate.steps, raw=raw)
    report.log2_quality = coder.log2_quality
    return coded


def loss_weights(data: np.ndarray, layout: TreeLayout, config: TincConfig) -> np.ndarray:
    """[leaves, block_voxels] float32: 0 on padding, the user's intensity weights elsewhere."""
    weight = np.ones(data.shape[:-1] + (1,), dtype=np.float32)
    if config.loss_weight:
        intensity = data.mean(axis=-1, keepdims=True)
        for low, high, value in config.loss_weight:
            weight[(intensity >= low) & (intensity <= high)] = value
    return layout.to_blocks(weight, fill=0.0)[..., 0]


# ------------------------------------------------------------------ a guaranteed maximum error
def correction_bound(config: TincConfig, low: float, high: float) -> float | None:
    """The absolute bound of `max_error` or `max_error_rel` (of the data's range), or None."""
    if config.max_error is not None:
        return float(config.max_error)
    if config.max_error_rel is not None:
        return float(config.max_error_rel) * (high - low)
    return None


def with_correction(data: bytes, original: np.ndarray, bound: float) -> tuple[bytes, float]:
    """The file `data` (network only) with a CORR section that brings every value within
    `bound` of `original`, and the largest error of its decode.

    The residual is taken against the decoder's own prediction (`Decoder.network_values`,
    the path every decode runs); the coder stores values within half a step of it (any on
    the side the decoder clips where the original is the data's minimum or maximum). The
    finished file is decoded again and checked value by value before it is returned: a
    file that would break its bound is never written."""
    parsed = container.unpack(data)
    if parsed.correction is not None:
        raise TincConfigError("the file already has a correction")
    header, coded, metadata = parsed.header, parsed.weights, parsed.metadata or None
    _, values = channels_last(original, header.channel_axis)
    low, high = header.range
    half = correction.half_step(bound, original.dtype, low, high)
    network = Decoder(data).network_values()
    residual = values.astype(np.float64) - prediction(network, header)
    for _ in range(8):
        q = correction.quantize(residual, half)
        measured = metrics.max_abs_error(original, restore(network, header, q * (2.0 * half)))
        if measured <= bound:
            break
        # only the dtype's own rounding can get here (half_step allows for it): a finer step
        half *= 0.5
    else:
        raise TincConfigError(f"max error {bound:g} cannot be guaranteed for this {original.dtype} data; use a larger bound")
    payload = correction.payload(None, bound, half, measured)
    if q.any():
        # the coder may store other values within the bound (between the steps, or past the
        # range's ends where the decoder clips): their error is measured again
        residuals, stored = correction.code(residual, half, values == low, values == high)
        stored_error = metrics.max_abs_error(original, restore(network, header, stored))
        if stored_error <= bound:
            payload = correction.payload(residuals, bound, half, stored_error)
        else:  # never expected (the margin covers the arithmetic): q itself, general-purpose coders
            payload = correction.encode(q, bound, half, measured)
    final = container.pack(header, coded, metadata, payload)
    decoded = Decoder(final).decode()
    checked = metrics.max_abs_error(original, decoded)
    if checked > bound:  # the decoder disagrees with the encoder's own arithmetic: never write such a file
        raise TincError(f"internal error: the decode is off by {checked:g}, more than the bound {bound:g}; file not written")
    return final, checked


# ------------------------------------------------------------------ messages
def fit_psnr(loss: float, config: TincConfig) -> float:
    """PSNR over the data's range from a training MSE, which is measured in `value_range` units."""
    peak = config.value_range[1] - config.value_range[0]
    return 10 * math.log10(peak * peak / loss)


def say(config: TincConfig, message: str) -> None:
    if not config.quiet:
        print(f"tinc: note: {message}", file=sys.stderr)


class FitProgress:
    def __init__(self, config: TincConfig):
        from .progress import bar

        self.config = config
        self.bar = bar(total=config.step_count(), desc="fitting", unit="step", file=sys.stderr, leave=False, dynamic_ncols=True)
        self.done = 0

    def update_fit(self, step: int, loss: float, phase: str | None = None) -> None:
        """`phase` names a trial start (its steps count from 1 again)."""
        self.bar.update(step - self.done)
        self.done = step
        if loss > 0:
            self.bar.set_postfix_str(f"{phase + ', ' if phase else ''}fit PSNR {fit_psnr(loss, self.config):.1f} dB (range)")

    def close(self) -> None:
        self.bar.close()
