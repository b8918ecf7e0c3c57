"""A run folder's files checked against the model before anything in them is used.

A run folder may come from anywhere (a download, a shared disk, a hand edit), so nothing read
from it reaches a model, an optimizer or a random generator unchecked: every tensor's name, shape,
dtype and values, every config field's type and range, every metrics row and the checkpoint's
position. A failed check raises CheckpointError or VaelabError naming the file, the field and
the fix. vaelab/runs/folder.py and weights.py call these where it reads each file.
"""

import json
import math
import re
from dataclasses import fields
from pathlib import Path

import torch

from vaelab.config import TrainConfig
from vaelab.errors import CheckpointError, VaelabError
from vaelab.files import strict_json
from vaelab.options import CALLER, MAX_CLASSES, as_given

ADAM_STATE = ("exp_avg", "exp_avg_sq", "step")  # what torch.optim.Adam keeps per parameter
NUMBERS = ("train_", "test_", "seconds", "images_per_second")  # metrics columns that hold numbers
RESTORE = "restore the file from a copy, or train the run again"
WORDS = {3: "three", 4: "four"}
VAELAB_KEYS = {"vaelab_version", "model", "model_config", "train", "data"}  # of every run's config.json
CONFIG_KEYS = VAELAB_KEYS | {"custom", "params", "command", "versions", "device", "processes", "created"}
CUSTOM_KEYS = {"model_class", "config_class", "encoder_class", "decoder_class"}  # vaelab/models/custom.py


# ---- config.json ---------------------------------------------------------------------------------


def check_config(config, path: Path) -> dict:
    """config.json's content, once every field a reader uses has the right type and range."""

    def bad(field: str, problem: str) -> VaelabError:
        return VaelabError(f"{path}: {field} {problem}; the file was edited or damaged: {RESTORE}")

    if not isinstance(config, dict):
        raise bad("the content", "is not a JSON object")
    for key, kind, what in (
        ("model", str, "a model name"),
        ("model_config", dict, "a JSON object"),
        ("train", dict, "a JSON object"),
        ("data", dict, "a JSON object"),
    ):
        if not isinstance(config.get(key), kind):
            raise bad(f'"{key}"', f"must be {what}, got {config.get(key)!r}")
    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        raise bad(f'"{unknown[0]}"', "is a field vaelab never writes in config.json")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(config["train"]) - known)
    if unknown:
        raise bad('"train"', f"holds {unknown[0]!r}, a setting this vaelab does not know (a newer vaelab's run?)")
    try:
        TrainConfig(**config["train"])
    except VaelabError as e:
        raise bad('"train"', f"fails a check ({e})") from None
    data = config["data"]
    classes, shape = data.get("classes"), data.get("image_shape")
    if not (
        isinstance(classes, list) and 1 <= len(classes) <= MAX_CLASSES and all(isinstance(c, str) for c in classes)
    ):
        raise bad('"data.classes"', f"must be a list of 1 to {MAX_CLASSES} class names")
    if not (isinstance(shape, list) and len(shape) == 3 and all(type(v) is int and v > 0 for v in shape)):
        raise bad('"data.image_shape"', f"must be [C, H, W], got {shape!r}")
    given = config["model_config"].get("input_shape", shape)
    if given != shape:
        raise bad('"data.image_shape"', f"is {shape}, but the model's input_shape is {given!r}")
    k = config["model_config"].get("num_classes", 0)
    if k and k != len(classes):
        raise bad('"data.classes"', f"names {len(classes)} classes, but the model is conditional on {k!r}")
    check_custom(config, bad)
    params = config.get("params", {})
    if not (isinstance(params, dict) and all(type(v) is int for v in params.values())):
        raise bad('"params"', "must map encoder and decoder to whole numbers")
    return config


