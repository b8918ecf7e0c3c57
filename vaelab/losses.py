"""Losses and estimators as pure functions of what the model returns.

Every `*_per_image` function returns one value per image, shape [B]; `vae_loss` averages over
the batch. Values are in nats.
"""
import math

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)
LIKELIHOODS = ("bernoulli", "gaussian")
KL_ESTIMATORS = ("analytic", "mc")
OBJECTIVES = ("elbo", "mmd")


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) for Bernoulli pixels, from logits (stable: no sigmoid, no clamp), summed per image."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def gaussian_nll(logits: torch.Tensor, x: torch.Tensor, std: float) -> torch.Tensor:
    """-log N(x; sigmoid(logits), std^2 I) summed per image; the mean stays in the pixel range [0, 1]."""
    logvar = torch.full_like(x, 2 * math.log(std))
    return -log_normal(x, torch.sigmoid(logits), logvar).flatten(1).sum(1)


def reconstruction_nll(logits, x, likelihood: str = "bernoulli", std: float = 0.1) -> torch.Tensor:
    if likelihood == "bernoulli":
        return bernoulli_nll(logits, x)
    if likelihood == "gaussian":
        return gaussian_nll(logits, x, std)
    raise ValueError(f"likelihood must be one of {LIKELIHOODS}, not {likelihood!r}")


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) = -1/2 sum_k (1 + logvar - mu^2 - exp(logvar)).

    Kingma & Welling 2014, Auto-Encoding Variational Bayes, appendix B. Summed over latent dims.
    """
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)


def log_normal(x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(x; mu, exp(logvar)) = -1/2 ((x-mu)^2 exp(-logvar) + logvar + log 2 pi)."""
    return -0.5 * ((x - mu).pow(2) * torch.exp(-logvar) + logvar + LOG_2PI)


def kl_monte_carlo(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Single-sample estimate log q(z|x) - log p(z), with z ~ q(z|x); unbiased for the KL."""
    log_q = log_normal(z, mu, logvar).sum(1)
    log_p = log_normal(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    return log_q - log_p


def rbf_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """k(a, b) = exp(-|a - b|^2 / dim), the Gaussian kernel with 2 sigma^2 = latent size."""
    return torch.exp(-torch.cdist(a, b).pow(2) / a.shape[1])


def mmd(z: torch.Tensor, prior_z: torch.Tensor) -> torch.Tensor:
    """Squared Maximum Mean Discrepancy between two samples (biased V-statistic, >= 0).

    Zhao, Song & Ermon 2019, InfoVAE, eq. 9: MMD = E k(z, z') + E k(p, p') - 2 E k(z, p).
    """
    return rbf_kernel(z, z).mean() + rbf_kernel(prior_z, prior_z).mean() - 2 * rbf_kernel(z, prior_z).mean()


def vae_loss(logits, x, mu, logvar, z, *, beta: float = 1.0, likelihood: str = "bernoulli",
             kl: str = "analytic", std: float = 0.1, objective: str = "elbo", mmd_weight: float = 1000.0):
    """(total, reconstruction, kl), each the batch mean in nats per image.

    total = reconstruction + beta * KL is the negative ELBO when beta = 1. With kl="mc" the KL is
    the single-sample Monte-Carlo estimate, so -total = log p(x|z) + log p(z) - log q(z|x).
    With objective="mmd" (InfoVAE) total = reconstruction + mmd_weight * MMD(z, z ~ N(0, I));
    the KL is still returned, to watch.
    """
    recon = reconstruction_nll(logits, x, likelihood, std).mean()
    if kl == "analytic":
        kl_term = kl_standard_normal(mu, logvar).mean()
    elif kl == "mc":
        kl_term = kl_monte_carlo(z, mu, logvar).mean()
    else:
        raise ValueError(f"kl must be one of {KL_ESTIMATORS}, not {kl!r}")
    if objective == "mmd":
        return recon + mmd_weight * mmd(z, torch.randn_like(z)), recon, kl_term
    return recon + beta * kl_term, recon, kl_term
