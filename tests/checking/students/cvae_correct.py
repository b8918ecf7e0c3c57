"""A correct conditional convolutional VAE: the one-hot label joins the encoder after the first
convolution (a Dense from c to 14x14x32, added) and the decoder's Dense reads [z, c]."""

import torch
import torch.nn.functional as F
from torch import nn


class Encoder(nn.Module):
    def __init__(self, latent_dim=2, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, stride=2, padding=1)
        self.label = nn.Linear(num_classes, 32 * 14 * 14)
        self.conv2 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.dense = nn.Linear(7 * 7 * 64, 14)
        self.mu = nn.Linear(14, latent_dim)
        self.logvar = nn.Linear(14, latent_dim)

    def forward(self, x, c):
        h = F.relu(self.conv1(x)) + self.label(c).view(-1, 32, 14, 14)
        h = F.relu(self.conv2(h))
        h = F.relu(self.dense(h.flatten(1)))
        return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
    def __init__(self, latent_dim=2, num_classes=10):
        super().__init__()
        self.dense = nn.Linear(latent_dim + num_classes, 7 * 7 * 64)
        self.up1 = nn.ConvTranspose2d(64, 64, 3, stride=2, padding=1, output_padding=1)
        self.up2 = nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1)
        self.out = nn.ConvTranspose2d(32, 1, 3, padding=1)

    def forward(self, z, c):
        h = F.relu(self.dense(torch.cat([z, c], dim=1))).view(-1, 64, 7, 7)
        return self.out(F.relu(self.up2(F.relu(self.up1(h)))))


def reparameterize(mu, logvar):
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def kl_divergence(mu, logvar):
    return -0.5 * torch.sum(1 + logvar - mu**2 - torch.exp(logvar)) / mu.shape[0]


def reconstruction_loss(x, x_hat):
    return F.binary_cross_entropy_with_logits(x_hat, x, reduction="sum") / x.shape[0]
