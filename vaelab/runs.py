"""A run folder: every file in it, who writes it and how it is read back.

    RUN/config.json            what is needed to rebuild the model and repeat the run
    RUN/model.safetensors      the weights (metadata: model name and config)
    RUN/checkpoint.safetensors weights, Adam state, RNG states and epoch, to resume
    RUN/metrics.jsonl|csv      one row per epoch
    RUN/recon/epoch_NNN.png    the same test images and their reconstructions, per epoch
    RUN/figures/NAME.png       the report's figures and the evaluation's
    RUN/report.html            the report page (vaelab/report.py renders it)
    RUN/eval.json              the evaluation's numbers (vaelab/evaluation.py computes them)
    RUN/samples.png            images from the prior (`vaelab sample`)

This module names every file and writes and reads them all; the modules that compute what goes
in them never build a path in a run folder themselves. `open_run` is the one way a finished run
is loaded: report, comparison, evaluation and explorer all use it.

Every file is written atomically (vaelab/files.py), so a killed process leaves the previous
complete file; the files of an epoch are replaced together (`commit_epoch`, vaelab/journal.py).
One process at a time writes a run (vaelab/lock.py). Everything read back is checked against the
model first (vaelab/checks.py). Nothing here uses pickle.
"""
import csv
import io
import json
import platform
import re
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

import vaelab
from vaelab import checks, journal
from vaelab.device import describe_device
from vaelab.errors import CheckpointError, VaelabError
from vaelab.files import atomic_write, make_folder, read_json, write_json
from vaelab.lock import LOCK
from vaelab.models import MAX_PARAMS, build_model, count_params, custom

FORMAT = "vaelab-1"  # bump when the layout of the files below changes
CONFIG, WEIGHTS, CHECKPOINT = "config.json", "model.safetensors", "checkpoint.safetensors"
METRICS, METRICS_CSV = "metrics.jsonl", "metrics.csv"
RECON, FIGURES = "recon", "figures"
REPORT, EVAL, SAMPLES = "report.html", "eval.json", "samples.png"
RUN_FILES = (CHECKPOINT, CONFIG, WEIGHTS, METRICS, METRICS_CSV, RECON, FIGURES, REPORT, EVAL, SAMPLES,
             journal.STAGE, LOCK)  # everything vaelab puts in a run folder; the checkpoint first
EPOCH_FILES = re.compile(r"(config\.json|model\.safetensors|checkpoint\.safetensors|metrics\.jsonl|"
                         r"metrics\.csv|recon/epoch_\d{3,}\.png)")  # what an epoch's commit may replace
MAX_FILE = 4 * 4 * MAX_PARAMS + (64 << 20)  # bytes of a weights file: the largest model with Adam's state


# ---- a new run ----------------------------------------------------------------------------------

def new_run_dir(model: str, dataset: str, out: str | None, overwrite: bool) -> Path:
    """The folder of a new run (default runs/MODEL-DATASET-TIMESTAMP), created with its recon/."""
    if out is None:
        out = f"runs/{model}-{dataset}-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir = Path(out)
    checks.check_new_run_dir(run_dir, overwrite, RUN_FILES)
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
        "data": {"name": data.name, "source": data.source, "image_shape": list(data.image_shape),
                 "classes": list(data.classes), "train_size": len(data.train_x), "test_size": len(data.test_x)},
        "command": sys.argv if command is None else command,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
        "device": describe_device(device),
        "processes": processes,
        "created": datetime.now().isoformat(timespec="seconds"),
    }


def write_config(run_dir: Path, config: dict) -> None:
    write_json(Path(run_dir) / CONFIG, config)


def read_config(run_dir: Path) -> dict:
    """config.json, checked: every field a reader uses has its type and range."""
    journal.settle(run_dir, EPOCH_FILES)
    return checks.check_config(read_json(Path(run_dir) / CONFIG), Path(run_dir) / CONFIG)


# ---- weights ---------------------------------------------------------------------------------

def save_weights(path: Path, model: torch.nn.Module, name: str, extra: dict | None = None) -> None:
    """Weights plus metadata naming the model and its config, so a wrong load is caught."""
    atomic_write(path, weights_bytes(model, name, extra))


def weights_bytes(model: torch.nn.Module, name: str, extra: dict | None = None) -> bytes:
    meta = {"format": FORMAT, "model": name, "config": json.dumps(config_dict(model))}
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    return st_save({**tensors, **(extra or {})}, metadata=meta)


