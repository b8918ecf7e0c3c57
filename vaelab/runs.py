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
complete file. Nothing here uses pickle.
"""
import csv
import io
import json
import platform
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
from vaelab.device import describe_device
from vaelab.errors import CheckpointError, VaelabError
from vaelab.files import atomic_write, read_json, write_json
from vaelab.models import build_model, count_params, custom

FORMAT = "vaelab-1"  # bump when the layout of the files below changes
CONFIG, WEIGHTS, CHECKPOINT = "config.json", "model.safetensors", "checkpoint.safetensors"
METRICS, METRICS_CSV = "metrics.jsonl", "metrics.csv"
RECON, FIGURES = "recon", "figures"
REPORT, EVAL, SAMPLES = "report.html", "eval.json", "samples.png"


# ---- a new run ----------------------------------------------------------------------------------

def new_run_dir(model: str, dataset: str, out: str | None, overwrite: bool) -> Path:
    """The folder of a new run (default runs/MODEL-DATASET-TIMESTAMP), created with its recon/."""
    if out is None:
        out = f"runs/{model}-{dataset}-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir = Path(out)
    if run_dir.exists() and any(run_dir.iterdir()) and not overwrite:
        raise VaelabError(
            f"run folder {run_dir} already exists and is not empty; continue it with "
            f"`vaelab train --resume {run_dir}`, replace it with --overwrite, or pick another --out"
        )
    (run_dir / RECON).mkdir(parents=True, exist_ok=True)
    return run_dir


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
    return read_json(Path(run_dir) / CONFIG)


# ---- weights ---------------------------------------------------------------------------------

def save_weights(path: Path, model: torch.nn.Module, name: str, extra: dict | None = None) -> None:
    """Weights plus metadata naming the model and its config, so a wrong load is caught."""
    meta = {"format": FORMAT, "model": name, "config": json.dumps(config_dict(model))}
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(path, st_save({**tensors, **(extra or {})}, metadata=meta))


def read_safetensors(path: Path) -> tuple[dict, dict]:
    """(tensors, metadata) of a safetensors file, or a CheckpointError saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: train the model first, or point to a complete run folder")
    data = path.read_bytes()
    try:
        tensors = st_load(data)
        meta = _metadata(data)
    except (SafetensorError, ValueError, json.JSONDecodeError, UnicodeDecodeError) as e:
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
    return header.get("__metadata__", {})


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
    model.load_state_dict(state)
    return {k: v for k, v in tensors.items() if not k.startswith("model.")}


def config_dict(model: torch.nn.Module) -> dict:
    return json.loads(json.dumps(asdict(model.config)))  # tuples -> lists, as stored in JSON


def rebuild(config: dict) -> torch.nn.Module:
    """The untrained model a run's config.json describes (your own model: from its classes)."""
    if config["model"] == custom.NAME:
        return custom.build(config["custom"], config["model_config"])
    return build_model(config["model"], config["model_config"])


def load_model(run_dir: Path, device: str | torch.device = "cpu", weights: str = WEIGHTS, model=None):
    """(model, run_config) rebuilt from a run folder alone, in eval mode; `model`, when given, is
    filled with the weights instead (a model of your own whose classes cannot be imported)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise VaelabError(f"run folder {run_dir} does not exist; give the folder `vaelab train` wrote")
    config = read_config(run_dir)
    model = rebuild(config) if model is None else model
    load_weights(model, config["model"], run_dir / weights)
    return model.to(device).eval(), config


# ---- checkpoint (weights + Adam + RNG + epoch) ---------------------------------------------------

def save_checkpoint(path: Path, model, name: str, optimizer, position: dict, rng: dict) -> None:
    """Everything needed to resume: weights, Adam, RNG states and `position` (JSON: epochs done,
    steps done in the next epoch, its partial loss sums). Tensors go in safetensors, the rest in JSON."""
    state = optimizer.state_dict()
    extra = {f"optim.{i}.{k}": v.contiguous().cpu() for i, s in state["state"].items() for k, v in s.items()}
    extra.update({f"rng.{k}": v.cpu() for k, v in rng.items()})
    meta = {"position": position, "param_groups": state["param_groups"]}
    extra["meta.json"] = torch.frombuffer(bytearray(json.dumps(meta).encode()), dtype=torch.uint8)
    save_weights(path, model, name, extra)


def load_checkpoint(path: Path, model, name: str, optimizer) -> tuple[dict, dict]:
    """Restore model and optimizer in place; returns (position, rng states)."""
    rest = load_weights(model, name, path)
    meta = json.loads(bytes(rest.pop("meta.json").tolist()).decode())
    state: dict = {}
    for key, value in rest.items():
        if key.startswith("optim."):
            _, index, field = key.split(".", 2)
            state.setdefault(int(index), {})[field] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    rng = {key[len("rng."):]: v for key, v in rest.items() if key.startswith("rng.")}
    return meta["position"], rng


# ---- metrics -----------------------------------------------------------------------------------

def append_metrics(run_dir: Path, row: dict) -> None:
    """Add an epoch's row: metrics.jsonl and metrics.csv are both rewritten whole and atomically."""
    rows = [r for r in read_metrics(run_dir) if r["epoch"] < row["epoch"]] + [row]
    atomic_write(run_dir / METRICS, "".join(json.dumps(r) + "\n" for r in rows).encode())
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(row))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(run_dir / METRICS_CSV, out.getvalue().encode())


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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
