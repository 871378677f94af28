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
import re
import sys
from dataclasses import dataclass, field

import numpy as np
import torch

from . import coding, container
from .allocation import TreePlan, level_energy, plan_tree
from .config import TincConfig
from .errors import TincConfigError, TincError, TincFormatError, TincInputError
from .model import TreeINR
from .partition import TreeLayout

SUPPORTED_KINDS = "uif"  # unsigned, signed integers and floats; bool, complex, object are not data
MAX_SPATIAL_DIMS = 4
MAX_DECODE_VOXELS = 1 << 32  # 16 GiB of float32; larger outputs need streaming decode
MAX_WIDTH = 4096
MAX_LAYERS = 16
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
        spatial, channels_last = _channels_last(original, config.channel_axis)
        low, high = float(np.min(channels_last)), float(np.max(channels_last))
        normalised = normalise(channels_last, low, high, config.value_range)
        channels = normalised.shape[-1]
        budget = int(original.size * original.dtype.itemsize // config.ratio)
        report = EncodeReport()

        @functools.cache  # the planning passes and the fit cut the data by the same layout
        def layout_data(layout: TreeLayout):
            return layout.to_blocks(normalised), layout.valid_mask()

        def overhead_of(plan: TreePlan) -> int:
            """Bytes of the file that are not weights: container, header, tensor headers, stream slack."""
            header = make_header(original, plan, config, low, high)
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
        header = make_header(original, plan, config, low, high)
        report.plan = plan
        if config.level_weights == "auto" and plan.depth > 0:
            report.level_energy = tuple(float(e) for e in level_energy(plan.layout, *layout_data(plan.layout)))
        if note:
            report.notes.append(note)
            _say(config, note)
        # the WGTS length varint grows with the payload: reserve its largest size
        weight_budget = budget - len(container.pack(header, b"", metadata)) - len(container.varint(budget)) + 1

        device = _device(config.device)
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        model = TreeINR(plan, w0=config.w0, generator=generator).to(device)
        blocks = torch.as_tensor(layout_data(plan.layout)[0], device=device)
        weights = torch.as_tensor(loss_weights(channels_last, plan.layout, config), device=device)
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
    _, channels_last = _channels_last(original, header.get("channel_axis"))
    low, high = header["range"]
    half = correction.half_step(bound, original.dtype, low, high)
    network = Decoder(data).network_values()
    residual = channels_last.astype(np.float64) - prediction(network, header)
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


def load_model(parsed: container.Container, device: torch.device, max_voxels: int = MAX_DECODE_VOXELS) -> tuple[TreePlan, TreeINR]:
    """The tree described by an unpacked file, with its decoded weights, on `device`."""
    header = parsed.header
    plan = plan_from_header(header, max_voxels)
    check_model_size(plan, len(parsed.weights))
    model = TreeINR(plan, w0=header["w0"])
    tensors = model.tensors()
    values = coding.decode(parsed.weights, [int(mask.sum()) for _, _, mask in tensors], model.bias_runs())
    if not all(np.isfinite(v).all() for v in values):
        raise TincFormatError("the .tinc weights are not finite numbers: the file is corrupted")
    padded = []
    for (_, template, mask), flat in zip(tensors, values):
        full = np.zeros(template.shape, dtype=np.float32)
        full[mask] = flat
        padded.append(full)
    model.load_tensors(padded)
    return plan, model.to(device)


def check_array(array) -> np.ndarray:
    """The input as an ndarray, or a TincInputError naming what is wrong with it."""
    if isinstance(array, np.ma.MaskedArray) and np.ma.getmask(array).any():
        raise TincInputError("masked arrays are not supported: fill the masked values first (array.filled(value))")
    try:
        array = np.asarray(array)
    except Exception as error:
        raise TincInputError(f"input is not an array ({error})") from None
    if array.dtype.kind not in SUPPORTED_KINDS:
        raise TincInputError(f"unsupported dtype {array.dtype}: use integer or floating point data")
    if array.dtype.itemsize > 8:
        raise TincInputError(f"unsupported dtype {array.dtype}")
    if array.size == 0:
        raise TincInputError(f"input is empty (shape {array.shape})")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            raise TincInputError(f"input contains {int(np.isnan(array).sum())} NaN and {int(np.isinf(array).sum())} infinite values")
    return array


def _channels_last(array: np.ndarray, channel_axis: int | None) -> tuple[tuple[int, ...], np.ndarray]:
    if channel_axis is None:
        data = array[..., None]
    else:
        if not -array.ndim <= channel_axis < array.ndim:
            raise TincConfigError(f"channel_axis {channel_axis} is out of range for a {array.ndim}-D array")
        data = np.moveaxis(array, channel_axis, -1)
    spatial = data.shape[:-1]
    if not 1 <= len(spatial) <= MAX_SPATIAL_DIMS:
        raise TincInputError(f"{len(spatial)}-D data is not supported: tinc handles 1 to {MAX_SPATIAL_DIMS} spatial dimensions")
    return tuple(int(s) for s in spatial), data


def normalise(data: np.ndarray, low: float, high: float, value_range: tuple[float, float]) -> np.ndarray:
    a, b = value_range
    scale = (b - a) / (high - low) if high > low else 0.0
    return ((data.astype(np.float64) - low) * scale + a).astype(np.float32)


def prediction(normalised: np.ndarray, header: dict) -> np.ndarray:
    """The networks' output in the data's units (float64), before clipping and rounding:
    what a correction (`tinc.correction`) is added to. Basic IEEE-754 float64 operations
    only, so the same float32 input gives the same values on any machine."""
    a, b = header["value_range"]
    low, high = header["range"]
    return (normalised.astype(np.float64) - a) * ((high - low) / (b - a)) + low


def restore(normalised: np.ndarray, header: dict, correction: np.ndarray | float | None = None) -> np.ndarray:
    """Undo the normalisation, add the `correction` (data units, channels last, as
    `normalised`), clip to the original range and cast to the original dtype."""
    low, high = header["range"]
    values = prediction(normalised, header)
    if correction is not None:
        values = values + correction
    values = np.clip(values, low, high)
    if np.isnan(values).any():  # only a forged file's weights can make the networks give NaN
        raise TincFormatError("the .tinc file decodes to NaN: the file is corrupted")
    dtype = np.dtype(header["dtype"])
    if dtype.kind in "ui":
        # float64 rounds the largest int64 / uint64 up past the type's end, where a cast wraps
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, np.nextafter(float(info.max), 0) if int(float(info.max)) > info.max else info.max)
    channel_axis = header.get("channel_axis")
    if channel_axis is None:
        values = values[..., 0]
    else:
        values = np.moveaxis(values, -1, channel_axis)
    return values.astype(dtype)


