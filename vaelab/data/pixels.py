"""Pixels as a model sees them: uint8 images scaled to [0, 1], and binarised MNIST.

Data sets stay uint8 [N, C, H, W] wherever they live; a batch becomes float on its device only
when it is used. Binarisation follows the two conventions of the binarised-MNIST literature:
one fixed Bernoulli draw of every pixel (static; Larochelle & Murray 2011) or a fresh draw for
every batch (dynamic; Burda et al. 2015).
"""

import torch

from vaelab.errors import VaelabError

BINARIZE_MODES = ("none", "dynamic", "static")
STATIC_SEEDS = {"train": 2015, "test": 2016}  # the one fixed draw of static binarisation


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1], on whatever device x lives."""
    return x.float().div_(255)


def fixed_binarization(x_uint8: torch.Tensor, seed: int) -> torch.Tensor:
    """One seeded Bernoulli draw of every pixel, P(1) = x / 255, as uint8 0 or 255.

    Drawn on the CPU from torch's seeded generator, so the draw is the same on every device.
    """
    u = torch.rand(x_uint8.shape, generator=torch.Generator().manual_seed(seed))
    return ((u * 255 < x_uint8.cpu().float()).to(torch.uint8) * 255).to(x_uint8.device)


def binarized_train_set(x_uint8: torch.Tensor, mode: str) -> torch.Tensor:
    """The training images for `mode`: static is its one fixed draw; the others are unchanged
    (dynamic draws afresh per batch with `binarize`)."""
    check_binarize(mode)
    return fixed_binarization(x_uint8, STATIC_SEEDS["train"]) if mode == "static" else x_uint8


def binarized_set(x_uint8: torch.Tensor, mode: str, split: str = "test", seed: int = 0) -> torch.Tensor:
    """A whole split, drawn once, for scoring: static is the split's fixed draw (the same for every
    run), dynamic one draw from `seed` (so a score repeats), none the grey pixels unchanged."""
    check_binarize(mode)
    if mode == "none":
        return x_uint8
    if mode == "static":
        return fixed_binarization(x_uint8, STATIC_SEEDS[split])
    return fixed_binarization(x_uint8, seed + (split == "train"))  # train and test draws differ


def binarize(x: torch.Tensor, mode: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """A batch of float pixels in [0, 1] as the model sees it: a fresh Bernoulli draw for dynamic,
    unchanged otherwise (static images were drawn once by `binarized_train_set`)."""
    return torch.bernoulli(x, generator=generator) if mode == "dynamic" else x


def check_binarize(mode: str) -> None:
    if mode not in BINARIZE_MODES:
        raise VaelabError(f"binarize must be one of {', '.join(BINARIZE_MODES)}, not {mode!r}")
