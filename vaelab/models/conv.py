"""Convolutional VAE (`conv`) and its conditional version (`cvae`).

Encoder (the exercises' model; at 28x28x1, latent 2: 62,794 parameters): 3x3 convolutions with stride 2 and
"same" padding, ReLU, 1 -> 32 -> 64 channels (28 -> 14 -> 7), Flatten, Dense `dense_dim` ReLU,
then the mu and logvar heads. Decoder (65,089): Dense to 7x7x64 ReLU, transposed 3x3 convolutions
with stride 2 back up (64 -> 64 -> 32 channels, 7 -> 14 -> 28), and a last stride-1 transposed
convolution to the image channels, giving logits. The second published variant (`conv-small`:
Dense 16, decoder 28,161) has one transposed convolution fewer (64 -> 32) and a stride-2 last one.

The conditional version feeds the one-hot label c to both halves: in the encoder a Dense from c to
the first convolution's output shape is added to (or concatenated with) that output; in the
decoder the first Dense reads concat[z, c], which equals Dense(z) + Dense(c).
Shapes follow the input: each stride-2 layer halves H and W, so H and W must be divisible by
2 ** len(channels).
"""

from dataclasses import dataclass, field
from itertools import pairwise
from math import prod

import torch
from torch import nn

from vaelab.errors import VaelabError
from vaelab.models.common import MAX_LATENT, check_data_fields, init_like_keras, one_hot
from vaelab.options import check, named

DENSE_BIAS = 0.3  # the encoder's Dense ReLU layer starts with this bias: ConvEncoder.init_weights


@dataclass(frozen=True)
class ConvConfig:
    input_shape: tuple[int, int, int] = (1, 28, 28)  # (C, H, W), set from the data set
    num_classes: int = 0  # > 0 makes the model conditional on the label
    latent_dim: int = field(default=2, metadata={"help": "size of z", "min": 1, "cap": MAX_LATENT})
    dense_dim: int = field(
        default=14,
        metadata={
            "help": "width of the encoder's Dense layer (14, or 16 in a second published variant)",
            "min": 1,
            "cap": 16384,
        },
    )
    channels: tuple[int, ...] = field(
        default=(32, 64),
        metadata={"help": "channels of the stride-2 convolutions, comma separated", "min": 1, "cap": 1024},
    )
    label_merge: str = field(
        default="add", metadata={"help": "how the label joins the encoder", "choices": ("add", "concat")}
    )
    last_stride: int = field(
        default=1,
        metadata={
            "help": "stride of the decoder's last transposed convolution: 1 (after "
            "one transposed convolution per encoder convolution) or 2 (one "
            "fewer before it: the second published variant)",
            "choices": (1, 2),
        },
    )

    def __post_init__(self):
        check(self)
        check_data_fields(self)
        if not 1 <= len(self.channels) <= 6:
            raise VaelabError(
                f"{named('channels')} takes 1 to 6 values (one per stride-2 convolution), got {len(self.channels)}"
            )
        _, height, width = self.input_shape
        step = 2 ** len(self.channels)
        if height % step or width % step:
            raise VaelabError(
                f"the conv model halves the image {len(self.channels)} times, so height and width "
                f"must be multiples of {step}; got {height}x{width}. Use images of a size such as "
                f"{step * (height // step or 1)}x{step * (width // step or 1)}, or fewer --channels"
            )

    @property
    def bottom_shape(self) -> tuple[int, int, int]:
        """Shape after the last stride-2 convolution: (channels[-1], H / 2^k, W / 2^k)."""
        _, height, width = self.input_shape
        step = 2 ** len(self.channels)
        return self.channels[-1], height // step, width // step


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=2, padding=1)  # halves H, W ("same")


def _deconv(cin: int, cout: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)  # doubles H, W


