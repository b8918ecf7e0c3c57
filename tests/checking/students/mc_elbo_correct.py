"""A correct log-normal density, as the TensorFlow CVAE tutorial writes it (summed over axis 1)."""

import math

import torch


def log_normal_pdf(sample, mean, logvar, raxis=1):
    log2pi = math.log(2.0 * math.pi)
    return torch.sum(-0.5 * ((sample - mean) ** 2.0 * torch.exp(-logvar) + logvar + log2pi), dim=raxis)
