"""Data sets as in-memory uint8 tensors: MNIST, Fashion-MNIST, CIFAR-10 and the bundled sample.

`load_dataset(name)` reads the standard files from the first place that holds them (see
vaelab/data/sources.py for the search order) and downloads them into the cache otherwise.
The whole set lives in memory as uint8 [N, C, H, W]; training scales it to [0, 1] on the device.
"""

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vaelab.data import formats, memory, user
from vaelab.data.sources import (
    DATASETS,
    DatasetSpec,
    cache_dir,
    check_data_dir,
    dataset_in,
    download_files,
    find_file,
    get_spec,
    locate_dataset,
    not_found_help,
)
from vaelab.errors import DataFormatError, VaelabError

__all__ = [
    "ImageData",
    "DATASETS",
    "DatasetSpec",
    "load_dataset",
    "memory_dataset",
    "locate_dataset",
    "describe_datasets",
    "format_data_table",
]


@dataclass(frozen=True, eq=False)
class ImageData:
    name: str
    train_x: torch.Tensor = field(repr=False)  # uint8 [N, C, H, W], contiguous, CPU
    train_y: torch.Tensor = field(repr=False)  # int64 [N]
    test_x: torch.Tensor = field(repr=False)  # uint8 [M, C, H, W]
    test_y: torch.Tensor = field(repr=False)  # int64 [M]
    classes: tuple[str, ...]
    source: str  # the folder or file the data were read from
    labelled: bool = True  # False for a user's folder or npz without labels

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = True, *, mirrors=None) -> ImageData:
    """Data set `name`, read from `data_dir`, $VAELAB_DATA/<name>/, the cache or a system folder.

    When none holds it and `download` is true, its files are downloaded into the cache from
    `mirrors` (default: the data set's usual public mirrors) and checked against their SHA-256.

    Examples:
        >>> data = vaelab.load_dataset("mnist-sample")
        >>> data.train_x.shape  # torch.Size([4000, 1, 28, 28]), uint8
    """
    if name.startswith(("folder:", "npz:")):
        return load_user_dataset(name)
    if name == memory.NAME:
        raise VaelabError(
            "this run was trained on data given in memory, which no file holds: give the same data again, "
            "vaelab.load(RUN, data=...) (or data= to resume, evaluate, report); the run's config.json says "
            "what they were (data.source)"
        )
    spec = get_spec(name)
    found, tried = locate_dataset(name, data_dir)
    if found is None:
        dest = cache_dir(name)
        if not download or not spec.mirrors:
            raise VaelabError(f"data set '{name}' was not found\n" + not_found_help(spec, dest, tried))
        download_files(spec, dest, mirrors, progress=sys.stderr.isatty(), tried=tried)
        found = dataset_in(spec, dest)
    try:
        return read_dataset(spec, found)
    except DataFormatError as e:
        origin = f"\nThe original files: {spec.mirrors[0]}" if spec.mirrors else ""
        raise DataFormatError(f"{e}{origin}") from None


def memory_dataset(obj) -> ImageData:
    """Data given in memory (vaelab/data/memory.py says which forms) as a data set."""
    train_x, train_y, test_x, test_y, classes, labelled, about = memory.load_memory(obj)
    return ImageData(
        memory.NAME,
        as_tensor(train_x, np.uint8),
        as_tensor(train_y, np.int64),
        as_tensor(test_x, np.uint8),
        as_tensor(test_y, np.int64),
        classes,
        about,
        labelled,
    )


def load_user_dataset(name: str) -> ImageData:
    kind, path = name.split(":", 1)
    read = user.read_folder if kind == "folder" else user.read_npz
    train_x, train_y, test_x, test_y, classes, labelled = read(path)
    return ImageData(
        name,
        as_tensor(train_x, np.uint8),
        as_tensor(train_y, np.int64),
        as_tensor(test_x, np.uint8),
        as_tensor(test_y, np.int64),
        classes,
        path,
        labelled,
    )


def as_tensor(arr: np.ndarray, dtype) -> torch.Tensor:
    # copies only when the array is a read-only view of file bytes (np.frombuffer) or a slice
    return torch.from_numpy(np.require(arr, dtype, ["C", "W", "O"]))


def read_dataset(spec: DatasetSpec, found: Path) -> ImageData:
    if spec.format == "idx":
        train_images, train_labels, test_images, test_labels = (find_file(found, name) for name in spec.files)
        train_x, train_y = formats.read_idx_split(train_images, train_labels, len(spec.classes))
        test_x, test_y = formats.read_idx_split(test_images, test_labels, len(spec.classes))
        classes = spec.classes
    else:
        train_x, train_y, test_x, test_y, classes = formats.read_cifar10(found)
        classes = classes or spec.classes
    return ImageData(
        spec.name,
        as_tensor(train_x, np.uint8),
        as_tensor(train_y, np.int64),
        as_tensor(test_x, np.uint8),
        as_tensor(test_y, np.int64),
        tuple(classes),
        str(found),
    )


def describe_datasets(data_dir=None) -> list[dict]:
    """One dict per data set: where it was found, or why not, and its sizes. Never downloads.

    Found data sets are read in full, so "found" means "loads"; a broken file shows in why_not.
    """
    check_data_dir(data_dir)
    return [describe_dataset(name, data_dir) for name in DATASETS]


def describe_dataset(name: str, data_dir=None) -> dict:
    row = {
        "name": name,
        "found": None,
        "why_not": None,
        "train_size": None,
        "test_size": None,
        "image_shape": None,
        "classes": DATASETS[name].classes,
        "about": DATASETS[name].about,
    }
    try:
        data = load_dataset(name, data_dir, download=False)
    except VaelabError as e:
        return {**row, "why_not": str(e)}
    return {
        **row,
        "found": data.source,
        "train_size": len(data.train_x),
        "test_size": len(data.test_x),
        "image_shape": data.image_shape,
        "classes": data.classes,
    }


def format_data_table(data_dir=None) -> str:
    """The `vaelab data` report: one line per data set, then why each missing one is missing."""
    rows = describe_datasets(data_dir)
    width = max(len(r["name"]) for r in rows)
    lines = [f"{'data set':<{width}}  {'train':>6}  {'test':>6}  {'image':>7}  classes  found at"]
    for r in rows:
        sizes = (
            [f"{r['train_size']:,}", f"{r['test_size']:,}", "x".join(map(str, r["image_shape"]))]
            if r["found"]
            else ["-", "-", "-"]
        )
        where = r["found"] or "not available, see below"
        lines.append(
            f"{r['name']:<{width}}  {sizes[0]:>6}  {sizes[1]:>6}  {sizes[2]:>7}  {len(r['classes']):>7}  {where}"
        )
    for r in rows:
        if not r["found"]:
            lines += ["", f"{r['name']} ({r['about']}):", r["why_not"]]
    lines += ["", "Missing data sets are downloaded into the cache by the first command that needs them (train, demo)."]
    return "\n".join(lines)
