"""Images as arrays and PNG files, without matplotlib (kept out of the training path).

`tile` is the one way images are laid out in a grid, whether for a figure, a PNG in the run
folder or the explorer's decoded grid.
"""

import io
from pathlib import Path

import numpy as np
import torch

from vaelab.files import atomic_write


def tile(images, ncol: int, pad: int = 0, fill: float = 1.0) -> np.ndarray:
    """Lay [N, C, H, W] images (values in [0, 1], a tensor or an array) row by row into one float32
    array [rows*(H+pad)+pad, ncol*(W+pad)+pad] for grey images, with a trailing C for colour;
    gaps and empty places hold `fill`."""
    images = np.asarray(images.detach().cpu() if isinstance(images, torch.Tensor) else images, dtype=np.float32)
    n, c, h, w = images.shape
    rows = -(-n // ncol)
    grid = np.full((rows * (h + pad) + pad, ncol * (w + pad) + pad, c), fill, dtype=np.float32)
    for i in range(n):
        top, left = pad + (i // ncol) * (h + pad), pad + (i % ncol) * (w + pad)
        grid[top : top + h, left : left + w] = images[i].transpose(1, 2, 0)
    return grid[..., 0] if c == 1 else grid


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 pixels, rounded."""
    return (np.clip(array, 0, 1) * 255).round().astype(np.uint8)


def image_grid(images, ncol: int, pad: int = 2, scale: int = 2) -> np.ndarray:
    """Tile images in [0, 1] into one uint8 array with white gaps, each pixel repeated `scale`
    times in both directions so small digits stay visible."""
    if isinstance(images, torch.Tensor):
        images = images.detach().float().clamp(0, 1).cpu()
    grid = to_uint8(tile(images, ncol, pad))
    return grid.repeat(scale, 0).repeat(scale, 1)


def png_bytes(array: np.ndarray, compress_level: int = 6) -> bytes:
    """A uint8 [H, W] or [H, W, C] array as PNG bytes."""
    from PIL import Image  # Pillow ships with matplotlib; imported here to keep start-up light

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def figure_bytes(figure, dpi: int = 100) -> bytes:
    """A matplotlib Figure as PNG bytes ("tight": no clipped labels)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def save_figure_png(path: Path, figure) -> None:
    """A matplotlib Figure written to `path` as a PNG, whole or not at all."""
    atomic_write(Path(path), figure_bytes(figure))


def save_png(path: Path, array: np.ndarray) -> None:
    atomic_write(Path(path), png_bytes(array))


def read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image)
