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
import os
import sys
from dataclasses import dataclass, fields, is_dataclass

import torch

from vaelab.errors import VaelabError
from vaelab.models.common import MAX_LATENT, MAX_PARAMS, VAE, check_data_fields

NAME = "custom"
CONFIG_FIELDS = ("input_shape", "latent_dim", "num_classes")


def class_path(cls) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def import_class(path: str, kind: type, trust_code: bool = False):
    """The class at "module:QualName", a subclass of `kind` (a dataclass for the config): from a
    notebook's (or script's) own namespace `__main__`, or a module this process has imported already.
    A module not yet imported runs its code when imported, and a run folder may come from anywhere
    (a file beside it named in its config.json would run), so that takes `trust_code`."""
    module_name, _, qualname = path.partition(":")
    if module_name not in sys.modules and not trust_code:
        raise VaelabError(
            f"the run's model class {path} is in module {module_name}, which this process has not imported: "
            f"opening the run would import it and so run its code ({module_name.replace('.', '/')}.py, wherever "
            f"Python finds it). If you trust the run folder and that module, allow it for this call: "
            f"vaelab.load(RUN, trust_code=True), or --trust-code on the command line; or import the module "
            f"yourself first, or pass the model to fill: vaelab.load(RUN, model=YourModel(...))"
        )
    try:
        target = sys.modules["__main__"] if module_name == "__main__" else import_trusted(module_name)
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
    wanted = is_dataclass(target) if kind is dataclass else isinstance(target, type) and issubclass(target, kind)
    if not wanted or not isinstance(target, type):
        what = "a dataclass" if kind is dataclass else f"a subclass of {kind.__module__}.{kind.__qualname__}"
        raise VaelabError(
            f"the run's config.json names {path} as a class of its model, but it is not {what}: "
            f"the file was edited or damaged; restore it from a copy"
        )
    return target


def import_trusted(module_name: str):
    """The module, imported as `python -m` would find it: the current folder is searched too (a
    console script's sys.path lacks it), where a notebook's or script's own modules usually live."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    return importlib.import_module(module_name)


def describe(model) -> dict:
    """What config.json records to rebuild `model`: the import paths of its classes."""
    info = {"model_class": class_path(type(model)), "config_class": class_path(type(model.config))}
    if isinstance(model, VAE):
        info |= {"encoder_class": class_path(type(model.encoder)), "decoder_class": class_path(type(model.decoder))}
    return info


def build(info: dict, config_values: dict, trust_code: bool = False):
    """The model `describe` recorded, built anew from its classes and config (untrained); see
    `import_class` for `trust_code`. The config's sizes are checked before any memory is taken."""
    config_cls = import_class(info["config_class"], dataclass, trust_code)
    names = {f.name for f in fields(config_cls)}
    try:
        config = config_cls(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in config_values.items() if k in names}
        )
    except TypeError as e:
        raise VaelabError(
            f"the run's model config does not fit {info['config_class']} ({e}); pass the model "
            f"to fill: vaelab.load(RUN, model=YourModel(...))"
        ) from None
    check_config(config)
    if "encoder_class" in info:
        parts = [import_class(info[k], torch.nn.Module, trust_code) for k in ("encoder_class", "decoder_class")]
        make = lambda: VAE(config, *(part(config) for part in parts))
    else:
        make = lambda: import_class(info["model_class"], torch.nn.Module, trust_code)(config)
    try:
        with torch.device("meta"):  # counted before any memory is taken
            check_size(make())
        return make()
    except TypeError as e:
        raise VaelabError(
            f"the run's model classes cannot be built from their config alone ({e}); pass the "
            f"model to fill: vaelab.load(RUN, model=YourModel(...))"
        ) from None


def check_size(model) -> None:
    size = sum(p.numel() for p in model.parameters())
    if size > MAX_PARAMS:
        raise VaelabError(
            f"your model has {size:,} parameters, over vaelab's limit of {MAX_PARAMS:,} "
            f"(vaelab.models.MAX_PARAMS): make it smaller"
        )


def check_config(c) -> None:
    """The config of your model: the fields vaelab reads, each in its range (the same limits as
    vaelab's own models: vaelab.models.common.MAX_SIDE, MAX_LATENT, vaelab.options.MAX_CLASSES)."""
    if not is_dataclass(c) or not all(hasattr(c, f) for f in CONFIG_FIELDS):
        raise VaelabError(
            "your model needs a `config`: a dataclass with input_shape, latent_dim and num_classes "
            "(vaelab.ModelConfig, or your own dataclass with those fields)"
        )
    check_data_fields(c)
    if type(c.latent_dim) is not int or not 1 <= c.latent_dim <= MAX_LATENT:
        raise VaelabError(
            f"your model's config.latent_dim must be a whole number from 1 to {MAX_LATENT} "
            f"(vaelab.models.common.MAX_LATENT), got {c.latent_dim!r}"
        )


def check(model, data) -> None:
    """Refuse, saying what is wrong, a module that does not follow the model interface, tried on
    two real images of `data`."""
    c = getattr(model, "config", None)
    check_config(c)
    check_size(model)
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
        for name, t in (("mu", out[0]), ("logvar", out[1]), ("logits", logits)):
            if isinstance(t, torch.Tensor) and not torch.isfinite(t).all():
                raise VaelabError(
                    f"your model's {name} holds NaN or infinite values for two real images of {data.name}, before "
                    f"any training, so no learning rate can help: check its forward pass (a log or a division of "
                    f"something that can be 0, an exp of something large; the encoder returns log σ², the "
                    f"decoder logits)"
                )
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
