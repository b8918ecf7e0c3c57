"""Image grids as PNG files, without matplotlib (kept out of the training path)."""
import io
from pathlib import Path

import numpy as np
import torch

from vaelab.runs import atomic_write


def image_grid(images: torch.Tensor, ncol: int, pad: int = 2, scale: int = 2) -> np.ndarray:
    """Tile [N, C, H, W] images with values in [0, 1] into one uint8 array, row by row.

    Returns [rows*(H+pad)+pad, ncol*(W+pad)+pad] for grey images, with a trailing 3 for colour,
    each pixel repeated `scale` times in both directions so small digits stay visible.
    """
    images = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    n, c, h, w = images.shape
    rows = -(-n // ncol)
    grid = torch.full((c, rows * (h + pad) + pad, ncol * (w + pad) + pad), 255, dtype=torch.uint8)
    for i in range(n):
        top, left = pad + (i // ncol) * (h + pad), pad + (i % ncol) * (w + pad)
        grid[:, top:top + h, left:left + w] = images[i]
    grid = grid.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    return grid[0].numpy() if c == 1 else grid.permute(1, 2, 0).numpy()


def save_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image  # Pillow ships with matplotlib; imported here to keep start-up light

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    atomic_write(Path(path), buffer.getvalue())
