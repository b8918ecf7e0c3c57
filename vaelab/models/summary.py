"""Layer table of a model: each layer's output shape and parameter count, encoder and decoder."""

import torch
from torch import nn

from vaelab.models import count_params

SAMPLING = "sample μ+σ·ε"  # the reparameterisation between the two parts (Kingma & Welling 2014, eq. 10)


def layer_rows(model: nn.Module) -> list[dict]:
    """One row per layer, in call order: part, layer, kind, output shape, params; reshapes (Flatten,
    Unflatten) included, and between encoder and decoder the sampling of z = mu + sigma * eps.

    >>> from vaelab.models import build_model, make_config
    >>> [r["kind"] for r in layer_rows(build_model("mlp", make_config("mlp", (1, 28, 28), 10)))][:2]
    ['Flatten', 'Linear']
    """
    rows: list[dict] = []
    c = model.config
    x = torch.zeros(1, *c.input_shape)
    y = torch.zeros(1, dtype=torch.long) if c.num_classes else None
    for part, module, inputs in (
        ("encoder", model.encoder, (x, y)),
        ("decoder", model.decoder, (torch.zeros(1, c.latent_dim), y)),
    ):
        hooks = [
            layer.register_forward_hook(_recorder(rows, part, name))
            for name, layer in module.named_modules()
            if not list(layer.children())
        ]
        with torch.no_grad():
            module(*inputs)
        for hook in hooks:
            hook.remove()
        if part == "encoder":
            rows.append(
                {"part": "sample", "layer": "z", "kind": SAMPLING, "output_shape": (c.latent_dim,), "params": 0}
            )
    return rows


def _recorder(rows: list, part: str, name: str):
    def hook(layer, _inputs, output):
        rows.append(
            {
                "part": part,
                "layer": name,
                "kind": type(layer).__name__,
                "output_shape": tuple(output.shape[1:]),
                "params": count_params(layer),
            }
        )

    return hook


def format_summary(name: str, model: nn.Module) -> str:
    rows = layer_rows(model)
    c = model.config
    lines = [
        f"model {name}: input {'x'.join(map(str, c.input_shape))}, latent {c.latent_dim}"
        + (f", {c.num_classes} classes" if c.num_classes else "")
    ]
    header = f"{'part':<8} {'layer':<14} {'kind':<16} {'output shape':<16} {'params':>10}"
    lines += [header, "-" * len(header)]
    for r in rows:
        shape = "x".join(map(str, r["output_shape"]))
        lines.append(f"{r['part']:<8} {r['layer']:<14} {r['kind']:<16} {shape:<16} {r['params']:>10,}")
    lines.append("-" * len(header))
    for part in ("encoder", "decoder"):
        lines.append(f"{part} parameters: {count_params(getattr(model, part)):,}")
    lines.append(f"total parameters: {count_params(model):,}")
    return "\n".join(lines)
