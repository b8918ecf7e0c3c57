"""Which device a job runs on, which process of several this is, and how a run folder names it."""

import os
import platform
import re

import torch

from vaelab.errors import VaelabError
from vaelab.options import as_given, named

DEVICES = ("auto", "cpu", "cuda", "mps")  # and cuda:N, the N-th CUDA GPU


def device_problem(name) -> str | None:
    """What is wrong with a device's name, or None: auto, cpu, cuda, cuda:N or mps."""
    if name in DEVICES or (isinstance(name, str) and re.fullmatch(r"cuda:\d{1,3}", name)):
        return None
    return f"must be one of {', '.join(DEVICES)} or cuda:N (the N-th GPU), got {name!r}"


def resolve_device(name: str) -> torch.device:
    """The device `name` means on this machine: auto picks a CUDA GPU, else Apple's GPU (mps), else the CPU."""
    if problem := device_problem(name):
        raise VaelabError(f"{named('device')} {problem}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu")
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= count:
            raise VaelabError(
                f"{as_given('device', name)} was asked for but PyTorch sees {count} CUDA GPU"
                f"{'s' * (count != 1)}; use {as_given('device', 'cuda:0' if count else 'cpu')} or auto"
            )
    if name == "mps" and not mps_available():
        raise VaelabError(
            f"{as_given('device', 'mps')} (Apple's GPU) was asked for but this PyTorch has none; "
            f"use {as_given('device', 'cpu')} or auto"
        )
    return torch.device(name)


def mps_available() -> bool:
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return "mps (Apple GPU)"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def launched() -> bool:
    """True inside a process that torchrun started (it sets RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def env_rank() -> int:
    """This process's rank as the launcher set it (0 when not launched), before training joins its group."""
    return int(os.environ.get("RANK", "0")) if launched() else 0
