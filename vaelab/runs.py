"""A run folder and everything in it: config, weights, checkpoint, metrics.

    RUN/config.json            what is needed to rebuild the model and repeat the run
    RUN/model.safetensors      the weights (metadata: model name and config)
    RUN/checkpoint.safetensors weights, Adam state, RNG states and epoch, to resume
    RUN/metrics.jsonl|csv      one row per epoch
    RUN/recon/epoch_NNN.png    the same test images and their reconstructions, per epoch

Every file is written atomically (temporary file, fsync, rename), so a killed process leaves the
previous complete file. Nothing here uses pickle.
"""
import csv
import io
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from vaelab.errors import CheckpointError, VaelabError
from vaelab.models import build_model

FORMAT = "vaelab-1"  # bump when the layout of the files below changes


def atomic_write(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    atomic_write(path, (json.dumps(obj, indent=2) + "\n").encode())


def read_json(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise VaelabError(f"{path} is missing: is {path.parent} a complete vaelab run folder?")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VaelabError(f"{path} is not valid JSON ({e}); the run folder is damaged") from None


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
    from dataclasses import asdict
    return json.loads(json.dumps(asdict(model.config)))  # tuples -> lists, as stored in JSON


def load_model(run_dir: Path, device: str | torch.device = "cpu", weights: str = "model.safetensors"):
    """(model, run_config) rebuilt from a run folder alone, in eval mode."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise VaelabError(f"run folder {run_dir} does not exist; give the folder `vaelab train` wrote")
    config = read_json(run_dir / "config.json")
    model = build_model(config["model"], config["model_config"])
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
    atomic_write(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(row))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(run_dir / "metrics.csv", out.getvalue().encode())


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
