"""The importance-weighted bound and the ELBO as pure functions, and the binarised pixels they score.

The bound takes generic pieces, so the same code scores a VAE and a model whose likelihood is
known in closed form (tests/test_evaluate.py):

    log_likelihood(z) -> log p(x|z)   z [S, B, D] -> [S, B], one x per column b
    proposal.sample(S, generator)     -> z [S, B, D] from q(z|x)
    proposal.log_prob(z)              -> log q(z|x), [S, B]
    log_prior(z)                      -> log p(z), [S, B] (default N(0, I))

With K samples z_k ~ q(z|x) and log weights log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x),

    ELBO    = mean_k log w_k                     (one-sample Monte Carlo ELBO, averaged)
    L_K     = log (1/K) sum_k w_k                (Burda, Grosse & Salakhutdinov 2015,
                                                  "Importance Weighted Autoencoders", eq. 8)

L_K >= ELBO on the same samples (Jensen), L_1 is the ELBO, E[L_K] grows with K and tends to
log p(x) (Burda et al., Theorem 1). Weights are kept as logs and combined with logsumexp.
"""
import math
from dataclasses import dataclass

import torch

from vaelab.errors import VaelabError
from vaelab.losses import log_normal, reconstruction_nll

BINARIZE_MODES = ("none", "dynamic", "static")
STATIC_SEEDS = {"train": 2015, "test": 2016}  # the one fixed draw of static binarisation


# ---- binarised pixels ----------------------------------------------------------------------------

def fixed_binarization(x_uint8: torch.Tensor, seed: int) -> torch.Tensor:
    """One seeded Bernoulli draw of every pixel, P(1) = x / 255, as uint8 0 or 255.

    Drawn on the CPU from torch's seeded generator, so the draw is the same on every device.
    """
    u = torch.rand(x_uint8.shape, generator=torch.Generator().manual_seed(seed))
    return ((u * 255 < x_uint8.cpu().float()).to(torch.uint8) * 255).to(x_uint8.device)


def binarized_train_set(x_uint8: torch.Tensor, mode: str) -> torch.Tensor:
    """The training images for `mode`: static is its one fixed draw; the others are unchanged
    (dynamic draws afresh per batch with `binarize`)."""
    check_binarize(mode)
    return fixed_binarization(x_uint8, STATIC_SEEDS["train"]) if mode == "static" else x_uint8


def binarized_set(x_uint8: torch.Tensor, mode: str, split: str = "test", seed: int = 0) -> torch.Tensor:
    """A whole split, drawn once, for scoring: static is the split's fixed draw (the same for every
    run), dynamic one draw from `seed` (so a score repeats), none the grey pixels unchanged."""
    check_binarize(mode)
    if mode == "none":
        return x_uint8
    if mode == "static":
        return fixed_binarization(x_uint8, STATIC_SEEDS[split])
    return fixed_binarization(x_uint8, seed + (split == "train"))  # train and test draws differ


