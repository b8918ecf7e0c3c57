"""A correct fully connected VAE whose classes ask for their sizes, as many course notebooks write them."""

import torch
from torch import nn


class Encoder(nn.Module):
    def __init__(self, input_dim, hidden_dim, z_dim):
        super().__init__()
        self.linear = nn.Linear(input_dim, hidden_dim)
        self.mu = nn.Linear(hidden_dim, z_dim)
        self.var = nn.Linear(hidden_dim, z_dim)

    def forward(self, x):
        hidden = torch.relu(self.linear(x))
        return self.mu(hidden), self.var(hidden)


class Decoder(nn.Module):
    def __init__(self, z_dim, hidden_dim, output_dim):
        super().__init__()
        self.linear = nn.Linear(z_dim, hidden_dim)
        self.out = nn.Linear(hidden_dim, output_dim)

    def forward(self, z):
        return self.out(torch.relu(self.linear(z)))


def reparameterize(mu, logvar):
    std = torch.exp(logvar / 2)
    return mu + torch.randn_like(std) * std


def kl_divergence(mu, logvar):
    return (0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)).sum(-1).mean()


def reconstruction_loss(x, x_hat):
    return nn.functional.binary_cross_entropy_with_logits(x_hat, x.view(x.shape[0], -1), reduction="sum") / len(x)