def read_safetensors(path: Path) -> tuple[dict, dict]:
    """(tensors, metadata) of a safetensors file, or a CheckpointError saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: train the model first, or point to a complete run folder")
    data = checks.read_bounded(path, MAX_FILE)
    try:
        tensors = st_load(data)
        meta = _metadata(data)
    except (SafetensorError, ValueError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({e}): it is truncated or was not written "
            f"by vaelab. Delete it and train again, or resume from an earlier copy"
        ) from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} has format {meta.get('format')!r}, this vaelab reads {FORMAT!r}: "
            f"use the vaelab version that wrote it, or train again"
        )
    return tensors, meta


def _metadata(data: bytes) -> dict:
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_len])
    meta = header.get("__metadata__") or {} if isinstance(header, dict) else None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ValueError("its metadata is not a table of text")
    if "config" in meta and not isinstance(json.loads(meta["config"]), dict):
        raise ValueError("its model config is not a JSON object")
    return meta


def load_weights(model: torch.nn.Module, name: str, path: Path) -> dict:
    """Load weights saved by `save_weights` into `model` (named `name`); returns the other tensors."""
    tensors, meta = read_safetensors(path)
    saved_config = json.loads(meta.get("config", "{}"))
    current = config_dict(model)  # fields added since the file was written take their defaults
    if meta.get("model") != name or saved_config != {k: current[k] for k in saved_config if k in current} \
            or not set(saved_config) <= set(current):
        raise CheckpointError(
            f"{path} holds a '{meta.get('model')}' model with config {saved_config}, not the "
            f"'{name}' model with config {config_dict(model)}: load it with the run folder it came "
            f"from (vaelab rebuilds the right model from RUN/config.json)"
        )
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    checks.check_model_state(model, state, path)
    model.load_state_dict(state)
    return {k: v for k, v in tensors.items() if not k.startswith("model.")}


def config_dict(model: torch.nn.Module) -> dict:
    return json.loads(json.dumps(asdict(model.config)))  # tuples -> lists, as stored in JSON


def load_model(run_dir: Path, device: str | torch.device = "cpu", weights: str = WEIGHTS, model=None):
    """(model, run_config) rebuilt from a run folder alone, in eval mode; `model`, when given, is
    filled with the weights instead (a model of your own whose classes cannot be imported)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise VaelabError(f"run folder {run_dir} does not exist; give the folder `vaelab train` wrote")
    config = read_config(run_dir)
    model = rebuild(config, run_dir) if model is None else model
    load_weights(model, config["model"], run_dir / weights)
    return model.to(device).eval(), config


def rebuild(config: dict, run_dir: Path) -> torch.nn.Module:
    """The untrained model a run's config.json describes (your own model: from its classes)."""
    if config["model"] == custom.NAME:
        return custom.build(config["custom"], config["model_config"])
    try:
        return build_model(config["model"], config["model_config"])
    except VaelabError as e:
        raise VaelabError(f"{Path(run_dir) / CONFIG}: its model cannot be built ({e}); the file was edited or "
                          f"damaged: {checks.RESTORE}") from None


# ---- checkpoint (weights + Adam + RNG + epoch) ---------------------------------------------------

def save_checkpoint(path: Path, model, name: str, optimizer, position: dict, rng: dict) -> None:
    """Everything needed to resume: weights, Adam, RNG states and `position` (JSON: epochs done,
    steps done in the next epoch, its partial loss sums). Tensors go in safetensors, the rest in JSON."""
    atomic_write(path, checkpoint_bytes(model, name, optimizer, position, rng))


def checkpoint_bytes(model, name: str, optimizer, position: dict, rng: dict) -> bytes:
    state = optimizer.state_dict()
    extra = {f"optim.{i}.{k}": v.contiguous().cpu() for i, s in state["state"].items() for k, v in s.items()}
    extra.update({f"rng.{k}": v.cpu() for k, v in rng.items()})
    meta = {"position": position, "param_groups": state["param_groups"]}
    extra["meta.json"] = torch.frombuffer(bytearray(json.dumps(meta).encode()), dtype=torch.uint8)
    return weights_bytes(model, name, extra)


def load_checkpoint(path: Path, model, name: str, optimizer) -> tuple[dict, dict]:
    """Restore model and optimizer in place, every tensor checked first; returns (position, rng
    states). The optimizer keeps its own settings: only Adam's moments and steps come from the file."""
    position, state, rng = checks.checkpoint_parts(load_weights(model, name, path), optimizer, path)
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    return position, rng


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


