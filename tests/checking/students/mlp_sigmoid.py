"""A correct fully connected VAE in the other common style: flat rows in and out, the decoder ends in
a sigmoid, the loss is the binary cross-entropy of probabilities."""

import torch
from torch import nn


class Encoder(nn.Module):
    def __init__(self, latent_dim=2, hidden=512):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(784, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, latent_dim)
        self.logvar = nn.Linear(hidden, latent_dim)

    def forward(self, x):
        h = self.body(x)
        return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
    def __init__(self, latent_dim=2, hidden=512):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, 784), nn.Sigmoid())

    def forward(self, z):
        return self.body(z)


def reparameterize(mu, logvar):
    return mu + torch.randn_like(mu) * torch.exp(logvar / 2)


def kl_divergence(mu, logvar):
    kl = -0.5 * (1 + logvar - mu**2 - torch.exp(logvar))
    return kl.sum(dim=1).mean()


def reconstruction_loss(x, x_hat):
    x = x.view(-1, 784)
    return nn.functional.binary_cross_entropy(x_hat, x, reduction="none").sum(dim=1).mean()
