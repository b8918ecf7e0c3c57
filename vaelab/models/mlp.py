"""Fully connected VAE (`mlp`), its conditional version (`cvae-mlp`) and `mlp-iwae`.

Encoder: x flattened (concatenated with the one-hot label when conditional) -> `hidden_layers`
Dense layers -> two heads, mu and logvar. Decoder: z (with the label) -> `hidden_layers` Dense
layers -> Dense pixels -> Bernoulli logits. Defaults are the exercises' model: 784 -> 512 ReLU -> 2.
`mlp-iwae` is the one-stochastic-layer model of Burda et al. 2015: two layers of 200 tanh units
each side and latent 50.
"""

from dataclasses import dataclass, field
from itertools import pairwise
from math import prod

import torch
from torch import nn

from vaelab.models.common import MAX_LATENT, check_data_fields, init_like_keras, one_hot
from vaelab.options import check


@dataclass(frozen=True)
class MLPConfig:
    input_shape: tuple[int, int, int] = (1, 28, 28)  # (C, H, W), set from the data set
    num_classes: int = 0  # > 0 makes the model conditional on the label
    latent_dim: int = field(default=2, metadata={"help": "size of z", "min": 1, "cap": MAX_LATENT})
    hidden_dim: int = field(default=512, metadata={"help": "width of the hidden Dense layers", "min": 1, "cap": 16384})
    hidden_layers: int = field(default=1, metadata={"help": "hidden Dense layers on each side", "min": 1, "cap": 16})
    activation: str = field(
        default="relu", metadata={"help": "activation of the hidden layers", "choices": ("relu", "tanh")}
    )

    def __post_init__(self):
        check(self)
        check_data_fields(self)


def _stack(width_in: int, c: MLPConfig) -> nn.Sequential:
    """hidden_layers x (Dense hidden_dim + activation)."""
    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[c.activation]
    widths = [width_in] + [c.hidden_dim] * c.hidden_layers
    return nn.Sequential(*(m for a, b in pairwise(widths) for m in (nn.Linear(a, b), act())))


def _with_label(h: torch.Tensor, y: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    if not num_classes:
        return h
    return torch.cat([h, one_hot(y, num_classes, "cvae-mlp")], dim=1)


class MLPEncoder(nn.Module):
    def __init__(self, c: MLPConfig):
        super().__init__()
        self.num_classes = c.num_classes
        self.flatten = nn.Flatten()  # a module, not x.flatten(1): the layer table and diagram show it
        self.hidden = _stack(prod(c.input_shape) + c.num_classes, c)
        self.mu = nn.Linear(c.hidden_dim, c.latent_dim)
        self.logvar = nn.Linear(c.hidden_dim, c.latent_dim)

    def init_weights(self) -> None:
        init_like_keras(self)  # Glorot, zero biases: the MLP needs nothing more (bench/README.md)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        h = _with_label(self.flatten(x), y, self.num_classes)  # [B, C*H*W (+ classes)]
        h = self.hidden(h)  # [B, hidden]
        return self.mu(h), self.logvar(h)  # [B, latent] each


class MLPDecoder(nn.Module):
    def __init__(self, c: MLPConfig):
        super().__init__()
        self.num_classes, self.output_shape = c.num_classes, c.input_shape
        self.hidden = _stack(c.latent_dim + c.num_classes, c)
        self.out = nn.Linear(c.hidden_dim, prod(c.input_shape))
        self.reshape = nn.Unflatten(1, c.input_shape)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.hidden(_with_label(z, y, self.num_classes))  # [B, hidden]
        return self.reshape(self.out(h))  # [B, C, H, W] logits