def loss_weights(data: np.ndarray, layout: TreeLayout, config: TincConfig) -> np.ndarray:
    """[leaves, block_voxels] float32: 0 on padding, the user's intensity weights elsewhere."""
    weight = np.ones(data.shape[:-1] + (1,), dtype=np.float32)
    if config.loss_weight:
        intensity = data.mean(axis=-1, keepdims=True)
        for low, high, value in config.loss_weight:
            weight[(intensity >= low) & (intensity <= high)] = value
    return layout.to_blocks(weight, fill=0.0)[..., 0]


def make_header(original: np.ndarray, plan: TreePlan, config: TincConfig, low: float, high: float) -> dict:
    return {
        "shape": list(original.shape),
        "dtype": original.dtype.str,
        "channel_axis": config.channel_axis,
        "range": [low, high],
        "value_range": list(config.value_range),
        "w0": config.w0,
        "splits": [list(s) for s in plan.layout.splits],
        "layers": list(plan.layers),
        "widths": [int(w[0]) if np.all(w == w[0]) else [int(x) for x in w] for w in plan.widths],
    }


def plan_from_header(header: dict, max_voxels: int = MAX_DECODE_VOXELS) -> TreePlan:
    """Rebuild the tree from a decoded header, checking every field before allocating.

    An output of more than `max_voxels` elements is refused before anything is allocated;
    a caller that expects bigger arrays opts in with a higher `max_voxels`."""
    try:
        shape = [int(s) for s in header["shape"]]
        # numpy parses far more than dtype strings (subarrays, records) and raises whatever it
        # likes on the rest: only what the encoder writes, e.g. "<u2", "|u1", ">f4", reaches it
        if not re.fullmatch(r"[<>|=][uif][1248]", header["dtype"]):
            raise ValueError(f"dtype {header['dtype']!r}")
        dtype = np.dtype(header["dtype"])
        channel_axis = header.get("channel_axis")
        splits = tuple(tuple(int(x) for x in s) for s in header["splits"])
        layers = tuple(int(n) for n in header["layers"])
        width_spec = header["widths"]
        low, high = (float(v) for v in header["range"])
        a, b = (float(v) for v in header["value_range"])
        w0 = float(header["w0"])
        version = int(header.get("format_version", container.FORMAT_VERSION))
    except (KeyError, TypeError, ValueError) as error:
        raise TincFormatError(f"invalid .tinc header ({error})") from None
    if dtype.kind not in SUPPORTED_KINDS or dtype.itemsize > 8:
        raise TincFormatError(f"invalid .tinc header (dtype {dtype})")
    if not shape or any(s < 1 for s in shape) or len(shape) > MAX_SPATIAL_DIMS + 1:
        raise TincFormatError(f"invalid .tinc header (shape {shape})")
    if channel_axis is not None and (not isinstance(channel_axis, int) or not -len(shape) <= channel_axis < len(shape)):
        raise TincFormatError(f"invalid .tinc header (channel axis {channel_axis})")
    voxels = math.prod(shape)
    if voxels > max_voxels:
        raise TincFormatError(f"the .tinc header declares {voxels} elements, more than the {max_voxels} allowed "
                              "(pass max_voxels= or --max-voxels to decode more)")
    if channel_axis is None:
        spatial, channels = tuple(shape), 1
    else:
        spatial = tuple(s for i, s in enumerate(shape) if i != channel_axis % len(shape))
        channels = shape[channel_axis]
    if not all(np.isfinite([low, high, a, b, w0, high - low, b - a])) or low > high or a >= b:
        raise TincFormatError("invalid .tinc header (value ranges)")
    limits = np.iinfo(dtype) if dtype.kind in "ui" else np.finfo(dtype)
    # the range is the data's minimum and maximum: values of the dtype, as the restored values must be
    exact = (lambda v: v.is_integer()) if dtype.kind in "ui" else (lambda v: float(dtype.type(v)) == v)
    if low < float(limits.min) or high > float(limits.max) or not (exact(low) and exact(high)):
        raise TincFormatError(f"invalid .tinc header (range {low:g}..{high:g} does not fit {dtype})")
    if any(len(s) != len(spatial) or any(x not in (1, 2) for x in s) for s in splits) or len(splits) > 12:
        raise TincFormatError("invalid .tinc header (tree splits)")
    layout = TreeLayout(spatial, splits)
    if layout.leaves > 1 << 20 or any(g > s for g, s in zip(layout.grid, spatial)):
        raise TincFormatError("invalid .tinc header (tree larger than the array)")
    if len(layers) != layout.depth + 1 or any(not 1 <= n <= MAX_LAYERS for n in layers):
        raise TincFormatError("invalid .tinc header (layers)")
    if not isinstance(width_spec, list) or len(width_spec) != layout.depth + 1:
        raise TincFormatError("invalid .tinc header (widths)")
    widths = []
    for count, spec in zip(layout.nodes_per_level, width_spec):
        values = [spec] * count if isinstance(spec, int) else spec
        if len(values) != count or any(not isinstance(w, int) or not 1 <= w <= MAX_WIDTH for w in values):
            raise TincFormatError("invalid .tinc header (widths)")
        widths.append(np.asarray(values, dtype=np.int64))
    return TreePlan(layout, layers, tuple(widths), channels, singleton_inputs=version < 2)


def check_model_size(plan: TreePlan, weight_bytes: int) -> None:
    """Refuse a tree bigger than any encoder output with `weight_bytes` of weights, before
    its networks are allocated. The encoder sizes a tree at budget x 8 / weight_bits <= 4 x
    budget parameters and fills at least 90% of the budget, or codes each weight in > 1 byte;
    TreeINR stores each level zero-padded to its widest node, which per-node shares clipped
    to 4x the mean keep within a small factor of the real count."""
    real = plan.params
    padded = sum(len(w) * int(w.max()) * (int(w.max()) + plan.layout.ndim + plan.channels + 2) * n
                 for w, n in zip(plan.widths, plan.layers))
    if real > 8 * weight_bytes + (1 << 16) or padded > 64 * weight_bytes + (1 << 20):
        raise TincFormatError(f"the .tinc header declares {real} network parameters, more than {weight_bytes} bytes of weights can hold")


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TincConfigError(f"device {name!r} requested but CUDA is not available here")
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise TincConfigError(f"unknown device {name!r} ({error})") from None


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