class ConvEncoder(nn.Module):
    def __init__(self, c: ConvConfig):
        super().__init__()
        self.num_classes, self.label_merge = c.num_classes, c.label_merge
        first = c.channels[0]
        _, height, width = c.input_shape
        self.first_shape = (first, height // 2, width // 2)
        concat = c.num_classes and c.label_merge == "concat"
        ins = [first * 2 if concat else first, *c.channels[1:-1]]
        self.conv_first = _conv(c.input_shape[0], first)
        self.convs = nn.ModuleList(_conv(cin, cout) for cin, cout in zip(ins, c.channels[1:], strict=True))
        if c.num_classes:
            self.label = nn.Linear(c.num_classes, prod(self.first_shape))
        self.flatten = nn.Flatten()  # a module, not h.flatten(1): the layer table and diagram show it
        self.dense = nn.Linear(prod(c.bottom_shape), c.dense_dim)
        self.mu = nn.Linear(c.dense_dim, c.latent_dim)
        self.logvar = nn.Linear(c.dense_dim, c.latent_dim)

    def init_weights(self) -> None:
        """Glorot with zero biases (init_like_keras), then DENSE_BIAS on the Dense ReLU layer.

        With zero biases, half of the 14 units start below their kink for a given image and Adam's
        first steps push most of them there for every image: after 2 epochs on Fashion-MNIST
        (batch 128, 3 seeds) only 4-6 of the 14 were alive, and the test -ELBO was 273.5 against a
        plain PyTorch loop's 271.3. A bias of 0.3 keeps 11-14 alive and reaches 270.5; 0.1 kept
        7-9 (271.6); 0.1 on every encoder ReLU layer did worse (278.3). Nor does the latent code
        collapse more: none of 8 seeds on mnist-sample at batch 32 (bench/README.md).
        """
        init_like_keras(self)
        nn.init.constant_(self.dense.bias, DENSE_BIAS)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        h = torch.relu(self.conv_first(x))  # [B, 32, H/2, W/2]
        if self.num_classes:
            c = self.label(one_hot(y, self.num_classes, "cvae")).view(-1, *self.first_shape)
            h = h + c if self.label_merge == "add" else torch.cat([h, c], dim=1)
        for conv in self.convs:
            h = torch.relu(conv(h))  # [B, 64, H/4, W/4]
        h = torch.relu(self.dense(self.flatten(h)))  # [B, 64 * H/4 * W/4] -> [B, dense_dim]
        return self.mu(h), self.logvar(h)  # [B, latent] each


class ConvDecoder(nn.Module):
    def __init__(self, c: ConvConfig):
        super().__init__()
        self.num_classes, self.bottom_shape = c.num_classes, c.bottom_shape
        self.dense = nn.Linear(c.latent_dim + c.num_classes, prod(c.bottom_shape))
        self.reshape = nn.Unflatten(1, c.bottom_shape)  # a module, so the first deconvolution's input shows
        outs = list(reversed(c.channels))  # 64, 32
        if c.last_stride == 1:  # 64 -> 64 -> 32, then the image at stride 1
            self.deconvs = nn.ModuleList(_deconv(cin, cout) for cin, cout in zip([outs[0], *outs], outs, strict=False))
            self.out = nn.ConvTranspose2d(outs[-1], c.input_shape[0], 3, stride=1, padding=1)
        else:  # 64 -> 32, then the image at stride 2: every transposed convolution doubles H, W
            self.deconvs = nn.ModuleList(_deconv(cin, cout) for cin, cout in pairwise(outs))
            self.out = _deconv(outs[-1], c.input_shape[0])

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            z = torch.cat([z, one_hot(y, self.num_classes, "cvae")], dim=1)
        h = self.reshape(torch.relu(self.dense(z)))  # [B, 64, H/4, W/4]
        for deconv in self.deconvs:
            h = torch.relu(deconv(h))  # [B, 64, H/2, W/2] then [B, 32, H, W] (last_stride 2: [B, 32, H/2, W/2])
        return self.out(h)  # [B, C, H, W] logits
