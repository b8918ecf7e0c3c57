"""A student's Encoder and Decoder: built, called the ways the exercises write them, and compared
layer by layer with the exercise's architecture (vaelab's model of the same name: `vaelab summary`).

A student's encoder may take images [B, 1, 28, 28] or flat rows [B, 784], a conditional one the label
as one-hot rows or as class indices; a decoder may return logits or probabilities (a sigmoid at
its end), as an image or flat. `Student` finds which, once, and then calls them alike.
"""

from math import prod

import torch
import torch.nn.functional as F
from torch import nn

from vaelab.checking.results import Check
from vaelab.checking.training import bce_logits, bce_probabilities

SHAPE = (1, 28, 28)
CLASSES = 10


class Student:
    """The student's two halves, called the way they answered to: encode(x, y) and decode(z, y) with
    x [B, 1, 28, 28] floats and y class indices; decode returns the decoder's own output."""

    def __init__(self, encoder, decoder, latent_dim: int, conditional: bool):
        self.encoder, self.decoder = encoder, decoder
        self.latent_dim, self.conditional = latent_dim, conditional
        self.flat_input = self.label_form = self.output = None

    def _args(self, first, y, label_form):
        if not self.conditional:
            return (first,)
        return (first, F.one_hot(y, CLASSES).float() if label_form == "one-hot" else y)

    def encode(self, x, y=None):
        x = x.flatten(1) if self.flat_input else x
        return self.encoder(*self._args(x, y, self.label_form))

    def decode(self, z, y=None):
        return self.decoder(*self._args(z, y, self.label_form))

    def parameters(self):
        return [*self.encoder.parameters(), *self.decoder.parameters()]

    def bce(self, out, x):
        return bce_probabilities(out, x) if self.output == "probabilities" else bce_logits(out, x)

    def image(self, out):
        return out if self.output == "probabilities" else torch.sigmoid(out)


KNOWN_ARGUMENTS = {  # constructor argument names students use, and the exercise's value for each
    "latent": ("latent_dim", "z_dim", "latent_size", "latent_dims", "latent", "zdim", "d"),
    "classes": ("num_classes", "n_classes", "classes", "label_dim", "y_dim", "c_dim"),
    "pixels": ("input_dim", "x_dim", "input_size", "in_features", "image_dim", "output_dim", "out_dim"),
    "hidden": ("hidden_dim", "hidden_size", "hidden", "h_dim", "hidden_units"),
}


def build(piece: str, obj, latent_dim: int, conditional: bool, hidden: int | None = None):
    """(the module, how it was built) or (None, why not): a module as given, or the class built as
    Class(), Class(latent_dim=D), Class(D) (with num_classes for a conditional exercise), or with its
    arguments filled by name (latent_dim, z_dim, input_dim, hidden_dim, num_classes, ...)."""
    if isinstance(obj, nn.Module):
        return obj, "as given"
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        return None, f"{piece} is a {type(obj).__name__}, not a torch.nn.Module class"
    tries = [((), {}), ((), {"latent_dim": latent_dim}), ((latent_dim,), {})]
    if conditional:
        tries += [((), {"latent_dim": latent_dim, "num_classes": CLASSES}), ((latent_dim, CLASSES), {})]
    named = _by_name(obj, {"latent": latent_dim, "classes": CLASSES, "pixels": prod(SHAPE), "hidden": hidden})
    if named is not None:
        tries.append(((), named))
    errors = []
    for args, kwargs in tries:
        try:
            return obj(*args, **kwargs), _call_text(piece, args, kwargs)
        except Exception as e:  # the student's constructor
            errors.append(f"{_call_text(piece, args, kwargs)}: {type(e).__name__}: {e}")
    return None, f"{piece} could not be built; tried " + "; ".join(errors)


def _by_name(cls, values: dict) -> dict | None:
    """The constructor's required arguments filled from KNOWN_ARGUMENTS, or None when one is unknown."""
    import inspect

    try:
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    except (TypeError, ValueError):
        return None
    filled = {}
    for p in parameters:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        kind = next((k for k, names in KNOWN_ARGUMENTS.items() if p.name.lower() in names), None)
        if kind is not None and values.get(kind) is not None:
            filled[p.name] = values[kind]
        elif p.default is p.empty:
            return None
    return filled


def _call_text(piece, args, kwargs) -> str:
    return f"{piece}({', '.join([*map(str, args), *(f'{k}={v}' for k, v in kwargs.items())])})"


