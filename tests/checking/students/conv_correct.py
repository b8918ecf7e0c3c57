"""A correct convolutional VAE (encoder 62,794 and decoder 65,089 parameters), as a student writes it."""

import torch
import torch.nn.functional as F
from torch import nn


class Encoder(nn.Module):
    def __init__(self, latent_dim=2):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, stride=2, padding=1)  # 28 -> 14
        self.conv2 = nn.Conv2d(32, 64, 3, stride=2, padding=1)  # 14 -> 7
        self.dense = nn.Linear(7 * 7 * 64, 14)
        self.z_mean = nn.Linear(14, latent_dim)
        self.z_log_var = nn.Linear(14, latent_dim)

    def forward(self, x):
        h = F.relu(self.conv2(F.relu(self.conv1(x))))
        h = F.relu(self.dense(torch.flatten(h, 1)))
        return self.z_mean(h), self.z_log_var(h)


class Decoder(nn.Module):
    def __init__(self, latent_dim=2):
        super().__init__()
        self.dense = nn.Linear(latent_dim, 7 * 7 * 64)
        self.up1 = nn.ConvTranspose2d(64, 64, 3, stride=2, padding=1, output_padding=1)  # 7 -> 14
        self.up2 = nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1)  # 14 -> 28
        self.out = nn.ConvTranspose2d(32, 1, 3, stride=1, padding=1)

    def forward(self, z):
        h = F.relu(self.dense(z)).view(-1, 64, 7, 7)
        return self.out(F.relu(self.up2(F.relu(self.up1(h)))))


def reparameterize(mu, logvar):
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def kl_divergence(mu, logvar):
    return torch.mean(-0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1))


def reconstruction_loss(x, x_hat):
    return F.binary_cross_entropy_with_logits(x_hat, x, reduction="none").sum(dim=(1, 2, 3)).mean()
