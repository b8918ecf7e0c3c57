"""Weights and checkpoints as safetensors: tensors plus JSON metadata, never a pickle.

    model.safetensors        the weights; metadata: the format, the model's name and its config
    checkpoint.safetensors   the weights, Adam's moments and steps, RNG states and the position
                             in training (epochs done, steps done in the next, partial sums)

Every tensor read back is checked against the model and its optimizer first (vaelab/runs/checks.py).
"""

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from vaelab.errors import CheckpointError
from vaelab.files import atomic_write, strict_json
from vaelab.models import MAX_PARAMS
from vaelab.runs import checks
from vaelab.runs.lock import check_held

FORMAT = "vaelab-1"  # bump when the layout of the files below changes
MAX_FILE = 4 * 4 * MAX_PARAMS + (64 << 20)  # bytes of a weights file: the largest model with Adam's state


def save_weights(path: Path, model: torch.nn.Module, name: str, extra: dict | None = None) -> None:
    """Weights plus metadata naming the model and its config, so a wrong load is caught."""
    atomic_write(path, weights_bytes(model, name, extra))


META_KEYS = ("format", "model", "config")  # the metadata of every weights file vaelab writes


def weights_bytes(model: torch.nn.Module, name: str, extra: dict | None = None) -> bytes:
    meta = dict(zip(META_KEYS, (FORMAT, name, json.dumps(config_dict(model))), strict=True))
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
    header = strict_json(data[8 : 8 + header_len])
    meta = header.get("__metadata__") or {} if isinstance(header, dict) else None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ValueError("its metadata is not a table of text")
    unknown = sorted(set(meta) - set(META_KEYS))
    if unknown:
        raise ValueError(f"its metadata holds {unknown[0]!r}, a field vaelab never writes")
    if "config" in meta and not isinstance(strict_json(meta["config"]), dict):
        raise ValueError("its model config is not a JSON object")
    return meta


def load_weights(model: torch.nn.Module, name: str, path: Path) -> dict:
    """Load weights saved by `save_weights` into `model` (named `name`); returns the other tensors."""
    tensors, meta = read_safetensors(path)
    saved_config = json.loads(meta.get("config", "{}"))
    current = config_dict(model)  # fields added since the file was written take their defaults
    if (
        meta.get("model") != name
        or saved_config != {k: current[k] for k in saved_config if k in current}
        or not set(saved_config) <= set(current)
    ):
        raise CheckpointError(
            f"{path} holds a '{meta.get('model')}' model with config {saved_config}, not the "
            f"'{name}' model with config {config_dict(model)}: load it with the run folder it came "
            f"from (vaelab rebuilds the right model from RUN/config.json)"
        )
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    checks.check_model_state(model, state, path)
    model.load_state_dict(state)
    return {k: v for k, v in tensors.items() if not k.startswith("model.")}


def config_dict(model: torch.nn.Module) -> dict:
    return json.loads(json.dumps(asdict(model.config)))  # tuples -> lists, as stored in JSON


# ---- checkpoint (weights + Adam + RNG + epoch) ---------------------------------------------------


def save_checkpoint(path: Path, model, name: str, optimizer, position: dict, rng: dict) -> None:
    """Everything needed to resume: weights, Adam, RNG states and `position` (JSON: epochs done,
    steps done in the next epoch, its partial loss sums). Tensors go in safetensors, the rest in JSON."""
    check_held(Path(path).parent)
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
