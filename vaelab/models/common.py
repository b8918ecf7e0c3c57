"""What every model shares: the interface the rest of vaelab relies on, the VAE that joins an
encoder and a decoder, posterior sampling and label encoding.

The model interface. Everything above the models (training, evaluation, figures, the explorer)
uses only this, so any encoder and decoder that follow it work everywhere a built-in model does:

    model.config             a frozen dataclass with at least input_shape (C, H, W), latent_dim
                             and num_classes (0: unconditional; > 0: the label is an input)
    model.encode(x, y=None)  -> (mu, logvar), each [B, latent_dim], the parameters of q(z|x[,y]);
                             x float [B, C, H, W] in [0, 1], y int64 [B] class indices or None
                             (built-in models also take float label rows [B, num_classes])
    model.decode(z, y=None)  -> logits [B, C, H, W] of p(x|z[,y]) (sigmoid gives the image)
    model(x, y=None, eps=None) -> (logits, mu, logvar, z), z one reparameterised sample
    model.encoder, model.decoder   the two halves as modules (parameter counts, layer tables);
                             the encoder's two heads are named `mu` and `logvar`

A model returns distribution parameters and logits, never a loss (vaelab/losses.py has those).
"""

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from vaelab.errors import VaelabError
from vaelab.options import MAX_CLASSES

MAX_SIDE = 1024  # pixels of an image side a model is built for
MAX_LATENT = 4096  # dimensions of z: the largest latent a model is built with
MAX_PARAMS = 100_000_000  # weights, gradients and Adam's two moments: 1.6 GB in float32


@dataclass(frozen=True)
class ModelConfig:
    """The least config a model needs; your own model's config may be this or any dataclass with
    these fields (and more)."""

    input_shape: tuple[int, int, int] = (1, 28, 28)  # (C, H, W) of the images
    latent_dim: int = 2
    num_classes: int = 0  # > 0: conditional on the label


class Model(Protocol):
    """The model interface above, for type checkers and readers."""

    config: object
    encoder: nn.Module
    decoder: nn.Module

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]: ...

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor: ...


class VAE(nn.Module):
    """An encoder x[, y] -> (mu, logvar) and a decoder z[, y] -> logits joined by the
    reparameterisation: the one model class every family builds."""

    def __init__(self, config, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.decoder = decoder

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None):
        return self.encoder(x, y)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(z, y)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, eps: torch.Tensor | None = None):
        """(logits, mu, logvar, z), with z one reparameterised sample of q(z|x[,y]) (noise eps)."""
        mu, logvar = self.encoder(x, y)
        z = reparameterize(mu, logvar, eps)
        return self.decoder(z, y), mu, logvar, z


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
    """z = mu + eps * exp(logvar / 2), eps ~ N(0, I) (Kingma & Welling 2014, sec. 2.4).

    eps, when not given, comes from torch's global generator, which `torch.manual_seed` seeds
    and CUDA graphs can capture safely. Training passes it in (see vaelab/training/distributed.py).
    """
    if eps is None:
        eps = torch.randn_like(mu)
    return mu + eps * torch.exp(0.5 * logvar)


def one_hot(y: torch.Tensor | None, num_classes: int, model: str) -> torch.Tensor:
    """Float one-hot rows for the labels of a conditional model. Float rows [B, num_classes] pass
    as they are: a mix of two labels is how a CVAE's walk morphs from one class to another."""
    if y is None:
        raise VaelabError(
            f"model '{model}' is conditional and needs the labels: call it as model(x, y) "
            f"with y an int64 tensor of class indices in [0, {num_classes})"
        )
    if y.is_floating_point() and y.dim() == 2:
        return y
    return F.one_hot(y, num_classes).float()


def check_data_fields(config) -> None:
    """The fields a model config takes from the data: input_shape (C, H, W) and num_classes."""
    shape, k = config.input_shape, config.num_classes
    if not (
        isinstance(shape, tuple)
        and len(shape) == 3
        and all(type(v) is int for v in shape)
        and 1 <= shape[0] <= 4
        and all(1 <= v <= MAX_SIDE for v in shape[1:])
    ):
        raise VaelabError(
            f"input_shape must be (C, H, W) with 1 to 4 channels and sides of 1 to {MAX_SIDE} "
            f"pixels (vaelab.models.common.MAX_SIDE), got {shape!r}"
        )
    if type(k) is not int or not 0 <= k <= MAX_CLASSES:
        raise VaelabError(
            f"num_classes must be a whole number from 0 to {MAX_CLASSES} (vaelab.options.MAX_CLASSES), got {k!r}"
        )


def init_like_keras(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases, as in the Keras models the assignments use. The
    encoders call it from their init_weights (the conv encoder then raises its Dense layer's bias,
    vaelab/models/conv.py); the decoder keeps PyTorch's default (weights and biases
    uniform in +-1/sqrt(fan_in)).

    Encoder: from PyTorch's default the conv model's 14-unit ReLU layer dies more often in the
    first Adam steps, and with it the latent code (KL -> 0). Measured (conv, mnist-sample, batch
    32, 2 epochs, 8 seeds, no lr warm-up): PyTorch's default everywhere, 1 collapsed and 1 more
    ended with KL < 0.2; Glorot on the encoder, none (and none of 8 on Fashion-MNIST at batch 128).

    Decoder: its first layer reads z, two numbers of about unit size. Zero biases put every ReLU
    unit's kink through z = 0, and Glorot's weights are small there (+-0.11 for 2 -> 512, +-0.04
    for 2 -> 3,136), so the decoder starts out telling codes apart by little but their direction
    and Adam needs hundreds of steps to move the biases out. Measured (mlp, Fashion-MNIST, test
    -ELBO after 2 epochs, with the 100-step lr warm-up of the time, 3 seeds): Glorot everywhere
    276.9 nats; PyTorch's default on that one layer 272.0, on its biases alone 273.3, on any other
    layer instead no gain. Now (no warm-up, 6 seeds): 271.6 +- 0.8; a plain PyTorch loop 271.8 +- 0.4.
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
