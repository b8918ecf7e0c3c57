"""The model table: every named model, the family that builds it, and its parameter counts.

A model is rebuilt from its name and its config alone (`build_model(name, config)`), which is
what a run folder stores. Every model is a `VAE` joining a family's encoder and decoder; the
interface they follow is written down in vaelab/models/common.py.
"""

from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from vaelab.errors import VaelabError
from vaelab.models.common import MAX_PARAMS, VAE
from vaelab.models.conv import ConvConfig, ConvDecoder, ConvEncoder
from vaelab.models.mlp import MLPConfig, MLPDecoder, MLPEncoder

FAMILIES = {"mlp": (MLPConfig, MLPEncoder, MLPDecoder), "conv": (ConvConfig, ConvEncoder, ConvDecoder)}
DATA_FIELDS = ("input_shape", "num_classes")  # set from the data set, not by the user


@dataclass(frozen=True)
class Preset:
    family: str
    conditional: bool
    params: tuple[int, int]  # (encoder, decoder) for images of `shape` with 10 classes
    about: str
    options: tuple[tuple[str, Any], ...] = ()  # config fields that differ from the family's defaults
    shape: tuple[int, int, int] = (1, 28, 28)


MODELS = {
    "mlp": Preset("mlp", False, (403_972, 403_728), "fully connected VAE, 784-512-2"),
    "mlp-small": Preset(
        "mlp", False, (63_124, 63_744), "fully connected VAE the size of conv, 784-80-2", (("hidden_dim", 80),)
    ),
    "conv": Preset("conv", False, (62_794, 65_089), "convolutional VAE, 32-64 channels, Dense 14"),
    "conv-small": Preset(
        "conv",
        False,
        (69_076, 28_161),
        "the second published conv VAE: Dense 16, two transposed convolutions (64-32-1, the last at stride 2)",
        (("dense_dim", 16), ("last_stride", 2)),
    ),
    "cvae": Preset("conv", True, (131_786, 96_449), "conditional convolutional VAE"),
    "cvae-mlp": Preset("mlp", True, (409_092, 408_848), "conditional fully connected VAE"),
    "mlp-iwae": Preset(
        "mlp",
        False,
        (217_300, 207_984),
        "Burda et al. 2015: 2x200 tanh each side, latent 50",
        (("hidden_dim", 200), ("hidden_layers", 2), ("activation", "tanh"), ("latent_dim", 50)),
    ),
    "conv-cifar": Preset(
        "conv",
        False,
        (2_599_808, 1_489_027),
        "wider, deeper conv VAE for 32x32 colour, latent 128",
        (("channels", (64, 128, 256)), ("dense_dim", 512), ("latent_dim", 128)),
        (3, 32, 32),
    ),
}


def get_preset(name: str) -> Preset:
    if name not in MODELS:
        raise VaelabError(f"unknown model '{name}'; choose one of: {', '.join(MODELS)}")
    return MODELS[name]


def option_fields(family: str) -> list:
    """The config fields a user may set for a family (everything but the data's shape)."""
    config_cls = FAMILIES[family][0]
    return [f for f in fields(config_cls) if f.name not in DATA_FIELDS]


def make_config(name: str, input_shape, num_classes: int, **options):
    """The config of model `name` for data of `input_shape` with `num_classes` classes.

    `options` overrides the preset (e.g. latent_dim=16); None values mean "keep the default".
    """
    preset = get_preset(name)
    config_cls = FAMILIES[preset.family][0]
    allowed = {f.name for f in option_fields(preset.family)}
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - allowed)
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        valid = ", ".join("--" + k.replace("_", "-") for k in sorted(allowed))
        raise VaelabError(f"{flags} does not apply to model '{name}'; its options are {valid}")
    merged = {**dict(preset.options), **given}
    classes = num_classes if preset.conditional else 0
    return config_cls(input_shape=tuple(input_shape), num_classes=classes, **merged)


def build_model(name: str, config) -> nn.Module:
    """The model `name` built from `config` (a config object or the dict saved in a run)."""
    preset = get_preset(name)
    config_cls, encoder_cls, decoder_cls = FAMILIES[preset.family]
    if isinstance(config, dict):
        config = config_from_dict(config_cls, config)
    if not isinstance(config, config_cls):
        raise VaelabError(f"model '{name}' needs a {config_cls.__name__}, not {type(config).__name__}")
    with torch.device("meta"):  # counted before any memory is taken
        size = count_params(VAE(config, encoder_cls(config), decoder_cls(config)))
    if size > MAX_PARAMS:
        raise VaelabError(
            f"model '{name}' with {options_text(config)} would have {size:,} parameters, over "
            f"vaelab's limit of {MAX_PARAMS:,} (vaelab.models.MAX_PARAMS); choose smaller options"
        )
    model = VAE(config, encoder_cls(config), decoder_cls(config))
    model.encoder.init_weights()  # the decoder keeps PyTorch's default: see common.init_like_keras
    return model


def options_text(config) -> str:
    return ", ".join(
        f"--{f.name.replace('_', '-')} {getattr(config, f.name)}" for f in fields(config) if f.name not in DATA_FIELDS
    )


def config_from_dict(config_cls, values: dict):
    if not isinstance(values, dict):
        raise VaelabError(f"a model config must be a JSON object of {config_cls.__name__} fields, got {values!r}")
    known = {f.name for f in fields(config_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise VaelabError(
            f"{config_cls.__name__} has no field(s) {unknown}: the run was saved by another vaelab version"
        )
    tuples = {k: tuple(v) for k, v in values.items() if isinstance(v, list)}
    return config_cls(**{**values, **tuples})


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
