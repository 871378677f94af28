"""Torch devices by name, with a clear error where one is not available."""

from __future__ import annotations

import torch

from .errors import TincConfigError


def torch_device(name: str) -> torch.device:
    """"cpu", "cuda", "cuda:N", or "auto" (CUDA where available)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TincConfigError(f"device {name!r} requested but CUDA is not available here")
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise TincConfigError(f"unknown device {name!r} ({error})") from None
