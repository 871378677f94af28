"""Fitting a TreeINR to blocked data: sampling, weighted loss, optimiser and schedule."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import math
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from .config import TincConfig
from .errors import TincConfigError, TincFormatError
from .io import atomic_path, check_writable
from .model import TreeINR

# Options that do not change the fitted weights, so a resumed run may differ in them.
_NOT_FINGERPRINTED = ("quiet", "checkpoint", "checkpoint_every")

# Steps over which the learning rate rises linearly to its peak (a tenth of a shorter fit).
# Adam's first steps move every weight by about the rate at once; in a wide or deep tree
# that scrambles the sine layers and the fit sticks at the data's mean for good (brain64 at
# 16x as a depth-2 tree: 21.9 dB range PSNR; RESULTS.md section 14).
WARMUP_STEPS = 100

# Several initial weights are each trained for `START_STEPS` steps (at most a tenth of the
# fit, and of its time limit, on all starts together), ranked by their mean loss over the
# last `TRIAL_SCORE_STEPS`, and the fit continues the best (`TincConfig.starts`).
START_STEPS, TRIAL_SCORE_STEPS, START_TIME_SHARE = 200, 50, 0.1

# Narrower weights code in fewer bits, and the bits buy finer steps, so the spread penalty
# (`TincConfig.spread_penalty`) is worth about as much as rounding raises the loss. Once
# the starts are done, at this clock, its weight drops to that cost where it is lower: cell
# (rounding nearly doubles its loss) gains 0.15-0.47 dB at 0.1 (RESULTS.md section 18),
# while inputs where rounding costs 1-5% have little to gain and a fit to lose.
SPREAD_CHECK = 0.1

# `DivergenceGuard` starts a fit at the leaves' means again only in trees of at least this
# depth. A restart halves the rate, which is what sticks a deep tree (example4d at 4x, depth
# 3: 49 dB stuck, 76 restarted; RESULTS.md section 14). A single network at its rate leaves
# the means on its own: what holds a small one there for 500-2000 steps is the spread pull
# (anatomical.nii at 230x leaves them within 200 steps without it), and restarting it at
# half the rate cost it 0.5-1.1 dB on average (RESULTS.md section 25).
RESTART_MIN_DEPTH = 1


@dataclass
class FitReport:
    steps: int
    seconds: float
    loss: float
    stopped_by_time: bool
    resumed_from: int = 0
    """Steps restored from a checkpoint (0: a fresh fit)."""
    recoveries: int = 0
    """Times the fit diverged and went back to its last healthy state (see `DivergenceGuard`)."""
    restarts: int = 0
    """Times the fit never left the leaves' means and started again (see `DivergenceGuard`)."""
    start_losses: list[float] = dataclasses.field(default_factory=list)
    """Per initial weights tried, its mean loss over its last trial steps (empty: one start)."""
    start: int = 0
    """The start the fit continued."""


