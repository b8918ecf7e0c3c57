"""Which device a job runs on, which process of several this is, and how a run folder names it."""

import os
import platform

import torch

from vaelab.errors import VaelabError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise VaelabError("--device cuda was asked for but PyTorch sees no CUDA GPU; use --device cpu or auto")
    if name not in DEVICES:
        raise VaelabError(f"the device is one of {', '.join(DEVICES)}, not {name!r}")
    return torch.device(name)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def launched() -> bool:
    """True inside a process that torchrun started (it sets RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def env_rank() -> int:
    """This process's rank as the launcher set it (0 when not launched), before training joins its group."""
    return int(os.environ.get("RANK", "0")) if launched() else 0
