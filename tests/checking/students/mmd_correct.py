"""A correct squared MMD with InfoVAE's Gaussian kernel exp(-|a - b|^2 / dim)."""

import torch


def kernel(a, b):
    dim = a.shape[1]
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return torch.exp(-d2 / dim)


def mmd(a, b):
    return kernel(a, a).mean() + kernel(b, b).mean() - 2 * kernel(a, b).mean()
