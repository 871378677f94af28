"""The core fit: sampling, weighted loss, optimiser and schedule; the policies, the starts and
the checkpoints (this package's other modules) plug into it."""

from __future__ import annotations

import itertools
import math
import sys
import time
from dataclasses import dataclass, field

import torch

from ..config import TincConfig
from ..entropy import RateTerms, rounding_cost
from ..model import TreeINR
from .checkpoint import Checkpoint
from .policies import DivergenceGuard
from .starts import Starts, start_steps, try_starts

# Steps over which the learning rate rises linearly to its peak (a tenth of a shorter fit).
# Adam's first steps move every weight by about the rate at once; in a wide or deep tree
# that scrambles the sine layers and the fit sticks at the data's mean for good (brain64 at
# 16x as a depth-2 tree: 21.9 dB range PSNR; RESULTS-ARCHIVE.md section 14). 500, not 100,
# since fits start at the data's mean: a start far from it had large first gradients whose
# memory in Adam's second moments held the step size down for about a thousand steps, and
# without them a wide tree climbed away from its best at its peak rate. With the collapse
# rule at 2.5x (`policies.RecoverFromDivergence`), example4d at 64x in 60 s gives 65.71 dB
# (seeds 0-1), against 63.99 over 100 steps (RESULTS.md, "Where a fit starts").
WARMUP_STEPS = 500

# A fit restarts from the leaves' means (`RestartWhenStuck`) only in trees of at least this
# depth. A restart halves the rate, which is what sticks a deep tree (example4d at 4x, depth
# 3: 49 dB stuck, 76 restarted; RESULTS-ARCHIVE.md section 14). A single network at its
# rate leaves the means on its own: what holds a small one there for 500-2000 steps is the
# spread pull (anatomical.nii at 230x leaves them within 200 steps without it), and
# restarting it at half the rate cost it 0.5-1.1 dB on average (section 25).
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
    """Times the fit diverged and went back to its last healthy state (`RecoverFromDivergence`)."""
    restarts: int = 0
    """Times the fit never left the leaves' means and started again (`RestartWhenStuck`)."""
    start_losses: list[float] = field(default_factory=list)
    """Per initial weights tried, its mean loss over its last trial steps (empty: one start)."""
    start: int = 0
    """The start the fit continued."""


