"""A run folder: every file in it, who writes it and how it is read back.

    RUN/config.json            what is needed to rebuild the model and repeat the run
    RUN/model.safetensors      the weights (metadata: model name and config)
    RUN/checkpoint.safetensors weights, Adam state, RNG states and epoch, to resume
    RUN/metrics.jsonl|csv      one row per epoch
    RUN/recon/epoch_NNN.png    the same test images and their reconstructions, per epoch
    RUN/figures/NAME.png       the report's figures and the evaluation's
    RUN/report.html            the report page (vaelab/report/ renders it)
    RUN/eval.json              the evaluation's numbers (vaelab/evaluation/ computes them)
    RUN/samples.png            images from the prior (`vaelab sample`)

This module names every file and writes and reads them all; the modules that compute what goes
in them never build a path in a run folder themselves.

Every file is written atomically (vaelab/files.py), so a killed process leaves the previous
complete file; the files of an epoch are replaced together (`commit_epoch`, journal.py).
One process at a time writes a run (lock.py). Everything read back is checked first (checks.py).
"""

import csv
import io
import json
import os
import platform
import re
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

import vaelab
from vaelab.device import describe_device
from vaelab.errors import VaelabError
from vaelab.files import atomic_write, make_folder, read_json, write_json
from vaelab.models import count_params, custom
from vaelab.runs import checks, journal
from vaelab.runs.lock import LOCK
from vaelab.runs.weights import checkpoint_bytes, config_dict, weights_bytes

CONFIG, WEIGHTS, CHECKPOINT = "config.json", "model.safetensors", "checkpoint.safetensors"
METRICS, METRICS_CSV = "metrics.jsonl", "metrics.csv"
RECON, FIGURES, EXPORT, TENSORBOARD, WANDB = "recon", "figures", "export", "tensorboard", "wandb"
REPORT, EVAL, SAMPLES = "report.html", "eval.json", "samples.png"
RUN_FILES = (
    CHECKPOINT,
    CONFIG,
    WEIGHTS,
    METRICS,
    METRICS_CSV,
    RECON,
    FIGURES,
    REPORT,
    EVAL,
    SAMPLES,
    EXPORT,
    TENSORBOARD,
    WANDB,
    journal.STAGE,
    LOCK,
)  # everything vaelab puts in a run folder; the checkpoint first
CONTENTS = {
    RECON: r"epoch_\d{3,}\.png",
    FIGURES: r"[\w.-]+\.png",
    EXPORT: r"(encoder|decoder)\.(onnx|pt)",
}  # the files vaelab writes in its folders (TensorBoard and W&B write what their libraries write)
EPOCH_FILES = re.compile(
    r"(config\.json|model\.safetensors|checkpoint\.safetensors|metrics\.jsonl|"
    r"metrics\.csv|recon/epoch_\d{3,}\.png)"
)  # what an epoch's commit may replace


# ---- a new run ----------------------------------------------------------------------------------


def run_folder(run_dir) -> Path:
    """`run_dir` (a path or its text) as the Path of an existing run folder, or a VaelabError saying what is wrong."""
    if not isinstance(run_dir, str | os.PathLike) or not str(run_dir):
        raise VaelabError(f"a run folder is a path, such as 'runs/conv-mnist-20250101-120000', not {run_dir!r}")
    if not Path(run_dir).is_dir():
        raise VaelabError(f"run folder {run_dir} does not exist; give the folder `vaelab train` wrote")
    return Path(run_dir)


def default_folder(*parts: str) -> Path:
    """runs/PART-PART-...-TIMESTAMP: where a run, a comparison or a sweep goes when no --out is given."""
    return Path("runs") / "-".join([*map(str, parts), f"{datetime.now():%Y%m%d-%H%M%S}"])


def new_run_dir(model: str, dataset: str, out: str | None, overwrite: bool) -> Path:
    """The folder of a new run (default runs/MODEL-DATASET-TIMESTAMP), created."""
    run_dir = Path(out) if out is not None else default_folder(model, dataset)
    checks.check_new_run_dir(run_dir, overwrite, RUN_FILES, bookkeeping=(journal.STAGE, LOCK), contents=CONTENTS)
    return make_folder(run_dir)


def clear_run(run_dir: Path) -> None:
    """Delete an earlier run's files (the caller holds the run's lock): the checkpoint first, so
    an interrupted overwrite can never be resumed under the new settings."""
    journal.remove(Path(run_dir), [n for n in RUN_FILES if n != LOCK])


def describe(train_config, model, data, device: torch.device, processes: int = 1, command=None) -> dict:
    """The content of RUN/config.json: the model's name and config (and for your own model, the
    classes it is built from), every training setting (`train_config`, a dataclass), the data, the
    command that started the run (default: this process's command line), versions and device."""
    return {
        "vaelab_version": vaelab.__version__,
        "model": train_config.model,
        "model_config": config_dict(model),
        **({"custom": custom.describe(model)} if train_config.model == custom.NAME else {}),
        "params": {"encoder": count_params(model.encoder), "decoder": count_params(model.decoder)},
        "train": asdict(train_config),
        "data": {
            "name": data.name,
            "source": data.source,
            "image_shape": list(data.image_shape),
            "classes": list(data.classes),
            "train_size": len(data.train_x),
            "test_size": len(data.test_x),
        },
        "command": sys.argv if command is None else command,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
        "device": describe_device(device),
        "processes": processes,
        "created": datetime.now().isoformat(timespec="seconds"),
    }


def write_config(run_dir: Path, config: dict) -> None:
    write_json(Path(run_dir) / CONFIG, config)


def read_config_file(path: Path) -> dict:
    """A run's config.json given as a file (`vaelab train --config`), checked as `read_config` checks it."""
    return checks.check_config(read_json(Path(path)), Path(path))


