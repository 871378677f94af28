"""Fitting a TreeINR to blocked data: sampling, weighted loss, optimiser and schedule."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from .config import TincConfig
from .model import TreeINR


@dataclass
class FitReport:
    steps: int
    seconds: float
    loss: float
    stopped_by_time: bool


def fit(
    model: TreeINR,
    targets: torch.Tensor,
    weights: torch.Tensor,
    coords: torch.Tensor,
    config: TincConfig,
    progress=None,
) -> FitReport:
    """Minimise the weighted MSE of `model(coords)` against `targets` [leaves, voxels, C].

    Every step draws the same local coordinates in every leaf block, so one step trains all
    leaves at once. The learning rate follows a cosine whose clock is the larger of the
    step fraction and the time fraction, so a run cut short by `time_limit` still ends
    with a decayed rate.
    """
    leaves, voxels, _ = targets.shape
    samples = min(voxels, max(1, config.batch // leaves))
    full_batch = samples == voxels
    optimiser_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.Adamax
    optimiser = optimiser_class(model.parameters(), lr=config.lr)
    generator = torch.Generator(device=coords.device).manual_seed(config.seed)
    weight_total = weights.sum() if full_batch else None
    start = time.perf_counter()
    loss_value = float("nan")
    step = 0
    stopped_by_time = False
    for step in range(1, config.steps + 1):
        elapsed = time.perf_counter() - start
        clock = step / config.steps
        if config.time_limit:
            clock = max(clock, elapsed / config.time_limit)
            if elapsed >= config.time_limit:
                stopped_by_time = True
                step -= 1
                break
        for group in optimiser.param_groups:
            group["lr"] = config.lr * 0.5 * (1 + math.cos(math.pi * min(clock, 1.0)))
        if full_batch:
            batch_coords, batch_targets, batch_weights, total = coords, targets, weights, weight_total
        else:
            index = torch.randint(0, voxels, (samples,), device=coords.device, generator=generator)
            batch_coords, batch_targets, batch_weights = coords[index], targets[:, index], weights[:, index]
            total = batch_weights.sum()
        error = model(batch_coords) - batch_targets
        loss = (error.square().mean(dim=-1) * batch_weights).sum() / total.clamp_min(1e-12)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if progress is not None and (step % 25 == 0 or step == config.steps):
            loss_value = loss.item()
            progress(step, loss_value)
    if step and loss_value != loss_value:
        loss_value = float(loss.detach())
    return FitReport(step, time.perf_counter() - start, loss_value, stopped_by_time)