class DivergenceGuard:
    """Undoes a collapse of the fit: restores the last healthy state and halves the rate.

    Sine networks trained on small batches can collapse: the loss jumps back to where it
    started and never comes down again (RESULTS.md, section 11). The mean loss of every
    `WINDOW` steps is compared with the best window so far: a window within `HEALTHY` x
    the best is snapshotted (model and optimiser); one above `DIVERGED` x the best restores
    the snapshot and halves the learning rate for the rest of the fit. Losses are summed on
    the device and read once per window, so the guard costs one sync per `WINDOW` steps.

    A fit can also fail from its start: wide or deep trees at too high a rate never get
    below `baseline`, the loss of each leaf's mean (RESULTS.md section 14). Until a window
    is below `ESCAPED` x `baseline`, every `STUCK_STEPS` steps the guard puts back the
    initial weights, halves the rate and restarts the warm-up, at most `MAX_RESTARTS` times,
    unless the best window of the last `STUCK_STEPS / 2` steps is below `FALLING` x the best
    before them: a fit still coming down from far above the means (data scaled to 0..100,
    a low rate) is slow, not stuck, and half the rate would only make it slower
    (RESULTS.md section 16). Nor does it restart in the second half of the fit, which would
    leave too few steps to train the initial weights again, nor a single network
    (`RESTART_MIN_DEPTH`). A stuck fit sits within 1-2% of `baseline`; a small network at a
    high ratio may level off only 1-3 dB below it (anatomical.nii at 256x), so `ESCAPED` is
    0.8, not the 0.5 that restarted such fits at half the rate (RESULTS.md section 25,
    measured before single networks stopped restarting).

    A rate can also be just too high to hold on to progress: a wide tree (example4d at 64x,
    95 wide) drifts back at its peak rate for thousands of steps, its loss up to twice its
    best, until the cosine brings the rate down (RESULTS.md section 15). When every window
    for `PATIENCE` steps is above `DRIFTED` x the best, the rate is halved.
    """

    WINDOW, HEALTHY, DIVERGED = 25, 1.5, 4.0
    ESCAPED, STUCK_STEPS, MAX_RESTARTS, FALLING = 0.8, 500, 3, 0.97
    DRIFTED, PATIENCE = 1.25, 1000

    def __init__(self, model: TreeINR, optimiser: torch.optim.Optimizer, baseline: float, restored: dict | None = None):
        self.model, self.optimiser, self.baseline = model, optimiser, baseline
        self.rate_scale, self.best, self.recoveries = 1.0, math.inf, 0
        self.near_best_step = 0
        self.total, self.count = None, 0
        self.snapshot = self._state()
        self.restarts, self.restart_step, self.initial = 0, 0, self.snapshot[0]
        self.escaped = not baseline > 0  # constant data: nothing to escape from
        self.progress_step, self.progress_best = 0, math.inf  # the best window when last checked for progress
        if restored:
            self.rate_scale, self.best = restored["rate_scale"], restored["best_loss"]
            self.restarts, self.restart_step = restored["restarts"], restored["restart_step"]
            self.escaped = restored["escaped"]
            self.near_best_step = restored["near_best_step"]
            # a checkpoint of the previous release has no progress check: it starts one afresh
            self.progress_step = restored.get("progress_step", self.restart_step)
            self.progress_best = restored.get("progress_best", math.inf)
            self.initial = restored["initial"] or self.initial

    def saved(self) -> dict:
        """What a checkpoint keeps of the guard (the initial weights only while they may be needed)."""
        return {"rate_scale": self.rate_scale, "best_loss": self.best, "restarts": self.restarts,
                "restart_step": self.restart_step, "escaped": self.escaped,
                "near_best_step": self.near_best_step, "progress_step": self.progress_step,
                "progress_best": self.progress_best, "initial": None if self.escaped else self.initial}

    def _state(self):
        # parameters only: the model's other buffers (the padding masks) never change
        return [p.detach().clone() for p in self.model.parameters()], copy.deepcopy(self.optimiser.state_dict())

    def update(self, loss: torch.Tensor, step: int, can_restart: bool = True) -> None:
        """Account for one step's loss; `can_restart` is False once a restart would come too late."""
        self.total = loss.detach() if self.total is None else self.total + loss.detach()
        self.count += 1
        if self.count < self.WINDOW:
            return
        mean = float(self.total) / self.count
        self.total, self.count = None, 0
        if not self.escaped:
            self.escaped = mean < self.ESCAPED * self.baseline
            best = min(self.best, mean)
            if not self.escaped and step - self.progress_step >= self.STUCK_STEPS // 2:
                falling = best < self.FALLING * self.progress_best
                if (can_restart and step - self.restart_step >= self.STUCK_STEPS and not falling
                        and self.restarts < self.MAX_RESTARTS):
                    self._put_back(self.initial)
                    self.optimiser.state.clear()  # Adam starts afresh
                    self.rate_scale /= 2
                    self.restarts += 1
                    self.restart_step, self.best = step, math.inf
                    self.progress_step, self.progress_best = step, math.inf
                    return
                self.progress_step, self.progress_best = step, best
        if not math.isfinite(mean) or mean > self.DIVERGED * self.best:
            params, optimiser_state = self.snapshot
            self._put_back(params)
            self.optimiser.load_state_dict(copy.deepcopy(optimiser_state))
            self.rate_scale /= 2
            self.recoveries += 1
            self.near_best_step = step
            return
        if mean <= self.DRIFTED * self.best:
            self.near_best_step = step  # the last window near the best
        elif step - self.near_best_step >= self.PATIENCE:
            self.rate_scale /= 2
            self.near_best_step = step
        self.best = min(self.best, mean)
        if mean <= self.HEALTHY * self.best:
            self.snapshot = self._state()

    def _put_back(self, params: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for param, saved in zip(self.model.parameters(), params):
                param.copy_(saved)

    def warmup(self, step: int, steps: int) -> float:
        """The warm-up's factor on the rate at `step`: it rises over `steps` from the (re)start."""
        return min(1.0, (step - self.restart_step) / steps)

    def new_objective(self) -> None:
        """Forget the best loss: rounded weights (quantization-aware training) raise the loss
        for good, and against the unrounded best that would read as a collapse."""
        self.best, self.total, self.count = math.inf, None, 0


class Checkpoint:
    """A fit saved to a file, atomically, so that a killed compression resumes where it stopped.

    The file holds the model and optimiser state, the sampling generator, the step, the
    training seconds spent and the last loss, plus a fingerprint of the data and of every
    option that shapes the fit; a file with another fingerprint is refused, not overwritten.
    Everything a step depends on is restored, so without a time limit (whose clock is wall
    time) a resumed fit ends with the same weights, bit for bit, as an uninterrupted one.
    """

    def __init__(self, path: str, fingerprint: str, every: float):
        check_writable(path)
        self.path, self.fingerprint, self.every = path, fingerprint, every
        self.saved_at = time.perf_counter()
        self.guard: dict | None = None  # the divergence guard's state, as restored

    @staticmethod
    def fingerprint_of(config: TincConfig, *tensors: torch.Tensor) -> str:
        digest = hashlib.sha256()
        options = {k: v for k, v in dataclasses.asdict(config).items() if k not in _NOT_FINGERPRINTED}
        digest.update(repr(sorted(options.items())).encode())
        for tensor in tensors:
            digest.update(repr((tuple(tensor.shape), str(tensor.dtype))).encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def restore(self, model: TreeINR, optimiser: torch.optim.Optimizer, generator: torch.Generator) -> tuple[int, float, float]:
        """(steps done, seconds spent, last loss) from the file; (0, 0, nan) if there is none."""
        if not os.path.exists(self.path):
            return 0, 0.0, float("nan")
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)  # no pickled code runs
            found = state["fingerprint"]
        except Exception as error:
            raise TincFormatError(f"{self.path}: unreadable checkpoint ({type(error).__name__}); delete it to start afresh") from None
        if found != self.fingerprint:
            raise TincConfigError(f"{self.path} is a checkpoint of another input or other options; delete it or pass another --checkpoint")
        try:
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
        except (RuntimeError, ValueError, KeyError):  # same fingerprint, other model layout: an older tinc wrote it
            raise TincFormatError(f"{self.path}: a checkpoint from another version of tinc; delete it to start afresh") from None
        generator.set_state(state["generator"])
        model.quantization_steps = state.get("quantization_steps")
        model.rounding_pull = float(state.get("rounding_pull", 0.0))
        model.spread_pull = float(state.get("spread_pull", model.spread_pull))
        model.spread_checked = bool(state.get("spread_checked", False))
        self.guard = state.get("guard")
        return int(state["step"]), float(state["seconds"]), float(state["loss"])

    def save(self, step: int, seconds: float, loss: float | torch.Tensor, model: TreeINR, optimiser: torch.optim.Optimizer,
             generator: torch.Generator, guard: DivergenceGuard, due_only: bool = True) -> None:
        """Write the state after `step`, if `every` seconds have passed since the last write (or always)."""
        now = time.perf_counter()
        if due_only and now - self.saved_at < self.every:
            return
        state = {"fingerprint": self.fingerprint, "step": step, "seconds": seconds, "loss": float(loss),
                 "model": model.state_dict(), "optimiser": optimiser.state_dict(), "generator": generator.get_state(),
                 "quantization_steps": model.quantization_steps,
                 "rounding_pull": model.rounding_pull, "spread_pull": model.spread_pull,
                 "spread_checked": model.spread_checked, "guard": guard.saved()}
        with atomic_path(self.path) as temporary:  # a kill mid-write keeps the previous checkpoint
            torch.save(state, temporary)
        self.saved_at = time.perf_counter()


def fit(
    model: TreeINR,
    targets: torch.Tensor,
    weights: torch.Tensor,
    coords: torch.Tensor,
    config: TincConfig,
    progress=None,
    quantization=None,
) -> FitReport:
    """Minimise the weighted MSE of `model(coords)` against `targets` [leaves, voxels, C].

    Every step draws the same local coordinates in every leaf block, so one step trains all
    leaves at once. The learning rate rises over `WARMUP_STEPS`, then follows a cosine whose
    clock is the larger of the step fraction and the time fraction, so a run cut short by
    `time_limit` still ends with a decayed rate. `quantization(model) -> steps` gives the
    steps the coder will round each tensor to; from clock `1 - config.qat_fraction` on, the
    model trains through them, pulled toward them as strongly as rounding costs
    (`rounding_cost`, `TreeINR.rounding_penalty`); before that, the objective also weighs the
    weights' coded size (`config.spread_penalty`, `TreeINR.spread_penalty`). With `config.checkpoint` the fit is saved
    every `config.checkpoint_every` seconds and at its end, and resumed from that file if present.
    """
    leaves, voxels, _ = targets.shape
    samples = min(voxels, max(1, config.batch // leaves))
    full_batch = samples == voxels
    optimiser_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.Adamax
    peak_rate = config.learning_rate(model.plan.depth, samples / voxels)
    optimiser = optimiser_class(model.parameters(), lr=peak_rate)
    generator = torch.Generator(device=coords.device).manual_seed(config.seed)
    weight_total = weights.sum() if full_batch else None
    checkpoint = None
    done, spent, loss_value = 0, 0.0, float("nan")
    # float32 weights are stored as they are: their spread costs no bits
    model.spread_pull, model.spread_checked = (config.spread_penalty if config.weight_bits != 32 else 0.0), False
    if config.checkpoint:
        checkpoint = Checkpoint(config.checkpoint, Checkpoint.fingerprint_of(config, targets, weights, coords), config.checkpoint_every)
        done, spent, loss_value = checkpoint.restore(model, optimiser, generator)
        if done and not config.quiet:
            print(f"tinc: note: resuming from {config.checkpoint} at step {done}", file=sys.stderr)
    baseline = leaf_mean_loss(targets, weights)
    guard = DivergenceGuard(model, optimiser, baseline, checkpoint.guard if checkpoint is not None else None)
    start = time.perf_counter() - spent
    planned = config.step_count()  # None: the time limit alone ends the fit
    warmup = max(1, min(WARMUP_STEPS, planned // 10)) if planned else WARMUP_STEPS
    restarts_help = model.plan.depth >= RESTART_MIN_DEPTH

    def round_to_coder_steps() -> float:
        """Rounds the forward pass to the steps the coder would use now; returns what that costs."""
        model.quantization_steps = quantization(model)
        return rounding_cost(model, targets, weights, coords, 8 * samples, config.seed)

    def train_step(step: int, optimiser: torch.optim.Optimizer, guard: DivergenceGuard) -> torch.Tensor | None:
        """One step of the fit; None once the time limit has passed."""
        elapsed = time.perf_counter() - start
        clock = step / planned if planned else 0.0
        if config.time_limit:
            clock = max(clock, elapsed / config.time_limit)
            if elapsed >= config.time_limit:
                return None
        if (model.spread_pull and not model.spread_checked and quantization is not None and model.quantization_steps is None
                and clock >= SPREAD_CHECK):
            model.spread_pull = min(model.spread_pull, round_to_coder_steps())
            model.quantization_steps, model.spread_checked = None, True
        if quantization is not None and config.qat_fraction > 0 and model.quantization_steps is None and clock >= 1 - config.qat_fraction:
            model.rounding_pull = config.qat_damping * round_to_coder_steps()
            guard.new_objective()
        rate = peak_rate * guard.rate_scale * 0.5 * (1 + math.cos(math.pi * min(clock, 1.0))) * guard.warmup(step, warmup)
        for group in optimiser.param_groups:
            group["lr"] = rate
        if full_batch:
            batch_coords, batch_targets, batch_weights, total = coords, targets, weights, weight_total
        else:
            index = torch.randint(0, voxels, (samples,), device=coords.device, generator=generator)
            batch_coords, batch_targets, batch_weights = coords[index], targets[:, index], weights[:, index]
            total = batch_weights.sum()
        error = model(batch_coords) - batch_targets
        loss = (error.square().mean(dim=-1) * batch_weights).sum() / total.clamp_min(1e-12)
        objective = loss
        if model.quantization_steps is None and model.spread_pull:
            objective = loss + model.spread_pull * loss.detach() * model.spread_penalty()
        if model.quantization_steps is not None and model.rounding_pull:
            # relative to the loss, so the pull means the same at any fidelity; it grows over
            # the rounded phase from nothing
            ramp = min(1.0, (clock - (1 - config.qat_fraction)) / config.qat_fraction)
            objective = loss + model.rounding_pull * max(ramp, 0.0) * loss.detach() * model.rounding_penalty()
        optimiser.zero_grad(set_to_none=True)
        objective.backward()
        optimiser.step()
        guard.update(loss, step, can_restart=restarts_help and clock < 0.5)
        return loss

    resumed_from, step, stopped_by_time, loss = done, done, False, None
    starts = Starts([], 0)
    trial = start_steps(planned, config.starts) if done == 0 else 0
    if trial:
        def fresh_start(start_index: int):
            if start_index:  # start 0 trains the model's own initial weights
                with torch.no_grad():
                    model.flat.copy_(initial_weights(model, config.seed, start_index))
            optimiser = optimiser_class(model.parameters(), lr=peak_rate)
            return optimiser, DivergenceGuard(model, optimiser, baseline)

        starts = try_starts(model, config, trial, train_step, fresh_start, generator, progress)
        optimiser, guard, loss, step, stopped_by_time = starts.optimiser, starts.guard, starts.loss, starts.step, starts.stopped_by_time
        done = step
    if not stopped_by_time:
        for step in range(done + 1, planned + 1) if planned is not None else itertools.count(done + 1):
            loss = train_step(step, optimiser, guard)
            if loss is None:
                stopped_by_time = True
                step -= 1
                break
            if progress is not None and (step % 25 == 0 or step == planned):
                loss_value = loss.item()
                progress(step, loss_value)
            if checkpoint is not None:
                checkpoint.save(step, time.perf_counter() - start, loss.detach(), model, optimiser, generator, guard)
    if loss is not None and loss_value != loss_value:
        loss_value = float(loss.detach())
    if checkpoint is not None and step > resumed_from:  # a crash while coding or writing resumes with nothing to fit
        checkpoint.save(step, time.perf_counter() - start, loss_value, model, optimiser, generator, guard, due_only=False)
    return FitReport(step, time.perf_counter() - start, loss_value, stopped_by_time, resumed_from=resumed_from,
                     recoveries=guard.recoveries, restarts=guard.restarts, start_losses=starts.losses, start=starts.chosen)


@dataclass
class Starts:
    """What `try_starts` leaves: every start's trial loss, the one kept, and the state to go on from."""

    losses: list[float]
    chosen: int
    optimiser: torch.optim.Optimizer | None = None
    guard: DivergenceGuard | None = None
    loss: torch.Tensor | None = None
    step: int = 0
    stopped_by_time: bool = False


def try_starts(model: TreeINR, config: TincConfig, trial: int, train_step, fresh_start, generator: torch.Generator,
               progress=None) -> Starts:
    """Train `config.starts` initial weights for `trial` steps each and put the best back in `model`.

    Tiny networks land in very different places from different initial weights (tinc_test
    at 512x: 29.2 to 32.5 dB over 7 seeds), and the loss after a few hundred steps already
    ranks them (RESULTS.md section 15). `fresh_start(i)` loads start i's weights and returns
    a new (optimiser, guard) for them.
    Every start sees the same samples, so the winner goes on as if it had been the only one.
    """
    result, best_flat = Starts([], 0), None
    for start_index in range(config.starts):
        began = time.perf_counter()
        optimiser, guard = fresh_start(start_index)
        generator.manual_seed(config.seed)
        losses, loss = [], None
        for step in range(1, trial + 1):
            loss = train_step(step, optimiser, guard)
            if loss is None:
                break
            if progress is not None and step % 25 == 0:
                progress(step, loss.item(), f"start {start_index + 1} of {config.starts}")
            if step > trial - TRIAL_SCORE_STEPS:
                losses.append(loss.detach())
        if loss is None:  # out of time: the best start so far is the fit (or this one, if it is the first)
            if best_flat is None:
                return Starts(result.losses, 0, optimiser, guard, None, step - 1, True)
            result.stopped_by_time = True
            break
        result.losses.append(float(torch.stack(losses).mean()))
        if best_flat is None or result.losses[-1] < result.losses[result.chosen]:
            result.chosen, best_flat = start_index, model.flat.detach().clone()
            result.optimiser, result.guard, result.loss = optimiser, guard, loss.detach()
        if config.time_limit and (start_index + 2) * (time.perf_counter() - began) > START_TIME_SHARE * config.time_limit:
            break  # slow steps: more starts would take too much of the time limit
    with torch.no_grad():
        model.flat.copy_(best_flat)
    result.step = trial  # the samples drawn next are the same whichever start won
    return result


def start_steps(planned: int | None, starts: int) -> int:
    """Steps each of `starts` initial weights trains before the best is kept (0: just one start)."""
    if starts <= 1:
        return 0
    steps = START_STEPS if planned is None else min(START_STEPS, int(planned * START_TIME_SHARE) // starts)
    return steps if steps >= 2 * TRIAL_SCORE_STEPS else 0


def initial_weights(model: TreeINR, seed: int, start_index: int) -> torch.Tensor:
    """The flat initial weights of start `start_index` (start 0 is the model's own)."""
    generator = torch.Generator().manual_seed(seed + 1_000_003 * start_index)
    return TreeINR(model.plan, model.w0, generator).flat.detach().to(model.flat.device)


def leaf_mean_loss(targets: torch.Tensor, weights: torch.Tensor) -> float:
    """The loss of predicting every leaf's weighted mean: where a fit that never trained stays."""
    total = weights.sum(dim=1, keepdim=True).clamp_min(1e-12)
    means = (targets * weights.unsqueeze(-1)).sum(dim=1, keepdim=True) / total.unsqueeze(-1)
    return float(((targets - means).square().mean(dim=-1) * weights).double().sum() / weights.double().sum().clamp_min(1e-12))


@torch.no_grad()
def rounding_cost(model: TreeINR, targets: torch.Tensor, weights: torch.Tensor, coords: torch.Tensor, samples: int,
                  seed: int) -> float:
    """How much rounding the weights to `model.quantization_steps` raises the loss (rounded /
    unrounded - 1), on `samples` random local coordinates.

    Where rounding costs little (3-D inputs at 6 bits: 1-5%) a pull toward the rounded
    values only constrains the fit; where it costs much (cell: the loss nearly doubles) the
    pull gains up to 0.8 dB (RESULTS.md section 13), so the pull scales with it."""
    generator = torch.Generator(device=coords.device).manual_seed(seed)
    index = torch.randint(0, coords.shape[0], (min(samples, coords.shape[0]),), device=coords.device, generator=generator)

    def loss() -> float:
        error = model(coords[index]) - targets[:, index]
        return float((error.square().mean(dim=-1) * weights[:, index]).double().sum())

    steps, rounded = model.quantization_steps, loss()
    model.quantization_steps = None
    unrounded = loss()
    model.quantization_steps = steps
    # a sum's last bits depend on how many threads ran it; rounded, the cost does not, so the
    # same input gives the same file on any machine
    return round(max(rounded / max(unrounded, 1e-30) - 1, 0.0), 4)


def weight_sensitivities(model: TreeINR, weights: torch.Tensor, coords: torch.Tensor, samples: int, seed: int,
                         probes: int = 8) -> np.ndarray:
    """Per stored tensor (the order of `model.tensors()`), the mean curvature of the weighted
    squared error along one of its weights: the diagonal of the Gauss-Newton matrix,
    sum over voxels of weight x (d output / d parameter)^2, averaged over the real entries.

    Estimated on `samples` random local coordinates with `probes` random-sign projections
    of the output (their squared gradients average to that diagonal), so it costs `probes`
    training steps.
    """
    generator = torch.Generator(device=coords.device).manual_seed(seed)
    index = torch.randint(0, coords.shape[0], (min(samples, coords.shape[0]),), device=coords.device, generator=generator)
    batch_coords, root_weights = coords[index], weights[:, index].sqrt().unsqueeze(-1)
    total = torch.zeros_like(model.flat)
    for _ in range(probes):
        output = model(batch_coords)
        signs = torch.randint(0, 2, output.shape, device=output.device, generator=generator, dtype=output.dtype) * 2 - 1
        total += torch.autograd.grad((output * signs * root_weights).sum(), [model.flat])[0].square()
    totals = model.split(total)
    masks = [mask for layer in range(model.n_layers) for mask in model.masks(layer)]
    return np.array([float(total[mask.bool()].mean()) / probes if mask.any() else 0.0 for total, mask in zip(totals, masks)])