def read_config(run_dir: Path) -> dict:
    """config.json, checked: every field a reader uses has its type and range."""
    journal.settle(run_dir, EPOCH_FILES)
    return checks.check_config(read_json(Path(run_dir) / CONFIG), Path(run_dir) / CONFIG)


# ---- metrics -----------------------------------------------------------------------------------


def append_metrics(run_dir: Path, row: dict) -> None:
    """Add an epoch's row: metrics.jsonl and metrics.csv are both rewritten whole and atomically."""
    for name, data in metrics_bytes(run_dir, row).items():
        atomic_write(Path(run_dir) / name, data)


def metrics_bytes(run_dir: Path, row: dict) -> dict[str, bytes]:
    """metrics.jsonl and metrics.csv with `row` added (replacing it and any later rows)."""
    rows = [r for r in read_metrics(run_dir) if r["epoch"] < row["epoch"]] + [row]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(row), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return {METRICS: "".join(json.dumps(r) + "\n" for r in rows).encode(), METRICS_CSV: out.getvalue().encode()}


def read_metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl's rows, checked (epochs rising from 1, finite numbers)."""
    path = Path(run_dir) / METRICS
    journal.settle(run_dir, EPOCH_FILES)
    if not path.is_file():
        return []
    return checks.metrics_rows(path)


# ---- an epoch's files, replaced together ----------------------------------------------------------


def recover(run_dir: Path) -> None:
    """Complete an epoch's files that a killed process left half-replaced (the caller writes the run)."""
    journal.recover(Path(run_dir), EPOCH_FILES)


def commit_epoch(
    run_dir: Path,
    model,
    name: str,
    optimizer,
    position: dict,
    rng: dict,
    row: dict,
    recon: np.ndarray,
    config: dict | None = None,
) -> None:
    """The end of an epoch, all or nothing: the checkpoint, the weights, the metrics row, the
    reconstructions and (when given: settings changed on resume) config.json. A kill at any moment
    leaves the run at the end of this epoch or of the one before, never between."""
    from vaelab.images import png_bytes

    files = {
        CHECKPOINT: checkpoint_bytes(model, name, optimizer, position, rng),
        WEIGHTS: weights_bytes(model, name),
        **metrics_bytes(run_dir, row),
        str(recon_path(".", row["epoch"])): png_bytes(recon),
    }
    if config is not None:
        files[CONFIG] = (json.dumps(config, indent=2) + "\n").encode()
    journal.commit(Path(run_dir), files, EPOCH_FILES)


# ---- writing inside a run folder: never through a link ------------------------------------------------


def inside(run_dir: Path, *parts: str) -> Path:
    """RUN/PART/.../NAME for writing: every folder on the way is a real folder of the run (made when
    missing), never a symbolic link, so nothing vaelab writes lands outside the run through a link
    planted in a shared folder. The file itself is written atomically (a link at its place is replaced,
    not followed)."""
    path = Path(run_dir)
    for part in parts[:-1]:
        path = path / part
        if path.is_symlink():
            raise VaelabError(
                f"{path} is a symbolic link, not a folder of the run: vaelab never writes through a link "
                f"(it could point anywhere); remove the link and try again"
            )
        if not path.is_dir():
            make_folder(path)
    return path / parts[-1]


def write_into(run_dir: Path, data: bytes, *parts: str) -> Path:
    """Write `data` to RUN/PART/.../NAME, whole or not at all, never through a link (see `inside`)."""
    path = inside(run_dir, *parts)
    atomic_write(path, data)
    return path


# ---- images, figures, the report and the evaluation ------------------------------------------------


def recon_path(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / RECON / f"epoch_{epoch:03d}.png"


def save_reconstructions(run_dir: Path, epoch: int, array: np.ndarray) -> None:
    """recon/epoch_NNN.png: a uint8 image grid (inputs on top, reconstructions below)."""
    from vaelab.images import png_bytes

    write_into(run_dir, png_bytes(array), RECON, f"epoch_{epoch:03d}.png")


def reconstruction_epochs(run_dir: Path) -> list[tuple[int, Path]]:
    """(epoch, path) of every recon/epoch_NNN.png, in epoch order."""
    paths = Path(run_dir).joinpath(RECON).glob("epoch_*.png")
    return sorted((int(p.stem.split("_")[1]), p) for p in paths)


def figure_path(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / FIGURES / f"{name}.png"


def save_figure(run_dir: Path, name: str, figure) -> Path:
    """figures/NAME.png from a matplotlib Figure (100 dpi, tight), or pixel for pixel from a
    uint8 array."""
    from vaelab.images import figure_bytes, png_bytes

    data = png_bytes(figure) if isinstance(figure, np.ndarray) else figure_bytes(figure)
    return write_into(run_dir, data, FIGURES, f"{name}.png")


def remove_figures(run_dir: Path, keep) -> None:
    """Delete figures/*.png not named in `keep` (left from earlier settings, e.g. other --labels)."""
    for path in inside(run_dir, FIGURES, "*.png").parent.glob("*.png"):
        if path.stem not in keep:
            path.unlink()


def write_report(run_dir: Path, page: str) -> Path:
    return write_into(run_dir, page.encode(), REPORT)


def write_eval(run_dir: Path, result: dict) -> Path:
    return write_into(run_dir, (json.dumps(result, indent=2) + "\n").encode(), EVAL)


def read_eval(run_dir: Path) -> dict | None:
    """The evaluation's numbers, or None when the run has not been evaluated."""
    path = Path(run_dir) / EVAL
    return read_json(path) if path.is_file() else None


def samples_path(run_dir: Path) -> Path:
    return Path(run_dir) / SAMPLES
