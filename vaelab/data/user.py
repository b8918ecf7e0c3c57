"""The user's own images: `folder:PATH` and `npz:FILE` data sets.

folder:PATH  one sub-folder of images per class (the sub-folder names are the class names), or
             a flat folder of images without labels. Every image must have the same size; grey
             images give 1 channel, any colour image makes all of them RGB; 16-bit grey images
             are scaled to 8 bits.
npz:FILE     arrays `x` ([N, H, W], [N, H, W, C] or [N, C, H, W]; uint8 0..255 or float 0..1)
             and optionally `y` (integer labels), `x_test` with `y_test`, `classes` (names).
Without a test split, a seeded 10% of the images is held out as the test set.

Sizes are checked from what the files' headers promise before anything is decoded: at most
MAX_BYTES of pixels, MAX_CLASSES classes (vaelab.options).
"""

import logging
import zipfile
import zlib
from pathlib import Path

import numpy as np

from vaelab.data.formats import MAX_BYTES
from vaelab.errors import DataFormatError, VaelabError
from vaelab.options import MAX_CLASSES

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
UNLABELLED = ("unlabelled",)
GREY_MODES = ("L", "1", "I;16", "I;16B", "I;16L", "I;16N")

DIM_16_BIT = 4096  # a 16-bit image set whose brightest pixel is below this holds 12 bits or fewer
log = logging.getLogger("vaelab.data")


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
    """uint8 [N, C, H, W] from image files, all of one size. Every header is read first (sizes,
    modes), one file open at a time; then each image is decoded."""
    from PIL import Image

    heads = [image_head(p) for p in paths]
    (w, h), _ = heads[0]
    for path, (size, _) in zip(paths, heads, strict=True):
        if size != (w, h):
            raise DataFormatError(
                f"{path} is {size[0]}x{size[1]} but {paths[0]} is {w}x{h}: "
                f"every image of a data set must have the same size; resize them first"
            )
    mode = "L" if all(m in GREY_MODES or m == "I" for _, m in heads) else "RGB"
    total = len(paths) * w * h * (1 if mode == "L" else 3)
    if total > MAX_BYTES:
        raise DataFormatError(
            f"{len(paths):,} images of {w}x{h} hold {total:,} bytes of pixels, more than vaelab "
            f"loads ({MAX_BYTES:,}, vaelab.data.formats.MAX_BYTES); use fewer or smaller images"
        )
    arrays, peaks = [], []  # peaks: the brightest value of each 16-bit image
    for path in paths:
        try:
            with Image.open(path) as image:
                if is_16_bit(image):
                    peaks.append((int(np.asarray(image).max()), path))
                arrays.append(np.asarray(eight_bit(image, path).convert(mode)))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise DataFormatError(f"{path} cannot be decoded ({e}): remove or replace that file") from None
    x = np.stack(arrays)
    if len(peaks) == len(paths) and max(peaks)[0] < DIM_16_BIT:  # every image: the data, not one dark one
        brightest, where = max(peaks)
        log.warning(
            f"warning: the brightest pixel of {len(paths):,} 16-bit images is {brightest} of 65535 "
            f"({where}): data of fewer bits (a 12-bit camera's, say) stored in 16, which loads "
            f"nearly black; scale the images to the 16-bit range before saving them (x 16 for 12 bits)"
        )
    return x[:, None] if mode == "L" else x.transpose(0, 3, 1, 2)


