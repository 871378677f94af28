"""Fitting a tree to blocked data: the core loop (`loop`), the policies that watch it
(`policies`), multi-start (`starts`) and checkpoints (`checkpoint`)."""

from .loop import FitReport, batch_samples, data_mean, fit, leaf_mean_loss
from .policies import DivergenceGuard

__all__ = ["DivergenceGuard", "FitReport", "batch_samples", "data_mean", "fit", "leaf_mean_loss"]