def check_custom(config: dict, bad) -> None:
    """A run of your own model has a "custom" section naming its classes as "module:QualName" (what
    vaelab/models/custom.py imports, with trust_code); another model has none."""
    if config["model"] != "custom":
        if "custom" in config:
            raise bad('"custom"', f"names classes of your own model, but the run's model is {config['model']!r}")
        return
    section = config.get("custom")
    if not isinstance(section, dict):
        raise bad('"custom"', f"must name the classes of your own model, got {section!r}")
    needed = {"model_class", "config_class"}
    if not (needed <= set(section) <= CUSTOM_KEYS) or ("encoder_class" in section) != ("decoder_class" in section):
        wanted = "model_class and config_class (and encoder_class with decoder_class)"
        raise bad('"custom"', f"must hold {wanted}, got {sorted(section)}")
    for key, path in section.items():
        if not (isinstance(path, str) and re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", path)):
            raise bad(f'"custom.{key}"', f"must be an import path module:ClassName, got {path!r}")


# ---- a new run's folder --------------------------------------------------------------------------


def check_new_run_dir(run_dir: Path, overwrite: bool, run_files, bookkeeping=(), contents=None) -> None:
    """Refuse a run folder that holds anything at all without `overwrite`; with it, anything but a
    vaelab run: its config.json must be one vaelab wrote (it has the fields every run's has), every
    other entry one of `run_files` (or `bookkeeping`, the lock and unfinished files, which prove nothing),
    and every file in a folder of `contents` ({folder: pattern of the names vaelab writes there})
    one vaelab could have written."""
    if run_dir.exists() and not run_dir.is_dir():
        raise VaelabError(f"{as_given('out', str(run_dir))} is a file, not a folder; pick {another_out()}")
    entries = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []
    if entries and not overwrite:
        raise VaelabError(
            f"run folder {run_dir} already exists and is not empty; continue it with {resume_command(run_dir)}, "
            f"replace it with {as_given('overwrite', True)}, or pick {another_out()}"
        )
    foreign = [n for n in entries if n not in run_files and not re.fullmatch(r"\..+\.tmp", n)]
    for folder, pattern in (contents or {}).items():
        inner = run_dir / folder
        if inner.is_dir() and not inner.is_symlink():
            foreign += [
                f"{folder}/{p.name}"
                for p in sorted(inner.iterdir())
                if not (p.is_file() and not p.is_symlink() and re.fullmatch(pattern, p.name))
                and not re.fullmatch(r"\..+\.tmp", p.name)
            ]
    if foreign:
        raise VaelabError(
            f"{as_given('overwrite', True)} replaces a run folder, but {run_dir} also holds {', '.join(foreign[:3])}"
            f"{' ...' if len(foreign) > 3 else ''}, which vaelab did not write: move them away, "
            f"or pick {another_out()}"
        )
    if [n for n in entries if n not in bookkeeping and not re.fullmatch(r"\..+\.tmp", n)]:
        try:  # a vaelab run's config.json, perhaps damaged since, holds these: another program's does not
            config = json.loads((run_dir / "config.json").read_text())
            vaelab_wrote = isinstance(config, dict) and VAELAB_KEYS <= set(config)
        except (OSError, ValueError, RecursionError):  # missing, unreadable or not JSON
            vaelab_wrote = False
        if not vaelab_wrote:
            raise VaelabError(
                f"{as_given('overwrite', True)} replaces a vaelab run, but {run_dir} holds no config.json that "
                f"vaelab wrote, so "
                f"its files ({', '.join(entries[:3])}{' ...' if len(entries) > 3 else ''}) may be someone "
                f"else's: move them away, or pick {another_out()}"
            )


# ---- metrics.jsonl -------------------------------------------------------------------------------


def metrics_rows(path: Path) -> list[dict]:
    """The rows of metrics.jsonl, read and checked."""
    try:
        rows = [strict_json(line) for line in path.read_text().splitlines() if line.strip()]
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise VaelabError(
            f"{path} has a line that is not JSON ({e}): the file was edited or damaged; delete "
            f"that line and the ones after it, then continue with `vaelab train --resume "
            f"{path.parent}`"
        ) from None
    return check_metrics(rows, path)


def check_metrics(rows: list, path: Path) -> list[dict]:
    """The rows of metrics.jsonl, once each is an object whose epochs rise from 1 and whose losses
    and timings are finite numbers."""
    last = 0
    for i, row in enumerate(rows):
        where = f"{path} line {i + 1}"
        epoch = row.get("epoch") if isinstance(row, dict) else None
        if type(epoch) is not int or epoch <= last:
            raise VaelabError(
                f"{where} is not the row of an epoch after {last}: the file was edited or "
                f"damaged; delete that line and the ones after it, then continue with "
                f"`vaelab train --resume {path.parent}`, or {RESTORE}"
            )
        last = epoch
        wrong = [
            k for k, v in row.items() if k.startswith(NUMBERS) and (type(v) not in (int, float) or not math.isfinite(v))
        ]
        if wrong:
            raise VaelabError(
                f"{where}: {wrong[0]} is {row[wrong[0]]!r}, not a finite number; the file "
                f"was edited or damaged: {RESTORE}"
            )
    return rows


def resume_notes(rows: list[dict], epoch: int, epochs: int, run_dir: Path) -> list[str]:
    """What to say when a run resumes at the end of `epoch` (of `epochs`): that it is finished, or
    that metrics.jsonl disagrees with the checkpoint (an older vaelab killed between an epoch's files)."""
    last, notes = (rows[-1]["epoch"] if rows else 0), []
    if last < epoch:
        notes.append(
            f"note: metrics.jsonl ends at epoch {last} but the checkpoint at epoch {epoch}: the rows in "
            f"between were lost when an earlier vaelab was stopped between the files of an epoch; "
            f"training goes on from the checkpoint"
        )
    elif last > epoch:
        notes.append(
            f"note: metrics.jsonl has rows up to epoch {last} but the checkpoint is at epoch {epoch}; "
            f"the rows after it are replaced as those epochs are trained again"
        )
    if epoch == epochs:
        notes.append(
            f"{run_dir} has already trained its {epochs} epoch{'s' * (epochs != 1)}; nothing to do "
            f"(to train longer: vaelab train --resume {run_dir} --epochs {epochs + 10})"
        )
    return notes


# ---- weights, Adam's state, random generators ------------------------------------------------------


def check_tensors(found: dict, expected: dict, path: Path, what: str) -> None:
    """`found` has exactly the names of `expected` ({name: tensor}), each with its shape and
    dtype, and finite values."""
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or extra:
        names = f"lacks {missing[0]}" if missing else f"has an unexpected tensor {extra[0]}"
        raise CheckpointError(
            f"{path}: the {what} {names} ({len(missing)} missing, {len(extra)} unexpected): "
            f"it does not belong to this model; {RESTORE}"
        )
    for name, want in expected.items():
        got = found[name]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise CheckpointError(
                f"{path}: {name} is {got.dtype} {list(got.shape)}, the model needs "
                f"{want.dtype} {list(want.shape)}: the file is damaged or foreign; {RESTORE}"
            )
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise CheckpointError(f"{path}: {name} holds NaN or infinite values: the file is damaged; {RESTORE}")


def read_bounded(path: Path, limit: int) -> bytes:
    """A weights file's bytes, refused unread when larger than any file vaelab writes."""
    size = path.stat().st_size
    if size > limit:
        raise CheckpointError(
            f"{path} is {size:,} bytes, more than the largest model vaelab builds can fill "
            f"({limit:,}, from vaelab.models.MAX_PARAMS): it is not a vaelab file"
        )
    return path.read_bytes()


def checkpoint_parts(rest: dict, optimizer, path: Path) -> tuple[dict, dict, dict]:
    """(position, Adam state {index: {name: tensor}}, rng states) from a checkpoint's tensors
    other than the weights, each checked against `optimizer`."""
    try:
        position = strict_json(bytes(rest.pop("meta.json").tolist()).decode())["position"]
    except (KeyError, TypeError, ValueError, RecursionError):
        raise CheckpointError(f"{path} lacks a readable meta.json (the position in training): {RESTORE}") from None
    state: dict = {}
    for key, value in rest.items():
        if key.startswith("optim."):
            _, index, field = (key.split(".", 2) + ["", ""])[:3]
            state.setdefault(int(index) if re.fullmatch(r"\d{1,6}", index) else index, {})[field] = value
    check_adam_state(optimizer, state, path)
    rng = {key[len("rng.") :]: v for key, v in rest.items() if key.startswith("rng.")}
    check_rng(rng, path)
    return position, state, rng


def check_model_state(model: torch.nn.Module, state: dict, path: Path) -> None:
    check_tensors(state, model.state_dict(), path, "weights")


def check_adam_state(optimizer: torch.optim.Optimizer, state: dict, path: Path) -> None:
    """`state` ({parameter index: {exp_avg, exp_avg_sq, step}}) fits `optimizer`'s parameters: the
    fused Adam kernel trusts these shapes, so a wrong one would write outside its memory."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    expected, found = {}, {}
    for i, p in enumerate(params):
        like = {"exp_avg": p.detach(), "exp_avg_sq": p.detach(), "step": torch.zeros((), dtype=torch.float32)}
        expected.update({f"optim.{i}.{k}": v for k, v in like.items()})
    for i, values in state.items():
        found.update({f"optim.{i}.{k}": v for k, v in values.items()})
    check_tensors(found, expected, path, "optimizer state")
    for i in state:
        step, squares = state[i]["step"], state[i]["exp_avg_sq"]
        if not (step >= 1 and step == step.round()) or (squares < 0).any():
            raise CheckpointError(
                f"{path}: optim.{i} holds an impossible Adam state (step {step.item()}, "
                f"or a negative second moment): the file is damaged; {RESTORE}"
            )


def check_rng(rng: dict, path: Path) -> None:
    """The generator states a checkpoint holds are states torch accepts (CUDA's is checked when set)."""
    for name in ("torch", "order"):
        if name not in rng:
            raise CheckpointError(f"{path} lacks the random generator state rng.{name}; {RESTORE}")
        try:
            torch.Generator().set_state(rng[name])
        except (RuntimeError, TypeError) as e:
            raise CheckpointError(f"{path}: rng.{name} is not a generator state ({e}); {RESTORE}") from None


def check_adam_steps(optimizer, done: int, path: Path) -> None:
    """Adam's step count of every parameter is at most the optimisation steps the position says were
    taken (a step count of 1e30 would turn Adam's bias correction off without a word)."""
    for state in optimizer.state.values():
        step = float(state["step"])
        if step > done:
            raise CheckpointError(
                f"{path}: Adam has taken {step:g} steps by its state, but the position says "
                f"{done}: the file was edited or damaged; {RESTORE}"
            )


def scaler_ok(scaler) -> bool:
    """An fp16 run's gradient scaler as a checkpoint keeps it: a finite positive scale, a count of steps."""
    return (
        isinstance(scaler, dict)
        and set(scaler) == {"scale", "growth_tracker"}
        and type(scaler["scale"]) in (int, float)
        and 0 < scaler["scale"] < math.inf
        and type(scaler["growth_tracker"]) is int
        and scaler["growth_tracker"] >= 0
    )


def check_position(position, steps: int, epochs: int, terms: int, path: Path) -> str:
    """Where a checkpoint stands ("end of epoch 3", "epoch 4, step 17"), once its position is one
    training can be at (epochs done, steps done in the next epoch below `steps`, finite partial sums,
    `terms` of them inside an epoch, seconds >= 0) and not past the run's `epochs`."""
    sums = position.get("sums") if isinstance(position, dict) else None
    ok = (
        isinstance(position, dict)
        and type(position.get("epoch")) is int
        and position["epoch"] >= 0
        and type(position.get("step")) is int
        and 0 <= position["step"] < steps
        and isinstance(sums, list)
        and len(sums) in ((terms,) if position["step"] else (3, terms))
        and all(type(v) in (int, float) and math.isfinite(v) for v in sums)
        and type(position.get("seconds")) in (int, float)
        and 0 <= position["seconds"] < math.inf
        and scaler_ok(position.get("scaler", {"scale": 1.0, "growth_tracker": 0}))
    )
    if not ok:
        raise CheckpointError(
            f"{path}: its position {position!r} is not one training can be at (epochs done, "
            f"step from 0 to {steps - 1}, {WORDS.get(terms, terms)} finite sums, seconds >= 0): the file was "
            f"edited or damaged; {RESTORE}"
        )
    epoch, step = position["epoch"], position["step"]
    if epoch + (step > 0) > epochs:
        where = f"inside epoch {epoch + 1}" if step else f"at the end of epoch {epoch}"
        raise VaelabError(
            f"{path.parent} is {where}, past the {epochs} epoch{'s' * (epochs != 1)} its settings "
            f"say; continue it with vaelab train --resume {path.parent} --epochs {epoch + (step > 0)}"
        )
    return f"epoch {epoch + 1}, step {step}" if step else f"end of epoch {epoch}"


def resume_command(run_dir) -> str:
    """How the caller continues a run: the command on the command line, the function in Python."""
    return f"`vaelab train --resume {run_dir}`" if CALLER.get() == "cli" else f"`vaelab.resume({str(run_dir)!r})`"


def another_out() -> str:
    return "another --out" if CALLER.get() == "cli" else "another out folder"