def commit_epoch(run_dir: Path, model, name: str, optimizer, position: dict, rng: dict, row: dict,
                 recon: np.ndarray, config: dict | None = None) -> None:
    """The end of an epoch, all or nothing: the checkpoint, the weights, the metrics row, the
    reconstructions and (when given: settings changed on resume) config.json. A kill at any moment
    leaves the run at the end of this epoch or of the one before, never between."""
    from vaelab.images import png_bytes
    files = {CHECKPOINT: checkpoint_bytes(model, name, optimizer, position, rng),
             WEIGHTS: weights_bytes(model, name), **metrics_bytes(run_dir, row),
             str(recon_path(".", row["epoch"])): png_bytes(recon)}
    if config is not None:
        files[CONFIG] = (json.dumps(config, indent=2) + "\n").encode()
    journal.commit(Path(run_dir), files, EPOCH_FILES)



# ---- images, figures, the report and the evaluation ------------------------------------------------

def recon_path(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / RECON / f"epoch_{epoch:03d}.png"


def save_reconstructions(run_dir: Path, epoch: int, array: np.ndarray) -> None:
    """recon/epoch_NNN.png: a uint8 image grid (inputs on top, reconstructions below)."""
    from vaelab.images import save_png
    save_png(recon_path(run_dir, epoch), array)


def reconstruction_epochs(run_dir: Path) -> list[tuple[int, Path]]:
    """(epoch, path) of every recon/epoch_NNN.png, in epoch order."""
    paths = Path(run_dir).joinpath(RECON).glob("epoch_*.png")
    return sorted((int(p.stem.split("_")[1]), p) for p in paths)


def figure_path(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / FIGURES / f"{name}.png"


def save_figure(run_dir: Path, name: str, figure) -> Path:
    """figures/NAME.png from a matplotlib Figure (100 dpi, tight), or pixel for pixel from a
    uint8 array."""
    path = figure_path(run_dir, name)
    path.parent.mkdir(exist_ok=True)
    if isinstance(figure, np.ndarray):
        from vaelab.images import save_png
        save_png(path, figure)
    else:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")  # "tight": no clipped labels
        atomic_write(path, buffer.getvalue())
    return path


def remove_figures(run_dir: Path, keep) -> None:
    """Delete figures/*.png not named in `keep` (left from earlier settings, e.g. other --labels)."""
    for path in Path(run_dir).joinpath(FIGURES).glob("*.png"):
        if path.stem not in keep:
            path.unlink()


def write_report(run_dir: Path, page: str) -> Path:
    atomic_write(Path(run_dir) / REPORT, page.encode())
    return Path(run_dir) / REPORT


def write_eval(run_dir: Path, result: dict) -> Path:
    write_json(Path(run_dir) / EVAL, result)
    return Path(run_dir) / EVAL


def read_eval(run_dir: Path) -> dict | None:
    """The evaluation's numbers, or None when the run has not been evaluated."""
    path = Path(run_dir) / EVAL
    return read_json(path) if path.is_file() else None


def samples_path(run_dir: Path) -> Path:
    return Path(run_dir) / SAMPLES


# ---- a finished run, loaded --------------------------------------------------------------------

@dataclass(eq=False)
class Run:
    """A run folder read once: its config, the model in eval mode and the metrics; the data set
    and the test set's codes are loaded when first asked for."""
    dir: Path
    config: dict
    model: torch.nn.Module
    rows: list = field(default_factory=list)
    given_data: object = field(default=None, repr=False)

    @cached_property
    def data(self):
        """The run's data set (vaelab.data.ImageData), found as training found it."""
        if self.given_data is not None:
            return self.given_data
        from vaelab.data import load_dataset
        return load_dataset(self.config["train"]["dataset"], self.config["train"]["data_dir"])

    @cached_property
    def codes(self) -> tuple[np.ndarray, np.ndarray]:
        """(mu, logvar) [N_test, latent_dim] of q(z|x) for every test image, encoded once."""
        from vaelab.latent import encode_set
        return encode_set(self.model, self.data.test_x, self.data.test_y)

    @property
    def mu(self) -> np.ndarray:
        return self.codes[0]

    @property
    def logvar(self) -> np.ndarray:
        return self.codes[1]

    @property
    def classes(self) -> list[str]:
        return self.config["data"]["classes"]

    @property
    def conditional(self) -> bool:
        return self.model.config.num_classes > 0


def open_run(run_dir, device: str | torch.device = "cpu", data=None, model=None) -> Run:
    """A finished (or stopped) run from its folder alone; `data` shares an already loaded data set,
    `model` is one to fill (see load_model)."""
    model, config = load_model(run_dir, device, model=model)
    return Run(Path(run_dir), config, model, read_metrics(run_dir), data)