def batch_samples(leaves: int, voxels: int, batch: int) -> int:
    """Local coordinates one step draws (the same in every leaf block)."""
    return min(voxels, max(1, batch // leaves))


class _Fit:
    """One fit's data, schedule and step."""

    def __init__(self, model: TreeINR, targets: torch.Tensor, weights: torch.Tensor, coords: torch.Tensor, config: TincConfig,
                 rate: RateTerms):
        self.model, self.targets, self.weights, self.coords, self.config, self.rate = model, targets, weights, coords, config, rate
        leaves, self.voxels, _ = targets.shape
        self.samples = batch_samples(leaves, self.voxels, config.batch)
        self.full_batch = self.samples == self.voxels
        self.weight_total = weights.sum() if self.full_batch else None
        self.optimiser_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.Adamax
        self.peak_rate = config.learning_rate(model.plan.depth, self.samples / self.voxels)
        self.generator = torch.Generator(device=coords.device).manual_seed(config.seed)
        self.baseline = leaf_mean_loss(targets, weights)
        self.planned = config.step_count()  # None: the time limit alone ends the fit
        self.warmup = max(1, min(WARMUP_STEPS, self.planned // 10)) if self.planned else WARMUP_STEPS
        self.calls = 0  # steps taken by every start, for a time-limited fit's pace
        self.restarts_help = model.plan.depth >= RESTART_MIN_DEPTH
        self.start = time.perf_counter()

    def optimiser(self) -> torch.optim.Optimizer:
        return self.optimiser_class(self.model.parameters(), lr=self.peak_rate)

    def fresh_run(self) -> tuple[torch.optim.Optimizer, DivergenceGuard]:
        optimiser = self.optimiser()
        return optimiser, DivergenceGuard(self.model, optimiser, self.baseline)

    def clock(self, step: int) -> float | None:
        """The fit's progress, 0 to 1: the larger of the step and the time fraction; None once time is up."""
        elapsed = time.perf_counter() - self.start
        clock = step / self.planned if self.planned else 0.0
        if self.config.time_limit:
            clock = max(clock, elapsed / self.config.time_limit)
            if elapsed >= self.config.time_limit:
                return None
        return clock

    def warmup_steps(self, clock: float) -> int:
        """`self.warmup`, or a tenth of the steps a time-limited fit's pace so far promises where
        that is fewer: a large volume's few hundred steps are not all spent warming up."""
        if not self.config.time_limit or clock <= 0:
            return self.warmup
        return max(1, min(self.warmup, int(self.calls / clock) // 10))

    def batch(self):
        if self.full_batch:
            return self.coords, self.targets, self.weights, self.weight_total
        index = torch.randint(0, self.voxels, (self.samples,), device=self.coords.device, generator=self.generator)
        # index_select rather than indexing: the same values, 2-3x faster on CPU (a step of a
        # small chunk's tree spent 15% of its time here)
        batch_weights = self.weights.index_select(1, index)
        return self.coords.index_select(0, index), self.targets.index_select(1, index), batch_weights, batch_weights.sum()

    def rounding_cost(self, steps: list[float]) -> float:
        return rounding_cost(self.model, steps, self.targets, self.weights, self.coords, 8 * self.samples, self.config.seed)

    def step(self, step: int, optimiser: torch.optim.Optimizer, guard: DivergenceGuard) -> torch.Tensor | None:
        """One step of the fit; None once the time limit has passed."""
        clock = self.clock(step)
        if clock is None:
            return None
        self.calls += 1
        model = self.model
        if self.rate.advance(model, clock, self.rounding_cost):
            guard.new_objective()
        rate = self.peak_rate * guard.rate_scale * 0.5 * (1 + math.cos(math.pi * min(clock, 1.0))) * guard.warmup(step, self.warmup_steps(clock))
        for group in optimiser.param_groups:
            group["lr"] = rate
        coords, targets, weights, total = self.batch()
        error = model(coords, self.rate.forward_weights(model)) - targets
        loss = (error.square().mean(dim=-1) * weights).sum() / total.clamp_min(1e-12)
        objective = self.rate.objective(loss, clock, model)
        optimiser.zero_grad(set_to_none=True)
        objective.backward()
        optimiser.step()
        guard.update(loss, step, can_restart=self.restarts_help and clock < 0.5)
        return loss


def fit(model: TreeINR, targets: torch.Tensor, weights: torch.Tensor, coords: torch.Tensor, config: TincConfig,
        progress=None, rate: RateTerms | None = None) -> FitReport:
    """Minimise the weighted MSE of `model(coords)` against `targets` [leaves, voxels, C], plus `rate`'s terms.

    Every step draws the same local coordinates in every leaf block, so one step trains all
    leaves at once. The learning rate rises over `WARMUP_STEPS`, then follows a cosine whose
    clock is the larger of the step fraction and the time fraction, so a run cut short by
    `time_limit` still ends with a decayed rate. `rate` (`tinc.entropy.RateTerms`; default:
    the configuration's, with no coder steps) adds the weights' rate and the rounded phase.
    With `config.checkpoint` the fit is saved every `config.checkpoint_every` seconds and at
    its end, and resumed from that file if present.
    """
    rate = rate if rate is not None else RateTerms.for_config(config)
    run = _Fit(model, targets, weights, coords, config, rate)
    optimiser, checkpoint, done, spent, loss_value = run.optimiser(), None, 0, 0.0, float("nan")
    if config.checkpoint:
        checkpoint = Checkpoint(config.checkpoint, Checkpoint.fingerprint_of(config, targets, weights, coords), config.checkpoint_every)
        done, spent, loss_value = checkpoint.restore(model, optimiser, run.generator, rate)
        if done and not config.quiet:
            print(f"tinc: note: resuming from {config.checkpoint} at step {done}", file=sys.stderr)
    guard = DivergenceGuard(model, optimiser, run.baseline, checkpoint.guard if checkpoint is not None else None)
    run.start, run.calls = time.perf_counter() - spent, done  # a resumed fit keeps its pace (`warmup_steps`)
    resumed_from, step, stopped_by_time, loss = done, done, False, None
    starts = Starts([], 0)
    trial = start_steps(run.planned, config.starts) if done == 0 else 0
    if trial:
        starts = try_starts(model, config.starts, config.seed, config.time_limit, trial, run.step, run.fresh_run, run.generator, progress)
        optimiser, guard, loss, step, stopped_by_time = starts.optimiser, starts.guard, starts.loss, starts.step, starts.stopped_by_time
        done = step
    if not stopped_by_time:
        loss, step, stopped_by_time, loss_value = _train(run, optimiser, guard, done, checkpoint, progress, loss, loss_value)
    if loss is not None and loss_value != loss_value:
        loss_value = float(loss.detach())
    if checkpoint is not None and step > resumed_from:  # a crash while coding or writing resumes with nothing to fit
        checkpoint.save(step, time.perf_counter() - run.start, loss_value, model, optimiser, run.generator, guard, rate, due_only=False)
    return FitReport(step, time.perf_counter() - run.start, loss_value, stopped_by_time, resumed_from=resumed_from,
                     recoveries=guard.recoveries, restarts=guard.restarts, start_losses=starts.losses, start=starts.chosen)


def _train(run: _Fit, optimiser, guard, done: int, checkpoint, progress, loss, loss_value):
    """Steps from `done + 1` to the planned end or the time limit: (last loss, last step, stopped by time, loss shown)."""
    step, planned = done, run.planned
    for step in range(done + 1, planned + 1) if planned is not None else itertools.count(done + 1):
        loss = run.step(step, optimiser, guard)
        if loss is None:
            return None, step - 1, True, loss_value
        if progress is not None and (step % 25 == 0 or step == planned):
            loss_value = loss.item()
            progress(step, loss_value)
        if checkpoint is not None:
            checkpoint.save(step, time.perf_counter() - run.start, loss.detach(), run.model, optimiser, run.generator, guard, run.rate)
    return loss, step, False, loss_value


def data_mean(targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The weighted mean of every block's values per channel, [channels]: where every leaf's
    output starts (`TreeINR`'s `output_mean`)."""
    return torch.einsum("lvc,lv->c", targets, weights) / weights.sum().clamp_min(1e-12)


def leaf_mean_loss(targets: torch.Tensor, weights: torch.Tensor) -> float:
    """The loss of predicting every leaf's weighted mean: where a fit that never trained stays."""
    total = weights.sum(dim=1, keepdim=True).clamp_min(1e-12)
    means = (targets * weights.unsqueeze(-1)).sum(dim=1, keepdim=True) / total.unsqueeze(-1)
    return float(((targets - means).square().mean(dim=-1) * weights).double().sum() / weights.double().sum().clamp_min(1e-12))
