"""The user's own images: `folder:PATH` and `npz:FILE` data sets.

folder:PATH  one sub-folder of images per class (the sub-folder names are the class names), or
             a flat folder of images without labels. Every image must have the same size; grey
             images give 1 channel, any colour image makes all of them RGB.
npz:FILE     arrays `x` ([N, H, W], [N, H, W, C] or [N, C, H, W]; uint8 0..255 or float 0..1)
             and optionally `y` (integer labels), `x_test`, `y_test`, `classes` (names).
Without a test split, a seeded 10% of the images is held out as the test set.
"""
from pathlib import Path

import numpy as np

from vaelab.errors import DataFormatError, VaelabError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
UNLABELLED = ("unlabelled",)


def split(x: np.ndarray, y: np.ndarray, seed: int = 0):
    """(train_x, train_y, test_x, test_y) with a seeded 10% (at least one image) held out."""
    if len(x) < 2:
        raise VaelabError(f"a data set needs at least 2 images (one to train, one to test), got {len(x)}")
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = max(1, len(x) // 10)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_images(paths: list[Path]) -> np.ndarray:
    """uint8 [N, C, H, W] from image files, all of one size."""
    from PIL import Image, UnidentifiedImageError

    try:
        images = [Image.open(p) for p in paths]
    except (UnidentifiedImageError, OSError) as e:
        raise DataFormatError(f"{e}: remove or replace that file") from None
    mode = "L" if all(im.mode in ("L", "1", "I;16") for im in images) else "RGB"
    arrays = [np.asarray(im.convert(mode)) for im in images]
    first = arrays[0].shape
    for path, arr in zip(paths, arrays):
        if arr.shape != first:
            raise DataFormatError(f"{path} is {arr.shape[1]}x{arr.shape[0]} but {paths[0]} is {first[1]}x{first[0]}: "
                                  f"every image of a data set must have the same size; resize them first")
    x = np.stack(arrays)
    return x[:, None] if mode == "L" else x.transpose(0, 3, 1, 2)


def read_folder(path: str):
    """(train_x, train_y, test_x, test_y, classes, labelled) from a folder of images."""
    folder = Path(path)
    if not folder.is_dir():
        raise VaelabError(f"folder:{path}: {folder} is not a folder; give a folder of images, "
                          f"or of one sub-folder of images per class")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and image_files(d))
    groups = [image_files(folder / c) for c in classes] if classes else [image_files(folder)]
    paths = [p for group in groups for p in group]
    if not paths:
        raise VaelabError(f"folder:{path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    y = np.concatenate([np.full(len(g), k, dtype=np.int64) for k, g in enumerate(groups)])
    return (*split(read_images(paths), y), tuple(classes) or UNLABELLED, bool(classes))


def as_nchw_uint8(x: np.ndarray, source: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise DataFormatError(f"{source}: images must be [N, H, W], [N, H, W, C] or [N, C, H, W] with 1 or 3 channels, got shape {x.shape}")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if not np.issubdtype(x.dtype, np.floating) or not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise DataFormatError(f"{source}: images must be uint8 (0..255) or floats in [0, 1], got {x.dtype} "
                              f"with values {x.min()}..{x.max()}")
    return np.ascontiguousarray((x * 255).round().astype(np.uint8))


def read_npz(path: str):
    """(train_x, train_y, test_x, test_y, classes, labelled) from a .npz file."""
    try:
        arrays = np.load(path, allow_pickle=False)  # never unpickle a user's file
    except (OSError, ValueError) as e:
        raise DataFormatError(f"npz:{path} cannot be read as a .npz archive of arrays ({e})") from None
    if "x" not in arrays:
        raise DataFormatError(f"npz:{path} has no array named 'x' (it has {', '.join(arrays.files) or 'none'}); "
                              f"save it with np.savez(FILE, x=images, y=labels)")
    x = as_nchw_uint8(arrays["x"], f"npz:{path} x")
    labelled = "y" in arrays
    y = arrays["y"].astype(np.int64) if labelled else np.zeros(len(x), dtype=np.int64)
    if len(y) != len(x):
        raise DataFormatError(f"npz:{path} has {len(x)} images but {len(y)} labels")
    if "x_test" in arrays:
        x_test = as_nchw_uint8(arrays["x_test"], f"npz:{path} x_test")
        y_test = arrays["y_test"].astype(np.int64) if "y_test" in arrays else np.zeros(len(x_test), np.int64)
        parts = (x, y, x_test, y_test)
    else:
        parts = split(x, y)
    count = int(max(y.max(), parts[3].max())) + 1 if labelled else 1
    classes = tuple(str(c) for c in arrays["classes"]) if "classes" in arrays else tuple(map(str, range(count)))
    if labelled and (y.min() < 0 or count > len(classes)):
        raise DataFormatError(f"npz:{path} labels must be in 0..{len(classes) - 1}, got {y.min()}..{count - 1}")
    return (*parts, classes if labelled else UNLABELLED, labelled)
