"""Training settings as one typed dataclass, and argparse flags derived from dataclass fields.

Each field's default and help live here once; the CLI reads them from the field metadata.
"""
import argparse
import math
import types
import typing
from dataclasses import MISSING, dataclass, field, fields

from vaelab.losses import KL_ESTIMATORS, LIKELIHOODS, OBJECTIVES
from vaelab.models import MODELS
from vaelab.speed import PRECISIONS, SPEEDS

DATASET_NAMES = ("mnist", "fashion-mnist", "cifar10", "mnist-sample")
DEVICES = ("auto", "cpu", "cuda")


def _opt(default, help, **extra):
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True)
class TrainConfig:
    model: str = _opt("conv", "model to train", choices=tuple(MODELS))
    dataset: str = _opt("mnist", f"data set: {', '.join(DATASET_NAMES)}, or your own images as "
                                 "folder:PATH (a sub-folder per class, or flat) or npz:FILE (arrays x, y)")
    data_dir: str | None = _opt(None, "folder holding the data set's original files (searched first)")
    epochs: int = _opt(10, "passes over the training set", min=1)
    batch_size: int = _opt(128, "images per optimisation step", min=1)
    lr: float = _opt(1e-3, "Adam learning rate", above=0.0)
    lr_warmup: int = _opt(100, "steps (at most one epoch) over which the learning rate rises linearly to --lr "
                               "(0: none); keeps Adam's first steps from killing the conv encoder's small ReLU layer", min=0)
    beta: float = _opt(1.0, "weight of the KL term (1 gives the ELBO)", min=0.0)
    kl_warmup: float = _opt(0.0, "epochs over which the KL weight rises linearly from 0 to beta", min=0.0)
    objective: str = _opt("elbo", "elbo, or mmd: InfoVAE's MMD to N(0, I) instead of the KL", choices=OBJECTIVES)
    mmd_weight: float = _opt(1000.0, "weight of the MMD term when --objective mmd (InfoVAE uses 1000)", min=0.0)
    clip_grad: float | None = _opt(None, "clip the gradient norm to this value", above=0.0)
    likelihood: str = _opt("bernoulli", "p(x|z): Bernoulli (BCE from logits) or Gaussian", choices=LIKELIHOODS)
    gaussian_std: float = _opt(0.1, "fixed pixel standard deviation of the Gaussian likelihood", above=0.0)
    kl: str = _opt("analytic", "KL term: closed form, or single-sample Monte Carlo (log q - log p)", choices=KL_ESTIMATORS)
    binarize: str = _opt("none", "pixels as the model sees them: grey (none), one fixed Bernoulli draw (static) or a fresh draw each batch (dynamic)", choices=("none", "static", "dynamic"))
    seed: int = _opt(0, "seed of weights, data order and z samples")
    device: str = _opt("auto", "where to train; auto picks CUDA when present", choices=DEVICES)
    eval_batch_size: int = _opt(1000, "images per batch when evaluating the test set", min=1)
    speed: str = _opt("auto", "how the step runs (same maths): auto = a CUDA graph on one GPU, channels-last "
                              "convolutions on the CPU; or eager, graph (CUDA), compile", choices=SPEEDS)
    precision: str = _opt("fp32", "fp32, or bf16: forward and loss under bfloat16 autocast (weights and Adam stay fp32)",
                          choices=PRECISIONS)


def _base_type(tp):
    """The type argparse converts to: int for `int | None`, etc."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def _checked(convert, name: str, meta):
    """Convert and range-check one flag: `min` is inclusive, `above` exclusive; floats must be finite."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--{name} must be a{'n' if convert is int else ''} {convert.__name__}, got {text!r}") from None
        if convert is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"--{name} must be a finite number, got {text!r}")
        if "min" in meta and value < meta["min"]:
            raise argparse.ArgumentTypeError(f"--{name} must be at least {meta['min']}, got {text!r}")
        if "above" in meta and value <= meta["above"]:
            raise argparse.ArgumentTypeError(f"--{name} must be greater than {meta['above']}, got {text!r}")
        return value
    return parse


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 32,64, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers such as 32,64, got {text!r}")
    return values


def add_fields(parser: argparse.ArgumentParser, cls, *, skip=(), defaults_none: bool = False) -> None:
    """Add one --flag per dataclass field. With defaults_none, an absent flag gives None."""
    for f in fields(cls):
        if f.name in skip:
            continue
        name = f.name.replace("_", "-")
        meta = f.metadata
        tp = _base_type(f.type)
        default = None if defaults_none or f.default is MISSING else f.default
        shown = f.default if f.default is not MISSING else None
        kwargs = {"default": default, "help": f"{meta.get('help', '')} (default: {_show(shown)})"}
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        if typing.get_origin(tp) is tuple:
            kwargs["type"] = _int_tuple
        elif tp in (int, float):
            kwargs["type"] = _checked(tp, name, meta)
        parser.add_argument("--" + name, dest=f.name, **kwargs)


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def from_args(cls, args: argparse.Namespace, **extra):
    values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **extra})
