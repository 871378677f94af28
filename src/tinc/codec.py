"""`TincCodec`: array -> .tinc bytes -> array, in the style of a numcodecs codec.

Data flows one way: validate and normalise the array, plan the tree for the byte budget
(allocation), cut it into leaf blocks (partition), fit the batched tree (model, training),
quantize and entropy-code the weights to the budget (coding), and wrap everything in the
container. Decoding reverses the last steps and needs nothing but the bytes.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from dataclasses import dataclass, field

import numpy as np
import torch

from . import coding, container
from .allocation import level_energy, plan_tree
from .config import TincConfig
from .devices import torch_device
from .errors import TincConfigError, TincError
from .format import MAX_DECODE_VOXELS, make_header
from .model import TreeINR
from .partition import TreeLayout
from .tree import TreePlan
from .values import channels_last, check_array, normalise, prediction, restore

# The tree's depth and layers are chosen as if weights cost at least this many bits, the widths
# for `weight_bits`: the depth floor was measured on networks sized for 6 bits, and sizing for
# 5 throughout moved cell at 64x and 512x to other depths and lost 3.7 and 1.7 dB there, while
# it gains in most other cells (RESULTS.md sections 13 and 15).
SHAPE_BITS = 6
# Bytes the steps of quantization-aware training leave free (one word of the ANS stream):
# the weights it ends with code as long as those it started from in most fits, 4-16 bytes
# longer in a few (RESULTS.md section 17), and a file over its budget must give up
# trained roundings.
QAT_SLACK = 4
PLANNING_PASSES = 4  # a plan and its overhead agree after two passes but where they alternate
_STREAM_SLACK = 16  # the ANS stream ends on a 32-bit word; the WGTS length varint may grow


@dataclass
class EncodeReport:
    """What happened during the last `encode`, for progress lines and `tinc info`."""

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


class TincCodec:
    """Compress N-D arrays with a tree of sine networks. `TincCodec(ratio=64, levels=2)`."""

    codec_id = "tinc"

    def __init__(self, ratio: float | None = None, **options):
        """`ratio` defaults to 64, or with a `max_error` alone to a search for the smallest file."""
        self.config = TincConfig.from_options(ratio=ratio, **options)
        self.report = EncodeReport()

    def get_config(self) -> dict:
        values = {k: _jsonable(v) for k, v in dataclasses.asdict(self.config).items()}
        return {"id": self.codec_id, **values}

    @classmethod
    def from_config(cls, config: dict) -> "TincCodec":
        options = dict(config)
        options.pop("id", None)
        return cls(**options)

    def __repr__(self) -> str:
        return f"TincCodec(ratio={self.config.ratio})"

    # ------------------------------------------------------------------ encode
    def encode(self, array, metadata: dict | None = None) -> bytes:
        config = self.config
        original = check_array(array)
        if config.target_psnr is not None:
            from .target import compress_to_psnr

            data, codec, search = compress_to_psnr(original, config, metadata, lambda message: _say(config, message))
            self.report = codec.report
            self.report.target_search = search
            return data
        if config.ratio is None:
            from .target import smallest_file

            data, codec = smallest_file(original, config, metadata, lambda message: _say(config, message))
            self.report = codec.report
            return data
        spatial, values = channels_last(original, config.channel_axis)
        low, high = float(np.min(values)), float(np.max(values))
        normalised = normalise(values, low, high, config.value_range)
        channels = normalised.shape[-1]
        budget = int(original.size * original.dtype.itemsize // config.ratio)
        report = EncodeReport()

        @functools.cache  # the planning passes and the fit cut the data by the same layout
        def layout_data(layout: TreeLayout):
            return layout.to_blocks(normalised), layout.valid_mask()

        def overhead_of(plan: TreePlan) -> int:
            """Bytes of the file that are not weights: container, header, tensor headers, stream slack."""
            header = make_header(original, plan, config.channel_axis, config.value_range, config.w0, low, high)
            n_tensors = 2 * (sum(plan.layers) + 1)
            return len(container.pack(header, b"", metadata)) + 1 + n_tensors * coding.TENSOR_HEADER_BYTES + _STREAM_SLACK

        # The overhead depends on the plan, and the plan on the bytes left for weights: plan from
        # the overhead of the smallest plan (one network, min_width wide), then again with each
        # plan's real overhead until it no longer changes. Near a choice of layers the passes can
        # alternate (4 layers need more tensor headers than the 2 they fall back to): the plan
        # kept is the last one whose overhead the bytes it was planned with cover.
        smallest = TreePlan(TreeLayout(spatial, ()), min((layers for layers, _ in config.layer_choices(0)), key=sum),
                            (np.array([config.min_width]),), channels)
        overhead, chosen = overhead_of(smallest), None
        for _ in range(PLANNING_PASSES):
            params = max(budget - overhead, 0) * 8 / config.weight_bits
            shape_params = max(budget - overhead, 0) * 8 / max(config.weight_bits, SHAPE_BITS)
            if params <= 0:
                hint = "use a lower --ratio" if original.nbytes > overhead else f"the array ({original.nbytes} bytes) is too small to compress"
                raise TincConfigError(f"ratio {config.ratio:g} leaves {budget} bytes for this array; {hint}")
            plan, note = plan_tree(spatial, params, config, channels, layout_data, shape_params)
            planned_with, overhead = overhead, overhead_of(plan)
            if overhead <= planned_with:
                chosen = plan, note
            if overhead == planned_with:
                break
        plan, note = chosen or (plan, note)
        header = make_header(original, plan, config.channel_axis, config.value_range, config.w0, low, high)
        report.plan = plan
        if config.level_weights == "auto" and plan.depth > 0:
            report.level_energy = tuple(float(e) for e in level_energy(plan.layout, *layout_data(plan.layout)))
        if note:
            report.notes.append(note)
            _say(config, note)
        # the WGTS length varint grows with the payload: reserve its largest size
        weight_budget = budget - len(container.pack(header, b"", metadata)) - len(container.varint(budget)) + 1

        device = torch_device(config.device)
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        model = TreeINR(plan, w0=config.w0, generator=generator).to(device)
        blocks = torch.as_tensor(layout_data(plan.layout)[0], device=device)
        weights = torch.as_tensor(loss_weights(values, plan.layout, config), device=device)
        coords = torch.as_tensor(plan.layout.block_coordinates(), device=device)

        from .training import fit

        runs = model.bias_runs()

        def quantization(model: TreeINR) -> list[float]:
            """The steps the weights would be coded with now, to the budget: QAT trains through them."""
            tensors, scales = stored_tensors(model, canonical=True), step_scales(model, weights, coords, config)
            try:
                _, log2_quality = coding.encode_to_budget(tensors, weight_budget - QAT_SLACK, scales, runs)
            except TincConfigError:  # a budget too small to leave slack in
                _, log2_quality = coding.encode_to_budget(tensors, weight_budget, scales, runs)
            report.log2_quality = log2_quality
            return [coding.step_of(code) for code in coding.step_codes(tensors, log2_quality, scales)]

        quantize = quantization if config.weight_bits != 32 else None  # also sets the spread penalty's weight
        progress = _progress_bar(config)
        try:
            fit_report = fit(model, blocks, weights, coords, config, progress=progress and progress.update_fit, quantization=quantize)
        finally:
            if progress:
                progress.close()
        report.steps, report.fit_seconds, report.stopped_by_time = fit_report.steps, fit_report.seconds, fit_report.stopped_by_time
        report.resumed_from = fit_report.resumed_from
        report.start_losses, report.start = fit_report.start_losses, fit_report.start
        if fit_report.restarts:
            note = (f"the fit stayed at the blocks' mean values and started again {fit_report.restarts} time(s), "
                    "with half the learning rate each time")
            report.notes.append(note)
            _say(config, note)
        if fit_report.recoveries:
            note = (f"the fit diverged {fit_report.recoveries} time(s) and went back to its last healthy state "
                    "with half the learning rate each time")
            report.notes.append(note)
            _say(config, note)
        if fit_report.loss == fit_report.loss and fit_report.loss > 0:
            report.fit_psnr = fit_psnr(fit_report.loss, config)

        model.canonicalise()  # the same function, in the form whose biases code as sorted runs
        latent = stored_tensors(model)
        if model.quantization_steps is not None:
            model.round_to_steps()  # store the weights the forward pass trained with
        tensors = stored_tensors(model)
        coded = None
        if config.weight_bits == 32:
            coded = coding.encode(tensors, None)
            if len(coded) > weight_budget:
                raise TincConfigError(f"float32 weights need {len(coded)} bytes, the budget leaves {weight_budget}; use a lower --ratio")
        elif model.quantization_steps is not None:
            # the steps trained through; weights that came to code a little over the budget give
            # up the roundings that cost least (None: so many that rounding afresh costs less)
            codes = [round(256 * math.log2(step)) for step in model.quantization_steps]
            coded = coding.encode_with_steps(tensors, codes, runs)
            if len(coded) > weight_budget:
                sensitivities = tensor_sensitivities(model, weights, coords, config)
                coded = coding.encode_within_budget(tensors, latent, codes, weight_budget, sensitivities, runs=runs)
        if coded is None:
            coded, report.log2_quality = coding.encode_to_budget(tensors, weight_budget, step_scales(model, weights, coords, config), runs)
        data = container.pack(header, coded, metadata)
        report.network_bytes = len(data)
        bound = correction_bound(config, low, high)
        if bound is not None:
            data, report.max_error = with_correction(data, original, bound)
            report.bound = bound
        report.nbytes = len(data)
        self.report = report
        return data

    # ------------------------------------------------------------------ decode
    def decode(self, data, out=None, max_voxels: int = MAX_DECODE_VOXELS) -> np.ndarray:
        """The array; a file declaring more than `max_voxels` elements is refused unread (a
        chunk codec passes the chunk's size, so a forged chunk cannot claim a huge array)."""
        array, _ = self.decode_with_metadata(data, max_voxels)
        if out is not None:
            out[...] = array
            return out
        return array

    def decode_with_metadata(self, data, max_voxels: int = MAX_DECODE_VOXELS) -> tuple[np.ndarray, dict]:
        from .decode import Decoder  # builds on this module, hence imported here

        decoder = Decoder(data, device=self.config.device, max_voxels=max_voxels)
        return decoder.decode(), decoder.metadata


# ---------------------------------------------------------------------- helpers
def with_correction(data: bytes, original: np.ndarray, bound: float) -> tuple[bytes, float]:
    """The file `data` (network only) with a CORR section that brings every value within
    `bound` of `original`, and the largest error of its decode.

    The residual is taken against the decoder's own prediction (`Decoder.network_values`,
    the path every decode runs), and the finished file is decoded again and checked value
    by value before it is returned: a file that would break its bound is never written."""
    from . import correction, metrics
    from .decode import Decoder  # builds on this module, hence imported here

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
    payload = correction.encode(q, bound, half, measured)
    final = container.pack(header, coded, metadata, payload)
    decoded = Decoder(final).decode()
    checked = metrics.max_abs_error(original, decoded)
    if checked > bound:  # the decoder disagrees with the encoder's own arithmetic: never write such a file
        raise TincError(f"internal error: the decode is off by {checked:g}, more than the bound {bound:g}; file not written")
    return final, checked


def correction_bound(config: TincConfig, low: float, high: float) -> float | None:
    """The absolute bound of `max_error` or `max_error_rel` (of the data's range), or None."""
    if config.max_error is not None:
        return float(config.max_error)
    if config.max_error_rel is not None:
        return float(config.max_error_rel) * (high - low)
    return None


def stored_tensors(model: TreeINR, canonical: bool = False) -> list[np.ndarray]:
    """The real (unpadded) weights and biases, flat, in the order the coder stores them
    (`canonical`: those of the model's canonical form)."""
    return [values[mask] for _, values, mask in model.tensors(canonical)]


def tensor_sensitivities(model: TreeINR, weights: torch.Tensor, coords: torch.Tensor, config: TincConfig) -> np.ndarray:
    """Per stored tensor, the loss's mean curvature along one of its weights, on a batch's samples."""
    from .training import weight_sensitivities

    return weight_sensitivities(model, weights, coords, config.batch // model.plan.layout.leaves + 1, config.seed)


def step_scales(model: TreeINR, weights: torch.Tensor, coords: torch.Tensor, config: TincConfig) -> np.ndarray:
    """Per stored tensor, the scale of its quantization step, from the loss's curvature."""
    return coding.sensitivity_scales(stored_tensors(model), tensor_sensitivities(model, weights, coords, config))


def loss_weights(data: np.ndarray, layout: TreeLayout, config: TincConfig) -> np.ndarray:
    """[leaves, block_voxels] float32: 0 on padding, the user's intensity weights elsewhere."""
    weight = np.ones(data.shape[:-1] + (1,), dtype=np.float32)
    if config.loss_weight:
        intensity = data.mean(axis=-1, keepdims=True)
        for low, high, value in config.loss_weight:
            weight[(intensity >= low) & (intensity <= high)] = value
    return layout.to_blocks(weight, fill=0.0)[..., 0]


def fit_psnr(loss: float, config: TincConfig) -> float:
    """PSNR over the data's range from a training MSE, which is measured in `value_range` units."""
    peak = config.value_range[1] - config.value_range[0]
    return 10 * math.log10(peak * peak / loss)


def _say(config: TincConfig, message: str) -> None:
    if not config.quiet:
        print(f"tinc: note: {message}", file=sys.stderr)


class _Progress:
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


def _progress_bar(config: TincConfig) -> _Progress | None:
    return None if config.quiet else _Progress(config)


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value
