"""Multi-start: several initial weights each train a few hundred steps, and the fit goes on with the best."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..model import TreeINR
from .policies import DivergenceGuard

# Several initial weights are each trained for `START_STEPS` steps (at most a tenth of the
# fit, and of its time limit, on all starts together), ranked by their mean loss over the
# last `TRIAL_SCORE_STEPS`, and the fit continues the best (`TincConfig.starts`).
START_STEPS, TRIAL_SCORE_STEPS, START_TIME_SHARE = 200, 50, 0.1


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


def start_steps(planned: int | None, starts: int) -> int:
    """Steps each of `starts` initial weights trains before the best is kept (0: just one start)."""
    if starts <= 1:
        return 0
    steps = START_STEPS if planned is None else min(START_STEPS, int(planned * START_TIME_SHARE) // starts)
    return steps if steps >= 2 * TRIAL_SCORE_STEPS else 0


def initial_weights(model: TreeINR, seed: int, start_index: int) -> torch.Tensor:
    """The flat initial weights of start `start_index` (start 0 is the model's own), with the
    model's `output_mean`."""
    generator = torch.Generator().manual_seed(seed + 1_000_003 * start_index)
    return TreeINR(model.plan, model.w0, generator, model.output_mean).flat.detach().to(model.flat.device)


def try_starts(model: TreeINR, starts: int, seed: int, time_limit: float | None, trial: int, train_step: Callable,
               fresh_run: Callable[[], tuple[torch.optim.Optimizer, DivergenceGuard]], generator: torch.Generator,
               progress=None) -> Starts:
    """Train `starts` initial weights for `trial` steps each and put the best back in `model`.

    Tiny networks land in very different places from different initial weights (tinc_test
    at 512x: 29.2 to 32.5 dB over 7 seeds), and the loss after a few hundred steps already
    ranks them (RESULTS-ARCHIVE.md section 15). `fresh_run()` gives a new (optimiser, guard)
    for the weights in the model; `train_step(step, optimiser, guard)` is one step of the fit
    (None once its time is up). Every start sees the same samples, so the winner goes on as
    if it had been the only one.
    """
    result, best_flat = Starts([], 0), None
    for start_index in range(starts):
        began = time.perf_counter()
        if start_index:  # start 0 trains the model's own initial weights
            with torch.no_grad():
                model.flat.copy_(initial_weights(model, seed, start_index))
        optimiser, guard = fresh_run()
        generator.manual_seed(seed)
        losses, loss = [], None
        for step in range(1, trial + 1):
            loss = train_step(step, optimiser, guard)
            if loss is None:
                break
            if progress is not None and step % 25 == 0:
                progress(step, loss.item(), f"start {start_index + 1} of {starts}")
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
        if time_limit and (start_index + 2) * (time.perf_counter() - began) > START_TIME_SHARE * time_limit:
            break  # slow steps: more starts would take too much of the time limit
    with torch.no_grad():
        model.flat.copy_(best_flat)
    result.step = trial  # the samples drawn next are the same whichever start won
    return result
