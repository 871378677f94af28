"""Policies that watch a fit's loss and step in when it goes wrong.

The loss is read as the mean of every `WINDOW` steps (summed on the device, read once per
window, so watching costs one sync per window). Each policy keeps its own state, which a
checkpoint saves and restores (`state_dict`); `DivergenceGuard` runs them in order on
every window: a restart or a recovery ends that window's handling.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from ..model import TreeINR

WINDOW = 25


@dataclass
class Watch:
    """What the policies share: the best window so far and the factor on the learning rate."""

    best: float = math.inf
    rate_scale: float = 1.0


def _put_back(model: TreeINR, params: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for param, saved in zip(model.parameters(), params):
            param.copy_(saved)


def _parameters(model: TreeINR) -> list[torch.Tensor]:
    # parameters only: the model's other buffers (the padding masks) never change
    return [p.detach().clone() for p in model.parameters()]


class RestartWhenStuck:
    """Starts a fit that never left the leaves' means again, at half the rate.

    Wide or deep trees at too high a rate never get below `baseline`, the loss of each
    leaf's mean (RESULTS-ARCHIVE.md section 14). Until a window is below `ESCAPED` x
    `baseline`, every `STUCK_STEPS` steps the initial weights are put back, the rate halved
    and the warm-up restarted, at most `MAX_RESTARTS` times, unless the best window of the
    last `STUCK_STEPS / 2` steps is below `FALLING` x the best before them: a fit still
    coming down from far above the means (data scaled to 0..100, a low rate) is slow, not
    stuck, and half the rate would only make it slower (section 16). The caller says when a
    restart would come too late (`can_restart`). A stuck fit sits within 1-2% of
    `baseline`; a small network at a high ratio may level off only 1-3 dB below it
    (anatomical.nii at 256x), so `ESCAPED` is 0.8, not the 0.5 that restarted such fits at
    half the rate (section 25, measured before single networks stopped restarting).
    """

    ESCAPED, STUCK_STEPS, MAX_RESTARTS, FALLING = 0.8, 500, 3, 0.97

    def __init__(self, model: TreeINR, optimiser: torch.optim.Optimizer, baseline: float, initial: list[torch.Tensor]):
        self.model, self.optimiser, self.baseline, self.initial = model, optimiser, baseline, initial
        self.restarts, self.restart_step = 0, 0
        self.escaped = not baseline > 0  # constant data: nothing to escape from
        self.progress_step, self.progress_best = 0, math.inf  # the best window when last checked for progress

    def on_window(self, mean: float, step: int, watch: Watch, can_restart: bool) -> bool:
        """True when it restarted the fit."""
        if self.escaped:
            return False
        self.escaped = mean < self.ESCAPED * self.baseline
        best = min(watch.best, mean)
        if self.escaped or step - self.progress_step < self.STUCK_STEPS // 2:
            return False
        falling = best < self.FALLING * self.progress_best
        if can_restart and step - self.restart_step >= self.STUCK_STEPS and not falling and self.restarts < self.MAX_RESTARTS:
            _put_back(self.model, self.initial)
            self.optimiser.state.clear()  # Adam starts afresh
            watch.rate_scale /= 2
            watch.best = math.inf
            self.restarts += 1
            self.restart_step = step
            self.progress_step, self.progress_best = step, math.inf
            return True
        self.progress_step, self.progress_best = step, best
        return False

    def state_dict(self) -> dict:
        # the initial weights only while they may be needed
        return {"restarts": self.restarts, "restart_step": self.restart_step, "escaped": self.escaped,
                "progress_step": self.progress_step, "progress_best": self.progress_best,
                "initial": None if self.escaped else self.initial}

    def load_state_dict(self, state: dict) -> None:
        self.restarts, self.restart_step = state["restarts"], state["restart_step"]
        self.escaped = state["escaped"]
        # a checkpoint of an older release has no progress check: it starts one afresh
        self.progress_step = state.get("progress_step", self.restart_step)
        self.progress_best = state.get("progress_best", math.inf)
        self.initial = state["initial"] or self.initial


class RecoverFromDivergence:
    """Undoes a collapse: restores the last healthy state and halves the rate.

    Sine networks trained on small batches can collapse: the loss jumps back to where it
    started and never comes down again (RESULTS-ARCHIVE.md, section 11). A window within
    `HEALTHY` x the best is snapshotted (model and optimiser); one above `DIVERGED` x the
    best restores the snapshot and halves the learning rate for the rest of the fit. 2.5, not
    4: a wide tree started at the data's mean can climb to 2-3x its best at its peak rate and
    come down only slowly (example4d at 64x, 60 s: 63.4 and 64.3 dB at 4; 65.45, and 65.82
    and 65.59 for seeds 0 and 1, at 2.5). At 2.5 no fit of the corpus at 256x / 6000 steps or
    64x / 3000 steps changes (RESULTS.md, "Where a fit starts")."""

    HEALTHY, DIVERGED = 1.5, 2.5

    def __init__(self, model: TreeINR, optimiser: torch.optim.Optimizer):
        self.model, self.optimiser = model, optimiser
        self.snapshot = self._state()
        self.recoveries = 0

    def _state(self):
        return _parameters(self.model), copy.deepcopy(self.optimiser.state_dict())

    def on_window(self, mean: float, watch: Watch) -> bool:
        """True when it went back to the snapshot."""
        if math.isfinite(mean) and not mean > self.DIVERGED * watch.best:
            return False
        params, optimiser_state = self.snapshot
        _put_back(self.model, params)
        self.optimiser.load_state_dict(copy.deepcopy(optimiser_state))
        watch.rate_scale /= 2
        self.recoveries += 1
        return True

    def after_window(self, mean: float, watch: Watch) -> None:
        if mean <= self.HEALTHY * watch.best:
            self.snapshot = self._state()


class HalveRateWhenDrifting:
    """Halves a rate too high to hold on to progress.

    A wide tree (example4d at 64x, 95 wide) drifts back at its peak rate for thousands of
    steps, its loss up to twice its best, until the cosine brings the rate down
    (RESULTS-ARCHIVE.md section 15). When every window for `PATIENCE` steps is above
    `DRIFTED` x the best, the rate is halved.
    """

    DRIFTED, PATIENCE = 1.25, 1000

    def __init__(self):
        self.near_best_step = 0

    def on_window(self, mean: float, step: int, watch: Watch) -> None:
        if mean <= self.DRIFTED * watch.best:
            self.near_best_step = step  # the last window near the best
        elif step - self.near_best_step >= self.PATIENCE:
            watch.rate_scale /= 2
            self.near_best_step = step

    def state_dict(self) -> dict:
        return {"near_best_step": self.near_best_step}

    def load_state_dict(self, state: dict) -> None:
        self.near_best_step = state["near_best_step"]


class DivergenceGuard:
    """The policies above, run on every window of the loss in that order."""

    WINDOW = WINDOW

    def __init__(self, model: TreeINR, optimiser: torch.optim.Optimizer, baseline: float, restored: dict | None = None):
        self.model, self.watch = model, Watch()
        self.diverged = RecoverFromDivergence(model, optimiser)
        self.stuck = RestartWhenStuck(model, optimiser, baseline, self.diverged.snapshot[0])
        self.drift = HalveRateWhenDrifting()
        self.total, self.count = None, 0
        if restored:
            self.watch.rate_scale, self.watch.best = restored["rate_scale"], restored["best_loss"]
            self.stuck.load_state_dict(restored)
            self.drift.load_state_dict(restored)

    def saved(self) -> dict:
        """What a checkpoint keeps of the guard."""
        return {"rate_scale": self.rate_scale, "best_loss": self.best, **self.stuck.state_dict(), **self.drift.state_dict()}

    def update(self, loss: torch.Tensor, step: int, can_restart: bool = True) -> None:
        """Account for one step's loss; `can_restart` is False once a restart would come too late."""
        self.total = loss.detach() if self.total is None else self.total + loss.detach()
        self.count += 1
        if self.count < WINDOW:
            return
        mean = float(self.total) / self.count
        self.total, self.count = None, 0
        if self.stuck.on_window(mean, step, self.watch, can_restart):
            return
        if self.diverged.on_window(mean, self.watch):
            self.drift.near_best_step = step
            return
        self.drift.on_window(mean, step, self.watch)
        self.watch.best = min(self.watch.best, mean)
        self.diverged.after_window(mean, self.watch)

    def warmup(self, step: int, steps: int) -> float:
        """The warm-up's factor on the rate at `step`: it rises over `steps` from the (re)start."""
        return min(1.0, (step - self.stuck.restart_step) / steps)

    def new_objective(self) -> None:
        """Forget the best loss: rounded weights (quantization-aware training) raise the loss
        for good, and against the unrounded best that would read as a collapse."""
        self.watch.best, self.total, self.count = math.inf, None, 0

    # read by progress lines, reports and tests
    rate_scale = property(lambda self: self.watch.rate_scale)
    best = property(lambda self: self.watch.best)
    recoveries = property(lambda self: self.diverged.recoveries)
    restarts = property(lambda self: self.stuck.restarts)
    restart_step = property(lambda self: self.stuck.restart_step)
    escaped = property(lambda self: self.stuck.escaped)