def check_encoder(student: Student, batch: int = 64) -> list[Check]:
    """Find how the encoder is called: it returns (mu, logvar), each [B, latent_dim]; log σ² goes negative."""
    g = torch.Generator().manual_seed(5)
    x, y = torch.rand(batch, *SHAPE, generator=g), torch.arange(batch) % CLASSES
    problems = []
    for flat in (False, True):
        for label_form in ("one-hot", "index") if student.conditional else (None,):
            student.flat_input, student.label_form = flat, label_form
            try:
                with torch.no_grad():
                    out = student.encode(x, y)
            except Exception as e:  # the student's forward
                problems.append(f"{type(e).__name__}: {e}")
                continue
            shape = [batch, student.latent_dim]
            if not (isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
                what = f"{len(out)} values" if isinstance(out, (tuple, list)) else type(out).__name__
                return [Check("encoder.interface", "fail", f"Encoder returns {what}; it must return (mu, logvar)")]
            if any(list(t.shape) != shape for t in out):
                got = [list(t.shape) for t in out]
                return [Check("encoder.interface", "fail", f"Encoder returns shapes {got}; mu and logvar are {shape}")]
            layout = ("flat rows [B, 784]" if flat else "images [B, 1, 28, 28]") + (
                f", the label as {label_form}" if label_form else ""
            )
            checks = [Check("encoder.interface", "pass", f"takes {layout}, returns (mu, logvar) of shape {shape}")]
            return checks + [_logvar_check(student, x, y)]
    return [Check("encoder.interface", "error", f"Encoder cannot be called on a batch of images: {problems[-1]}")]


POSITIVE_ENDS = ("Exp", "Softplus", "Relu", "Abs", "Sigmoid", "Pow", "Sqrt", "Elu", "Clamp")  # autograd's names


def _logvar_check(student: Student, x, y) -> Check:
    """log σ² can be any real number: an encoder whose second output is never negative because it ends
    in an exp, softplus, ReLU, ... returns σ (or σ²). Judged by the last operation, as autograd
    records it, and the values: a linear head at its initial weights may by chance be positive."""
    with torch.enable_grad():
        logvar = student.encode(x, y)[1]
    last = type(logvar.grad_fn).__name__ if logvar.grad_fn is not None else ""
    if (logvar >= 0).all() and last.startswith(POSITIVE_ENDS):
        return Check(
            "encoder.logvar",
            "fail",
            f"the encoder outputs σ, not log σ²: its second output ends in {last.removesuffix('Backward0')} and is "
            "never negative; return the linear layer's output as log σ², which can be any real number",
        )
    return Check("encoder.logvar", "pass", "the second output is a real number, as log σ² is")


def check_decoder(student: Student, batch: int = 64) -> list[Check]:
    g = torch.Generator().manual_seed(6)
    z, y = torch.randn(batch, student.latent_dim, generator=g) * 2, torch.arange(batch) % CLASSES
    if student.label_form is None and student.conditional:
        student.label_form = "one-hot"
    try:
        with torch.no_grad():
            out = student.decode(z, y)
    except Exception as e:  # the student's forward
        return [Check("decoder.interface", "error", f"Decoder cannot be called on z [B, latent_dim]: {e}")]
    if not isinstance(out, torch.Tensor) or out.numel() != batch * prod(SHAPE):
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        return [
            Check("decoder.interface", "fail", f"Decoder returns {got}; it must return [B, 1, 28, 28] (or [B, 784])")
        ]
    student.output = "probabilities" if bool(((out >= 0) & (out <= 1)).all()) else "logits"
    ends = "ends in a sigmoid: returns probabilities" if student.output == "probabilities" else "returns logits"
    return [Check("decoder.interface", "pass", f"returns {list(out.shape)}; {ends}")]


# ---- architecture ----------------------------------------------------------------------------------


def layers(module: nn.Module, call) -> list[tuple[str, int, tuple]]:
    """(kind, parameters, output shape) of each layer with parameters, in the order they run."""
    rows = []
    hooks = [
        m.register_forward_hook(lambda m, _i, o: rows.append((type(m).__name__, _count(m), tuple(o.shape[1:]))))
        for m in module.modules()
        if not list(m.children()) and _count(m)
    ]
    try:
        with torch.no_grad():
            call()
    finally:
        for h in hooks:
            h.remove()
    return rows


def _count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters(recurse=False))


def check_architecture(part: str, student: Student, model_name: str) -> Check:
    """The student's encoder or decoder against vaelab's `model_name`, layer by layer."""
    from vaelab.models import build_model, make_config

    reference = build_model(model_name, make_config(model_name, SHAPE, CLASSES))
    y = torch.zeros(2, dtype=torch.long)  # two images: a batch norm in training mode needs more than one
    label = y if reference.config.num_classes else None
    x, z = torch.zeros(2, *SHAPE), torch.zeros(2, student.latent_dim)
    try:
        if part == "encoder":
            expected = layers(reference.encoder, lambda: reference.encode(x, label))
            found = layers(student.encoder, lambda: student.encode(x, y))
        else:
            expected = layers(reference.decoder, lambda: reference.decode(z, label))
            found = layers(student.decoder, lambda: student.decode(z, y))
    except Exception as e:  # the student's forward, on a batch of zeros
        return Check(f"{part}.architecture", "error", f"{part.capitalize()} fails on a batch of zeros: {e}")
    total_e, total_f = sum(r[1] for r in expected), sum(r[1] for r in found)
    name = part.capitalize()
    if sorted(r[:2] for r in found) == sorted(r[:2] for r in expected):
        return Check(
            f"{part}.architecture", "pass", f"{name}: {len(found)} layers, {total_f:,} parameters as in {model_name}"
        )
    for i, (e, f) in enumerate(zip(expected, found, strict=False)):
        if e[:2] != f[:2]:
            shape = "x".join(map(str, e[2]))
            return Check(
                f"{part}.architecture",
                "fail",
                f"{name} has {total_f:,} parameters, {model_name}'s {total_e:,}: its layer {i + 1} is {f[0]} with "
                f"{f[1]:,} parameters, the exercise's is {e[0]} with {e[1]:,} (output {shape}); "
                f"see `vaelab summary {model_name}`",
            )
    return Check(
        f"{part}.architecture",
        "fail",
        f"{name} has {len(found)} layers with parameters ({total_f:,} parameters), {model_name} has {len(expected)} "
        f"({total_e:,}); see `vaelab summary {model_name}`",
    )
