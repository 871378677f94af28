"""A fit saved to a file, atomically, so that a killed compression resumes where it stopped."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time

import torch

from ..config import TincConfig
from ..entropy import RateTerms
from ..errors import TincConfigError, TincFormatError
from ..io import atomic_path, check_writable
from ..model import TreeINR
from .policies import DivergenceGuard

# Options that do not change the fitted weights, so a resumed run may differ in them.
_NOT_FINGERPRINTED = ("quiet", "checkpoint", "checkpoint_every")


class Checkpoint:
    """The file holds the model and optimiser state, the sampling generator, the step, the
    training seconds spent and the last loss, the rate terms' and the guard's state, plus a
    fingerprint of the data and of every option that shapes the fit; a file with another
    fingerprint is refused, not overwritten. Everything a step depends on is restored, so
    without a time limit (whose clock is wall time) a resumed fit ends with the same
    weights, bit for bit, as an uninterrupted one.
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

    def restore(self, model: TreeINR, optimiser: torch.optim.Optimizer, generator: torch.Generator,
                rate: RateTerms) -> tuple[int, float, float]:
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
        rate.load_state_dict(state)
        self.guard = state.get("guard")
        return int(state["step"]), float(state["seconds"]), float(state["loss"])

    def save(self, step: int, seconds: float, loss: float | torch.Tensor, model: TreeINR, optimiser: torch.optim.Optimizer,
             generator: torch.Generator, guard: DivergenceGuard, rate: RateTerms, due_only: bool = True) -> None:
        """Write the state after `step`, if `every` seconds have passed since the last write (or always)."""
        now = time.perf_counter()
        if due_only and now - self.saved_at < self.every:
            return
        state = {"fingerprint": self.fingerprint, "step": step, "seconds": seconds, "loss": float(loss),
                 "model": model.state_dict(), "optimiser": optimiser.state_dict(), "generator": generator.get_state(),
                 **rate.state_dict(), "guard": guard.saved()}
        with atomic_path(self.path) as temporary:  # a kill mid-write keeps the previous checkpoint
            torch.save(state, temporary)
        self.saved_at = time.perf_counter()