def image_head(path: Path):
    """((width, height), mode) from an image file's header; a DataFormatError for an empty image or
    a file that is not one."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            size, mode = image.size, image.mode
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataFormatError(f"{e}: remove or replace that file") from None
    if 0 in size:
        raise DataFormatError(f"{path} is {size[0]}x{size[1]}, an image without pixels: remove or replace that file")
    return size, mode


def is_16_bit(image) -> bool:
    return image.mode.startswith("I;16") or (image.mode == "I" and image.format == "PNG")  # PNG "I" is 16-bit


def eight_bit(image, path: Path):
    """`image` with 8 bits per channel: 16-bit grey scaled (v * 255 / 65535, rounded), not clipped."""
    from PIL import Image

    if is_16_bit(image):
        values = np.asarray(image).astype(np.float64)
        return Image.fromarray((values.clip(0, 65535) / 257).round().astype(np.uint8), "L")
    if image.mode in ("I", "F"):
        raise DataFormatError(
            f"{path} has {image.mode!r} pixels (32-bit integers or floats); vaelab reads 8- and "
            f"16-bit images: convert it first"
        )
    return image


def check_brightness(x: np.ndarray, source: str) -> None:
    """A warning when the images' brightest pixel is at most 1 of 255 once loaded: 0/1 pixels saved as
    uint8 (binarised MNIST often is), or floats divided by 255 twice, train as black images."""
    if not x.size or not (x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating)) or not np.isfinite(x).all():
        return  # as_nchw_uint8 names what is wrong with other arrays
    peak = float(x.max())
    if (peak if x.dtype == np.uint8 else round(peak * 255)) > 1:
        return
    if peak == 0:
        why = "every pixel is 0: the images are black; check how they were made and saved"
    elif x.dtype == np.uint8:
        why = "these are 0/1 values stored as uint8, which train nearly black; multiply them by 255 (x * 255)"
    else:
        why = "these floats load as 0 or 1 of 255, nearly black: were they divided by 255 twice? multiply by 255"
    log.warning(f"warning: {source}: the brightest pixel is {peak:g} of {255 if x.dtype == np.uint8 else 1}: {why}")


def read_folder(path: str):
    """(train_x, train_y, test_x, test_y, classes, labelled) from a folder of images."""
    if not path.strip():
        raise VaelabError(
            "folder: needs a path: give folder:PATH, a folder of images or of one sub-folder of images per class"
        )
    folder = Path(path)
    if not folder.is_dir():
        raise VaelabError(
            f"folder:{path}: {folder} is not a folder; give a folder of images, "
            f"or of one sub-folder of images per class"
        )
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and image_files(d))
    loose = image_files(folder)
    if classes and loose:
        raise DataFormatError(
            f"folder:{path} holds class sub-folders ({', '.join(classes[:3])}...) and also "
            f"{len(loose)} image{'s' * (len(loose) > 1)} beside them ({loose[0].name}...), which would have no class: "
            f"move them into a class folder, or remove them"
        )
    if len(classes) > MAX_CLASSES:
        raise DataFormatError(
            f"folder:{path} has {len(classes)} class sub-folders, more than vaelab's "
            f"{MAX_CLASSES} (vaelab.options.MAX_CLASSES)"
        )
    groups = [image_files(folder / c) for c in classes] if classes else [loose]
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
        raise DataFormatError(
            f"{source}: images must be [N, H, W], [N, H, W, C] or [N, C, H, W] with 1 or 3 channels, "
            f"got shape {x.shape}"
        )
    if x.size == 0:
        raise DataFormatError(f"{source}: holds no pixels (shape {x.shape})")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if not np.issubdtype(x.dtype, np.floating) or not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise DataFormatError(
            f"{source}: images must be uint8 (0..255) or floats in [0, 1], got {x.dtype} "
            f"with values {x.min()}..{x.max()}"
        )
    return np.ascontiguousarray((x * 255).round().astype(np.uint8))


def read_npz(path: str):
    """(train_x, train_y, test_x, test_y, classes, labelled) from a .npz file. Each array's header
    (shape, dtype) is checked before it is read; nothing is unpickled."""
    if not path.strip():
        raise VaelabError("npz: needs a file: give npz:FILE, saved with np.savez(FILE, x=images, y=labels)")
    try:
        heads = npz_heads(path)
        arrays = np.load(path, allow_pickle=False)  # never unpickle a user's file
        check_npz(path, heads)
        check_brightness(arrays["x"], f"npz:{path} x")
        x = as_nchw_uint8(arrays["x"], f"npz:{path} x")
        labelled = "y" in heads
        y = labels(arrays["y"], len(x), f"npz:{path} y") if labelled else np.zeros(len(x), dtype=np.int64)
        if "x_test" in heads:
            x_test = as_nchw_uint8(arrays["x_test"], f"npz:{path} x_test")
            if x_test.shape[1:] != x.shape[1:]:
                raise DataFormatError(
                    f"npz:{path}: x_test images are {list(x_test.shape[1:])} but x images are "
                    f"{list(x.shape[1:])} (C, H, W): both splits need one image size"
                )
            y_test = (
                labels(arrays["y_test"], len(x_test), f"npz:{path} y_test")
                if labelled
                else np.zeros(len(x_test), np.int64)
            )
            parts = (x, y, x_test, y_test)
        else:
            parts = split(x, y)
        names = tuple(str(c) for c in arrays["classes"]) if "classes" in heads else None
        if names is not None and (not all(n.strip() for n in names) or len(set(names)) < len(names)):
            raise DataFormatError(
                f"npz:{path} classes must be names, each given once and none empty, got {list(names)[:10]}"
            )
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise DataFormatError(
            f"npz:{path} cannot be read as a .npz archive of arrays ({e}); save it with "
            f"np.savez(FILE, x=images, y=labels)"
        ) from None
    count = int(max(parts[1].max(), parts[3].max())) + 1 if labelled else 1
    classes = names or tuple(map(str, range(count)))
    if labelled and count > len(classes):
        raise DataFormatError(
            f"npz:{path} labels must be in 0..{len(classes) - 1} (one per name in classes), "
            f"got labels up to {count - 1}"
        )
    return (*parts, classes if labelled else UNLABELLED, labelled)


def npz_heads(path: str) -> dict[str, tuple]:
    """{array name: (shape, dtype)} from the headers of a .npz file's members, nothing decompressed
    beyond them."""
    heads = {}
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.endswith(".npy"):
                with archive.open(name) as f:
                    version = np.lib.format.read_magic(f)
                    read = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read(f)
                heads[name[: -len(".npy")]] = (shape, dtype)
    return heads


def check_npz(path: str, heads: dict) -> None:
    """The arrays a data set needs, with sizes and types that can be read: refused before reading."""
    if "x" not in heads:
        raise DataFormatError(
            f"npz:{path} has no array named 'x' (it has {', '.join(heads) or 'none'}); "
            f"save it with np.savez(FILE, x=images, y=labels)"
        )
    pairs = (("y_test", "x_test"), ("y_test", "y")) + ((("x_test", "y_test"),) if "y" in heads else ())
    for have, lack in pairs:
        if have in heads and lack not in heads:
            raise DataFormatError(
                f"npz:{path} has {have} but no {lack}: a test split is x_test, with its labels "
                f"y_test when x has labels y"
            )
    for name, (shape, dtype) in heads.items():
        if dtype.hasobject:
            raise DataFormatError(
                f"npz:{path} {name} holds Python objects, which vaelab never unpickles: "
                f"save numbers (or, for classes, strings)"
            )
        size = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if size > MAX_BYTES:
            raise DataFormatError(
                f"npz:{path} {name} has shape {shape}: {size:,} bytes, more than vaelab loads "
                f"({MAX_BYTES:,}, vaelab.data.formats.MAX_BYTES)"
            )
    if "x_test" in heads and (not heads["x_test"][0] or heads["x_test"][0][0] == 0):
        raise DataFormatError(
            f"npz:{path} x_test holds no images: leave it out (a seeded 10% of x is then held out) or fill it"
        )
    if "classes" in heads and (
        len(heads["classes"][0]) != 1
        or heads["classes"][1].kind not in "US"
        or not 1 <= heads["classes"][0][0] <= MAX_CLASSES
    ):
        raise DataFormatError(f"npz:{path} classes must be a list of 1 to {MAX_CLASSES} names (strings)")


def labels(y: np.ndarray, n: int, source: str) -> np.ndarray:
    """Class indices int64 [n] from integer labels (or floats that are whole numbers), each in
    0..MAX_CLASSES-1."""
    if y.shape != (n,):
        raise DataFormatError(f"{source}: {n} images need {n} labels, one each ([{n}]), got shape {list(y.shape)}")
    if y.dtype.kind not in "iuf" or (y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == y.round()).all())):
        raise DataFormatError(
            f"{source}: labels must be whole numbers (class indices), got {y.dtype} values such "
            f"as {y[:3].tolist()}; save them with y.astype(int)"
        )
    if n and (y.min() < 0 or y.max() >= MAX_CLASSES):
        raise DataFormatError(
            f"{source}: labels must be class indices from 0 to {MAX_CLASSES - 1} "
            f"(vaelab.options.MAX_CLASSES), got {y.min():g}..{y.max():g}"
        )
    return y.astype(np.int64)
