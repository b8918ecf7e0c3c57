"""Planted mistake: the log-normal density lacks its log 2π term."""

import torch


def log_normal_pdf(sample, mean, logvar, raxis=1):
    return torch.sum(-0.5 * ((sample - mean) ** 2.0 * torch.exp(-logvar) + logvar), dim=raxis)