def binarize(x: torch.Tensor, mode: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """A batch of float pixels in [0, 1] as the model sees it: a fresh Bernoulli draw for dynamic,
    unchanged otherwise (static images were drawn once by `binarized_train_set`)."""
    return torch.bernoulli(x, generator=generator) if mode == "dynamic" else x


def check_binarize(mode: str) -> None:
    if mode not in BINARIZE_MODES:
        raise VaelabError(f"binarize must be one of {', '.join(BINARIZE_MODES)}, not {mode!r}")


# ---- proposals and weights -----------------------------------------------------------------------

@dataclass(frozen=True)
class DiagonalGaussian:
    """q(z|x) = N(mu, diag(exp(logvar))) for a batch of B images: mu, logvar [B, D]."""
    mu: torch.Tensor
    logvar: torch.Tensor

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """[n, B, D]; eps is drawn where the generator lives, then moved to mu's device."""
        where = generator.device if generator is not None else self.mu.device
        eps = torch.randn((n, *self.mu.shape), generator=generator, device=where, dtype=self.mu.dtype)
        return self.mu + eps.to(self.mu.device) * torch.exp(0.5 * self.logvar)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return log_normal(z, self.mu, self.logvar).sum(-1)  # [n, B]


def log_standard_normal(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dimension."""
    return log_normal(z, torch.zeros_like(z), torch.zeros_like(z)).sum(-1)


def log_weights(log_likelihood, proposal, num_samples: int, chunk: int | None = None,
                generator: torch.Generator | None = None, log_prior=log_standard_normal):
    """(log w, log p(x|z)), each [K, B], from K = num_samples draws of the proposal, drawn `chunk`
    at a time so that only chunk x B decoder inputs are in memory at once."""
    if num_samples < 1:
        raise VaelabError(f"the number of importance samples must be at least 1, got {num_samples}")
    chunk = chunk or num_samples
    log_w, log_px = [], []
    for start in range(0, num_samples, chunk):
        z = proposal.sample(min(chunk, num_samples - start), generator)  # [S, B, D]
        ll = log_likelihood(z)  # [S, B]
        log_w.append(ll + log_prior(z) - proposal.log_prob(z))
        log_px.append(ll)
    return torch.cat(log_w), torch.cat(log_px)


# ---- a VAE's pieces --------------------------------------------------------------------------------

def vae_log_likelihood(model, x, y, lik: dict):
    """log p(x|z) for z [S, B, D]: the decoder on all S x B codes at once, x [B, C, H, W];
    lik holds reconstruction_nll's likelihood and std."""
    def log_likelihood(z):
        s, b = z.shape[:2]
        logits = model.decode(z.flatten(0, 1), None if y is None else y.repeat(s))  # sample-major
        return -reconstruction_nll(logits, x.repeat(s, 1, 1, 1), **lik).view(s, b)
    return log_likelihood


@torch.no_grad()
def vae_log_weights(model, x, y, num_samples: int, lik: dict, generator=None, decode_batch: int = 2000):
    """(log w, log p(x|z)) [K, B] for float images x under the model's own q(z|x[,y]), with at most
    decode_batch decoder inputs per pass."""
    mu, logvar = model.encode(x, y)
    chunk = max(1, decode_batch // len(x))
    return log_weights(vae_log_likelihood(model, x, y, lik), DiagonalGaussian(mu, logvar), num_samples, chunk, generator)


# ---- bounds from the weights (per image, over dimension 0 = samples) -----------------------------

def iw_bound(log_w: torch.Tensor) -> torch.Tensor:
    """L_K = log (1/K) sum_k w_k (Burda et al. 2015, eq. 8), per image."""
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


def elbo(log_w: torch.Tensor) -> torch.Tensor:
    """The Monte Carlo ELBO, mean_k log w_k, per image: L_1 averaged over the K samples."""
    return log_w.mean(0)


def effective_sample_size(log_w: torch.Tensor) -> torch.Tensor:
    """(sum w)^2 / sum w^2, per image: K when the weights are equal, 1 when one dominates."""
    return torch.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0))


def iw_variance(log_w: torch.Tensor) -> torch.Tensor:
    """Monte Carlo variance of L_K per image, by the delta method:
    Var[log mean w] ~ Var[w] / (K E[w]^2) = 1/ESS - 1/K with the sample moments.
    0 when every weight is equal (q is the true posterior)."""
    return (1 / effective_sample_size(log_w) - 1 / log_w.shape[0]).clamp_min(0)


def summarize(per_image: torch.Tensor, variance: torch.Tensor | None = None) -> dict:
    """Mean over images with two standard errors: of the Monte Carlo estimate (from the per-image
    variances; the test images held fixed) and over the images (the spread of the test set)."""
    values = per_image.double()
    n = len(values)
    out = {"mean": values.mean().item(),
           "se_images": values.std().item() / math.sqrt(n) if n > 1 else None}
    if variance is not None:
        out["se_mc"] = math.sqrt(variance.double().sum().item()) / n
    return out
