"""The entropy model of the tree's weights: how they become bits, and what that costs the fit.

It owns the quantization steps the coder will round each tensor to, the forward pass's
fake quantization through them (quantization-aware training), the rate terms the fit
minimises beside the distortion, and the calls into the coder (`tinc.coding`) that turn a
fitted network into a weight section of a given budget. The network itself
(`tinc.model.TreeINR`) knows none of this; the fit (`tinc.training`) is handed a
`RateTerms` and calls it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from . import coding
from .config import TincConfig
from .errors import TincConfigError
from .model import TreeINR, count_parameters

# Narrower weights code in fewer bits, and the bits buy finer steps, so the spread penalty
# (`TincConfig.spread_penalty`) is worth about as much as rounding raises the loss. Once
# the starts are done, at this clock, its weight drops to that cost where it is lower: cell
# (rounding nearly doubles its loss) gains 0.15-0.47 dB at 0.1 (RESULTS-ARCHIVE.md section 18),
# while inputs where rounding costs 1-5% have little to gain and a fit to lose.
SPREAD_CHECK = 0.1

# Bytes the steps of quantization-aware training leave free (one word of the ANS stream):
# the weights it ends with code as long as those it started from in most fits, 4-16 bytes
# longer in a few (RESULTS-ARCHIVE.md section 17), and a file over its budget must give up
# trained roundings.
QAT_SLACK = 4


# ------------------------------------------------------------------ fake quantization
def fake_quantize(values: torch.Tensor, step: float) -> torch.Tensor:
    """`values` rounded to multiples of `step` going forward, unrounded going backward (the
    straight-through estimator), so the latent weights keep learning below one step."""
    return values + (rounded(values, step) - values).detach()


def rounded(values: torch.Tensor, step: float) -> torch.Tensor:
    return torch.round(values / step) * step


def quantized_tensors(model: TreeINR, steps: list[float] | None) -> list[torch.Tensor] | None:
    """The stored tensors the forward pass sees under `steps` (None: the model's own)."""
    if steps is None:
        return None
    return [fake_quantize(view, step) for view, step in zip(model.split(model.flat), steps, strict=True)]


@torch.no_grad()
def round_to_steps(model: TreeINR, steps: list[float]) -> None:
    """Set the weights to the rounded values the forward pass uses under `steps`.

    Quantization-aware training leaves many latent weights exactly half a step between
    two values (the gradient pushes each across the boundary from either side); whether
    such a weight then rounds up depends on float precision, and the coder's float64 and
    the forward pass's float32 disagree. Rounding here, with the forward pass's op, makes
    the coded network the trained one (RESULTS-ARCHIVE.md section 12)."""
    for view, step in zip(model.split(model.flat), steps, strict=True):
        view.copy_(rounded(view, step))


# ------------------------------------------------------------------ rate terms of the fit
class RateTerms:
    """What the fit adds to the distortion, and when, for weights the coder will quantize.

    Before the rounded phase the objective weighs the weights' coded size
    (`spread_penalty`); from clock `1 - qat_fraction` on, the forward pass rounds to the
    steps `coder_steps(model)` gives and the weights are pulled toward their rounded values
    as strongly as rounding costs (`rounding_penalty`, `rounding_cost`). Without
    `coder_steps` there are no steps, nor a check of the spread's weight.
    """

    def __init__(self, coder_steps: Callable[[TreeINR], list[float]] | None, spread_penalty: float, qat_fraction: float,
                 qat_damping: float):
        self.coder_steps = coder_steps
        self.qat_fraction, self.qat_damping = qat_fraction, qat_damping
        self.steps: list[float] | None = None
        """Per tensor (weights, biases, layer by layer), the step the coder will round to; once
        set, the forward pass sees rounded weights (quantization-aware training)."""
        self.rounding_pull = 0.0
        """Weight of `rounding_penalty` in the objective, relative to the loss."""
        # the weight of `spread_penalty` before the rounded phase, relative to the loss, and
        # whether it has been set from the rounding cost yet (`SPREAD_CHECK`)
        self.spread_pull, self.spread_checked = spread_penalty, False
        self._step_sizes: tuple[list[float], torch.Tensor, int] | None = None
        self._tensor_index: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def for_config(cls, config: TincConfig, coder_steps: Callable[[TreeINR], list[float]] | None = None) -> "RateTerms":
        # float32 weights are stored as they are: their spread costs no bits
        spread = config.spread_penalty if config.weight_bits != 32 else 0.0
        return cls(coder_steps, spread, config.qat_fraction, config.qat_damping)

    def forward_weights(self, model: TreeINR) -> list[torch.Tensor] | None:
        return quantized_tensors(model, self.steps)

    def advance(self, model: TreeINR, clock: float, rounding_cost: Callable[[list[float]], float]) -> bool:
        """Move the objective along the fit's clock; True when it changed (losses before are not
        comparable). `rounding_cost(steps)` is how much rounding to `steps` raises the fit's loss."""
        if self.coder_steps is None:
            return False
        if self.spread_pull and not self.spread_checked and self.steps is None and clock >= SPREAD_CHECK:
            self.spread_pull = min(self.spread_pull, rounding_cost(self.coder_steps(model)))
            self.spread_checked = True
        if self.qat_fraction > 0 and self.steps is None and clock >= 1 - self.qat_fraction:
            self.steps = self.coder_steps(model)
            self.rounding_pull = self.qat_damping * rounding_cost(self.steps)
            return True
        return False

    def objective(self, loss: torch.Tensor, clock: float, model: TreeINR) -> torch.Tensor:
        if self.steps is None and self.spread_pull:
            return loss + self.spread_pull * loss.detach() * self.spread_penalty(model)
        if self.steps is not None and self.rounding_pull:
            # relative to the loss, so the pull means the same at any fidelity; it grows over
            # the rounded phase from nothing
            ramp = min(1.0, (clock - (1 - self.qat_fraction)) / self.qat_fraction)
            return loss + self.rounding_pull * max(ramp, 0.0) * loss.detach() * self.rounding_penalty(model)
        return loss

    def rounding_penalty(self, model: TreeINR) -> torch.Tensor:
        """Mean squared distance of the real weights from their rounded values under `steps`,
        in steps (0 to 1/4); differentiable.

        Quantization-aware training leaves weights flipping across a rounding boundary, and
        the network the file stores is whichever side each one was on at the last step. A
        pull toward the nearest rounded value settles them, and the rest of the network
        adapts to where they settle (RESULTS-ARCHIVE.md section 13)."""
        if self._step_sizes is None or self._step_sizes[0] != self.steps:
            steps = torch.cat([torch.full((math.prod(shape),), float(step), dtype=model.flat.dtype)
                               for shape, step in zip(model.tensor_shapes, self.steps, strict=True)])
            self._step_sizes = (list(self.steps), steps.to(model.flat.device), count_parameters(model))
        _, steps, real = self._step_sizes
        offsets = model.flat / steps
        # padded entries stay 0, so they add nothing to the sum
        return (offsets - torch.round(offsets)).square().sum() / real

    def spread_penalty(self, model: TreeINR) -> torch.Tensor:
        """Mean over the real weights of the log of their tensor's mean square; differentiable.

        At its step a tensor of `n` weights codes in about `n/2 log2(mean square)` bits plus
        a constant, so this is twice the weights' coded size per weight in nats, up to a
        constant; within a fixed budget, whatever it saves buys finer steps for every tensor."""
        if self._tensor_index is None:
            sizes = torch.as_tensor([math.prod(shape) for shape in model.tensor_shapes])
            tensor_of = torch.repeat_interleave(torch.arange(len(sizes)), sizes).to(model.flat.device)
            real = torch.stack([mask.sum() for index in range(model.n_layers) for mask in model.masks(index)]).to(model.flat.dtype)
            self._tensor_index = (tensor_of, real)
        tensor_of, real = self._tensor_index
        squares = torch.zeros_like(real).index_add_(0, tensor_of, model.flat.square())  # padding is 0
        present = real > 0
        return (real[present] * torch.log(squares[present] / real[present] + 1e-30)).sum() / real.sum()

    def state_dict(self) -> dict:
        """What a checkpoint keeps."""
        return {"quantization_steps": self.steps, "rounding_pull": self.rounding_pull,
                "spread_pull": self.spread_pull, "spread_checked": self.spread_checked}

    def load_state_dict(self, state: dict) -> None:
        self.steps = state.get("quantization_steps")
        self.rounding_pull = float(state.get("rounding_pull", 0.0))
        self.spread_pull = float(state.get("spread_pull", self.spread_pull))
        self.spread_checked = bool(state.get("spread_checked", False))


@torch.no_grad()
def rounding_cost(model: TreeINR, steps: list[float], targets: torch.Tensor, weights: torch.Tensor, coords: torch.Tensor,
                  samples: int, seed: int) -> float:
    """How much rounding the weights to `steps` raises the loss (rounded / unrounded - 1), on
    `samples` random local coordinates.

    Where rounding costs little (3-D inputs at 6 bits: 1-5%) a pull toward the rounded
    values only constrains the fit; where it costs much (cell: the loss nearly doubles) the
    pull gains up to 0.8 dB (RESULTS-ARCHIVE.md section 13), so the pull scales with it."""
    generator = torch.Generator(device=coords.device).manual_seed(seed)
    index = torch.randint(0, coords.shape[0], (min(samples, coords.shape[0]),), device=coords.device, generator=generator)

    def loss(stored) -> float:
        error = model(coords[index], stored) - targets[:, index]
        return float((error.square().mean(dim=-1) * weights[:, index]).double().sum())

    rounded_loss = loss(quantized_tensors(model, steps))
    unrounded = loss(None)
    # a sum's last bits depend on how many threads ran it; rounded, the cost does not, so the
    # same input gives the same file on any machine
    return round(max(rounded_loss / max(unrounded, 1e-30) - 1, 0.0), 4)


# ------------------------------------------------------------------ the coder's view
def stored_tensors(model: TreeINR, canonical: bool = False) -> list[np.ndarray]:
    """The real (unpadded) weights and biases, flat, in the order the coder stores them
    (`canonical`: those of the model's canonical form)."""
    return [values[mask] for _, values, mask in model.tensors(canonical)]


def weight_sensitivities(model: TreeINR, weights: torch.Tensor, coords: torch.Tensor, samples: int, seed: int,
                         steps: list[float] | None = None, probes: int = 8) -> np.ndarray:
    """Per stored tensor (the order of `model.tensors()`), the mean curvature of the weighted
    squared error along one of its weights: the diagonal of the Gauss-Newton matrix,
    sum over voxels of weight x (d output / d parameter)^2, averaged over the real entries.

    Estimated on `samples` random local coordinates with `probes` random-sign projections
    of the output (their squared gradients average to that diagonal), so it costs `probes`
    training steps; the forward pass rounds to `steps` where given.
    """
    generator = torch.Generator(device=coords.device).manual_seed(seed)
    index = torch.randint(0, coords.shape[0], (min(samples, coords.shape[0]),), device=coords.device, generator=generator)
    batch_coords, root_weights = coords[index], weights[:, index].sqrt().unsqueeze(-1)
    total = torch.zeros_like(model.flat)
    for _ in range(probes):
        output = model(batch_coords, quantized_tensors(model, steps))
        signs = torch.randint(0, 2, output.shape, device=output.device, generator=generator, dtype=output.dtype) * 2 - 1
        total += torch.autograd.grad((output * signs * root_weights).sum(), [model.flat])[0].square()
    totals = model.split(total)
    masks = [mask for layer in range(model.n_layers) for mask in model.masks(layer)]
    return np.array([float(total[mask.bool()].mean()) / probes if mask.any() else 0.0 for total, mask in zip(totals, masks)])


class WeightCoder:
    """The coder's side of one encode: steps to a byte budget, from the loss's curvature."""

    def __init__(self, budget: int, weights: torch.Tensor, coords: torch.Tensor, batch: int, seed: int):
        self.budget, self.weights, self.coords, self.batch, self.seed = budget, weights, coords, batch, seed
        self.log2_quality: float | None = None
        """The quality the last budget search landed on."""

    def sensitivities(self, model: TreeINR, steps: list[float] | None = None) -> np.ndarray:
        """Per stored tensor, the loss's mean curvature along one of its weights, on a batch's samples."""
        return weight_sensitivities(model, self.weights, self.coords, self.batch // model.plan.layout.leaves + 1, self.seed, steps)

    def step_scales(self, model: TreeINR, steps: list[float] | None = None) -> np.ndarray:
        """Per stored tensor, the scale of its quantization step, from the loss's curvature."""
        return coding.sensitivity_scales(stored_tensors(model), self.sensitivities(model, steps))

    def coder_steps(self, model: TreeINR) -> list[float]:
        """The steps the weights would be coded with now, to the budget: QAT trains through them."""
        tensors, scales, runs = stored_tensors(model, canonical=True), self.step_scales(model), model.bias_runs()
        try:
            _, log2_quality = coding.encode_to_budget(tensors, self.budget - QAT_SLACK, scales, runs, self.log2_quality)
        except TincConfigError:  # a budget too small to leave slack in
            _, log2_quality = coding.encode_to_budget(tensors, self.budget, scales, runs, self.log2_quality)
        self.log2_quality = log2_quality
        return [coding.step_of(code) for code in coding.step_codes(tensors, log2_quality, scales)]

    def code(self, model: TreeINR, steps: list[float] | None, raw: bool = False) -> bytes:
        """The weight section of the fitted `model` within the budget; `steps`: those it trained
        through (None: rounded afresh); `raw`: float32 weights as they are."""
        runs = model.bias_runs()
        model.canonicalise()  # the same function, in the form whose biases code as sorted runs
        latent = stored_tensors(model)
        if steps is not None:
            round_to_steps(model, steps)  # store the weights the forward pass trained with
        tensors = stored_tensors(model)
        if raw:
            coded = coding.encode(tensors, None)
            if len(coded) > self.budget:
                raise TincConfigError(f"float32 weights need {len(coded)} bytes, the budget leaves {self.budget}; use a lower --ratio")
            return coded
        if steps is not None:
            # the steps trained through; weights that came to code a little over the budget give
            # up the roundings that cost least
            codes = [round(256 * math.log2(step)) for step in steps]
            coded = coding.encode_with_steps(tensors, codes, runs)
            if len(coded) > self.budget:
                coded = coding.encode_within_budget(tensors, latent, codes, self.budget, self.sensitivities(model, steps), runs=runs)
            if coded is not None:  # None: so many roundings to give up that rounding afresh costs less
                return coded
        coded, self.log2_quality = coding.encode_to_budget(tensors, self.budget, self.step_scales(model, steps), runs,
                                                           self.log2_quality)
        return coded
