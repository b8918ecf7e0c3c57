"""Your own model: any module that follows the model interface (vaelab/models/common.py) trains,
resumes, reports and explores like a built-in one.

    config = vaelab.ModelConfig(input_shape=(1, 28, 28), latent_dim=2)
    model = vaelab.VAE(config, MyEncoder(config), MyDecoder(config))   # or MyVAE(config)
    run = vaelab.train(model=model, dataset="mnist-sample", epochs=5)

A run of such a model records in config.json the import paths of the classes it was built from
("custom": model, encoder and decoder classes, config class), so `vaelab.load(folder)` rebuilds it
wherever those classes can be imported: from a module, or from a notebook's own cells once they
have run again (the classes then live in `__main__`). Every class must take the config as its only
argument. Otherwise give the loader a model to fill: `vaelab.load(folder, model=MyVAE(...))`.
Weights are safetensors as always: nothing is pickled, no code is stored.
"""

import importlib
import sys
from dataclasses import fields, is_dataclass

import torch

from vaelab.errors import VaelabError
from vaelab.models.common import VAE

NAME = "custom"
CONFIG_FIELDS = ("input_shape", "latent_dim", "num_classes")


def class_path(cls) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def import_class(path: str):
    """The class at "module:QualName"; `__main__` is a notebook's (or script's) own namespace."""
    module_name, _, qualname = path.partition(":")
    try:
        target = sys.modules["__main__"] if module_name == "__main__" else importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError, KeyError) as e:
        where = (
            "the notebook or script that defined it: run the cell that defines it again"
            if module_name == "__main__"
            else f"module {module_name}"
        )
        raise VaelabError(
            f"the run's model class {path} cannot be found ({e}); it comes from {where}, "
            f"or pass the model to fill: vaelab.load(RUN, model=YourModel(...))"
        ) from None
    return target


def describe(model) -> dict:
    """What config.json records to rebuild `model`: the import paths of its classes."""
    info = {"model_class": class_path(type(model)), "config_class": class_path(type(model.config))}
    if isinstance(model, VAE):
        info |= {"encoder_class": class_path(type(model.encoder)), "decoder_class": class_path(type(model.decoder))}
    return info


def build(info: dict, config_values: dict):
    """The model `describe` recorded, built anew from its classes and config (untrained)."""
    config_cls = import_class(info["config_class"])
    names = {f.name for f in fields(config_cls)}
    config = config_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in config_values.items() if k in names})
    try:
        if "encoder_class" in info:
            return VAE(config, import_class(info["encoder_class"])(config), import_class(info["decoder_class"])(config))
        return import_class(info["model_class"])(config)
    except TypeError as e:
        raise VaelabError(
            f"the run's model classes cannot be built from their config alone ({e}); pass the "
            f"model to fill: vaelab.load(RUN, model=YourModel(...))"
        ) from None


def check(model, data) -> None:
    """Refuse, saying what is wrong, a module that does not follow the model interface, tried on
    two real images of `data`."""
    c = getattr(model, "config", None)
    if not is_dataclass(c) or not all(hasattr(c, f) for f in CONFIG_FIELDS):
        raise VaelabError(
            "your model needs a `config`: a dataclass with input_shape, latent_dim and num_classes "
            "(vaelab.ModelConfig, or your own dataclass with those fields)"
        )
    for part in ("encoder", "decoder", "encode", "decode"):
        if not hasattr(model, part):
            raise VaelabError(
                f"your model has no `{part}`: join an encoder and a decoder with "
                f"vaelab.VAE(config, encoder, decoder), or give your module encoder, decoder, encode and decode"
            )
    if tuple(c.input_shape) != tuple(data.image_shape):
        raise VaelabError(
            f"your model's config.input_shape is {tuple(c.input_shape)}, but {data.name}'s images "
            f"are {tuple(data.image_shape)}: set input_shape={tuple(data.image_shape)}"
        )
    if c.num_classes and c.num_classes != data.num_classes:
        raise VaelabError(f"your model is conditional on {c.num_classes} classes, {data.name} has {data.num_classes}")
    device = next(model.parameters()).device
    x = data.test_x[:2].to(device).float() / 255
    y = data.test_y[:2].to(device) if c.num_classes else None
    with torch.no_grad():
        out = model.encode(x, y)
        if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
            raise VaelabError("your model's encode(x, y) must return (mu, logvar), two tensors")
        if any(tuple(t.shape) != (2, c.latent_dim) for t in out):
            raise VaelabError(
                f"your model's encode(x, y) must return mu and logvar of shape [batch, latent_dim] = "
                f"[2, {c.latent_dim}], got {[list(t.shape) for t in out]}"
            )
        logits = model.decode(out[0], y)
        if not isinstance(logits, torch.Tensor) or logits.shape != x.shape:
            shape = list(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise VaelabError(
                f"your model's decode(z, y) must return logits shaped like the images, {list(x.shape)}, got {shape}"
            )
        out = model(x, y, torch.zeros(2, c.latent_dim, device=device))
        if not (isinstance(out, tuple) and len(out) == 4):
            raise VaelabError(
                "your model's forward(x, y, eps) must return (logits, mu, logvar, z), as vaelab.VAE's does"
            )
