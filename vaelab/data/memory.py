"""Data passed in memory, as students hold it in a notebook: numpy arrays or torch tensors (`x`,
`(x, y)`, or Keras's `(x_train, y_train), (x_test, y_test)`), a dict of such arrays, a torch
`Dataset` of images (or (image, label) pairs), or a `DataLoader` over one.

The images become uint8 [N, C, H, W] like every data set (user.py checks them); without a test split
a seeded 10% is held out, and said so. A run trained on them records what they were (shapes and a
fingerprint of their content) so that `vaelab.load` can be given them again and check they match.
"""

import hashlib

import numpy as np
import torch

from vaelab.data import user
from vaelab.data.formats import MAX_BYTES
from vaelab.errors import DataFormatError

NAME = "memory"  # the data set's name in a run's config.json: its images are not in a file
FORMS = (
    "numpy arrays or torch tensors: x, (x, y), or ((x_train, y_train), (x_test, y_test)) as "
    "keras.datasets' load_data() returns them; a dict with x (or x_train), y, x_test, y_test; "
    "a torch Dataset of images or (image, label) pairs; or a DataLoader"
)


def is_memory(obj) -> bool:
    """Whether `obj` is data in memory rather than a data set's name or file."""
    return not isinstance(obj, str) and obj is not None


def arrays_of(obj) -> dict:
    """{x, y, x_test, y_test} (some None) as numpy arrays, from any of the forms in FORMS."""
    if isinstance(obj, torch.utils.data.DataLoader):
        obj = obj.dataset
    if isinstance(obj, dict):
        named = {user.KERAS.get(k, k): v for k, v in obj.items()}
        unknown = set(named) - {"x", "y", "x_test", "y_test", "classes"}
        if unknown or "x" not in named:
            raise DataFormatError(
                f"a dict of data needs x (or x_train) and may hold y, x_test, y_test, classes; "
                f"got {', '.join(map(str, obj))}"
            )
        return {k: numpy(named.get(k)) for k in ("x", "y", "x_test", "y_test")} | {"classes": named.get("classes")}
    if isinstance(obj, tuple | list) and len(obj) == 2 and all(isinstance(p, tuple | list) for p in obj):
        (x, y), (x_test, y_test) = obj  # keras.datasets.mnist.load_data()
        return {"x": numpy(x), "y": numpy(y), "x_test": numpy(x_test), "y_test": numpy(y_test), "classes": None}
    if isinstance(obj, tuple | list) and len(obj) == 2:
        return {"x": numpy(obj[0]), "y": numpy(obj[1]), "x_test": None, "y_test": None, "classes": None}
    if isinstance(obj, np.ndarray | torch.Tensor):
        return {"x": numpy(obj), "y": None, "x_test": None, "y_test": None, "classes": None}
    if isinstance(obj, torch.utils.data.Dataset) and hasattr(obj, "__len__"):
        return from_dataset(obj)
    raise DataFormatError(f"vaelab cannot read data given as {type(obj).__name__}; give {FORMS}")


def numpy(a):
    if a is None:
        return None
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    if isinstance(a, np.ndarray):
        return a
    raise DataFormatError(f"expected a numpy array or a torch tensor, got {type(a).__name__}; give {FORMS}")


def from_dataset(dataset) -> dict:
    """The items of a map-style torch Dataset: images, or (image, label) pairs, stacked."""
    n = len(dataset)
    if n == 0:
        raise DataFormatError("the Dataset holds no items")
    first = dataset[0]
    image = numpy(first[0] if isinstance(first, tuple | list) else first)
    if n * image.size > MAX_BYTES:  # as uint8; checked before the items are read
        raise DataFormatError(
            f"{n:,} images of {image.size:,} values are more than vaelab loads "
            f"({MAX_BYTES:,} bytes, vaelab.data.formats.MAX_BYTES)"
        )
    items = [dataset[i] for i in range(n)]
    if isinstance(first, tuple | list):
        x = np.stack([numpy(item[0]) for item in items])
        y = np.asarray([int(item[1]) for item in items])
        return {"x": x, "y": y, "x_test": None, "y_test": None, "classes": None}
    return {"x": np.stack([numpy(item) for item in items]), "y": None, "x_test": None, "y_test": None, "classes": None}


def load_memory(obj):
    """(train_x, train_y, test_x, test_y, classes, labelled, about) of data in memory, checked as a
    folder's or an npz file's; `about` describes them for the run's config.json."""
    a = arrays_of(obj)
    parts = user.from_arrays(a["x"], a["y"], a["x_test"], a["y_test"], a["classes"], "the data given")
    return (*parts, describe(parts))


def describe(parts) -> str:
    """What the data were: sizes, shape and a fingerprint of their content (16 hex digits of SHA-256)."""
    train_x, train_y, test_x, test_y = parts[:4]
    digest = hashlib.sha256()
    for a in (train_x, train_y, test_x, test_y):
        digest.update(str(a.shape).encode())
        digest.update(np.ascontiguousarray(a).tobytes())
    shape = "×".join(map(str, train_x.shape[1:]))
    return (
        f"arrays in memory: {len(train_x):,} training and {len(test_x):,} test images of {shape}, "
        f"content {digest.hexdigest()[:16]}"
    )
