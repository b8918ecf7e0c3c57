"""Losses and estimators as pure functions of what the model returns: every one vaelab uses.

Per-image functions return one value per image, shape [B]; the `Objective` averages over the batch.
Values are in nats. The training objective comes first, then the importance-weighted bound that
evaluation scores a trained model with.

The bound takes generic pieces, so the same code scores a VAE and a model whose likelihood is
known in closed form (tests/evaluation/test_evaluate.py):

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
import torch.nn.functional as F

from vaelab.errors import VaelabError

LOG_2PI = math.log(2 * math.pi)
LIKELIHOODS = ("bernoulli", "gaussian")
KL_ESTIMATORS = ("analytic", "mc")
OBJECTIVES = ("elbo", "mmd")
MMD_CODES = ("mean", "sample")  # what the MMD compares with N(0, I) draws: encoder means, or z ~ q(z|x)


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


def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu_k, exp(logvar_k)) || N(0, 1)) = -1/2 (1 + logvar_k - mu_k^2 - exp(logvar_k)) for
    each latent dimension k, [B, D] (Kingma & Welling 2014, Auto-Encoding Variational Bayes,
    appendix B)."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) = -1/2 sum_k (1 + logvar - mu^2 - exp(logvar)), summed
    over the latent dimensions: the KL is additive over independent dimensions."""
    return kl_per_dimension(mu, logvar).sum(1)


def log_normal(x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(x; mu, exp(logvar)) = -1/2 ((x-mu)^2 exp(-logvar) + logvar + log 2 pi)."""
    return -0.5 * ((x - mu).pow(2) * torch.exp(-logvar) + logvar + LOG_2PI)


def kl_monte_carlo(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Single-sample estimate log q(z|x) - log p(z), with z ~ q(z|x); unbiased for the KL."""
    log_q = log_normal(z, mu, logvar).sum(1)
    log_p = log_normal(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    return log_q - log_p


def rbf_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """k(a, b) = exp(-|a - b|^2 / dim), the Gaussian kernel with 2 sigma^2 = latent size.

    The squared distances are summed from the differences, as InfoVAE's reference code does
    (`compute_kernel`), not taken from `torch.cdist`: cdist computes |a|^2 + |b|^2 - 2 a.b for more
    than 25 rows, which cancels catastrophically when the codes bunch together (a collapsing run),
    and its square root has no gradient at 0. The differences are exact there, so the MMD's
    gradient is too, and a run batched with others (vaelab/training/batched.py) gets the gradient
    it gets alone."""
    return torch.exp(-(a[:, None, :] - b[None, :, :]).pow(2).sum(-1) / a.shape[1])


def mmd(z: torch.Tensor, prior_z: torch.Tensor) -> torch.Tensor:
    """Squared Maximum Mean Discrepancy between two samples (biased V-statistic, >= 0).

    Zhao, Song & Ermon 2019, InfoVAE, eq. 9: MMD = E k(z, z') + E k(p, p') - 2 E k(z, p).
    """
    return rbf_kernel(z, z).mean() + rbf_kernel(prior_z, prior_z).mean() - 2 * rbf_kernel(z, prior_z).mean()


def kl_estimate(mu, logvar, z, estimator: str = "analytic") -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per image: the closed form, or the single-sample estimate at z ~ q."""
    if estimator == "analytic":
        return kl_standard_normal(mu, logvar)
    if estimator == "mc":
        return kl_monte_carlo(z, mu, logvar)
    raise ValueError(f"kl must be one of {KL_ESTIMATORS}, not {estimator!r}")


COLLAPSED_KL = 0.05  # nats per image: below this the code tells the decoder next to nothing
# Every encoder mean at one point c = 0 scores MMD = 1 + E k(p, p') - 2 E k(0, p) against N(0, I)
# draws, = 1 + (1 + 4/D)^(-D/2) - 2 (1 + 2/D)^(-D/2) with rbf_kernel's bandwidth: 0.29 at D = 1, 0.33
# at D = 2, 0.40 as D grows. Half the smallest says the means barely moved off one point.
COLLAPSED_MMD = 0.15


TERM_TITLES = {"total": "total loss", "recon": "reconstruction", "kl": "KL", "mmd": "MMD (squared)"}
NATS = ("total", "recon", "kl")  # the terms measured in nats per image (the MMD has no unit)


@dataclass(frozen=True)
class Objective:
    """What training minimises, built once from the training settings: the terms a step computes
    (in a fixed order, so a step's output has one static shape), how they add up, and how to say so.

        elbo   total = recon + beta * KL          the negative ELBO when beta = 1 (Kingma & Welling
                                                  2014, eq. 10); beta > 1 is the beta-VAE
        mmd    total = recon + mmd_weight * MMD   InfoVAE (Zhao, Song & Ermon 2019, eq. 9 with the
                                                  MMD divergence); the KL is computed to watch

    The MMD compares the encoder means mu(x) with N(0, I) draws by default (mmd_codes="mean", the
    deterministic codes of Zhao et al.'s MMD-VAE). On sampled codes z ~ q(z|x) ("sample") the
    uninformative posterior q(z|x) = N(0, I) for every x is an exact minimiser: its z are prior draws.
    A fresh encoder starts there (mu near 0, log sigma^2 near 0), and at weight 1000 the MMD holds it
    there: conv on mnist-sample at batch 32 kept KL 0.0003, mu spread 1e-7 and reconstruction 208
    from epoch 1, the MMD at its batch-32 floor (0.042). On the means that state scores 0.35 (all
    codes at one point), so the MMD itself spreads the codes over the prior (bench/README.md).

    Every term is the batch mean, in nats per image (the MMD has no unit). Adding an objective is
    a name in OBJECTIVES and a branch in `terms`, `__call__` and `held_out` below.
    """

    name: str = "elbo"
    beta: float = 1.0
    mmd_weight: float = 1000.0
    likelihood: str = "bernoulli"
    std: float = 0.1  # of the Gaussian likelihood
    kl: str = "analytic"  # or "mc": log q(z|x) - log p(z) at the sampled z
    mmd_codes: str = "mean"  # or "sample": what the MMD compares with the prior draws

    def __post_init__(self):
        for value, valid, what in (
            (self.name, OBJECTIVES, "objective"),
            (self.mmd_codes, MMD_CODES, "mmd_codes"),
            (self.likelihood, LIKELIHOODS, "likelihood"),
            (self.kl, KL_ESTIMATORS, "kl"),
        ):
            if value not in valid:
                raise ValueError(f"{what} must be one of {valid}, not {value!r}")

    @classmethod
    def from_settings(cls, train) -> "Objective":
        """From the training settings: a TrainConfig, or the "train" object of a run's config.json."""
        get = train.get if isinstance(train, dict) else lambda key, default: getattr(train, key, default)
        return cls(
            get("objective", "elbo"),
            get("beta", 1.0),
            get("mmd_weight", 1000.0),
            get("likelihood", "bernoulli"),
            get("gaussian_std", 0.1),
            get("kl", "analytic"),
            get("mmd_codes", "sample"),  # runs saved before the setting existed compared sampled codes
        )

    @property
    def terms(self) -> tuple[str, ...]:
        """The names of what `__call__` returns, in its order; "total" is the one minimised."""
        return ("total", "recon", "kl", "mmd") if self.name == "mmd" else ("total", "recon", "kl")

    @property
    def needs_prior_sample(self) -> bool:
        """Whether a step takes a batch of N(0, I) draws (`prior_z`) besides the posterior's."""
        return self.name == "mmd"

    @property
    def minimises_kl(self) -> bool:
        """Whether the KL is in the total, so a KL near 0 means the posterior collapsed onto the prior."""
        return self.name == "elbo"

    def elbo_terms(self, logits, x, mu, logvar, z) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction, KL) batch means: the ELBO's two terms, whatever is minimised."""
        recon = reconstruction_nll(logits, x, self.likelihood, self.std).mean()
        return recon, kl_estimate(mu, logvar, z, self.kl).mean()

    def __call__(self, logits, x, mu, logvar, z, prior_z=None, beta=None, mmd_weight=None) -> torch.Tensor:
        """The terms of one batch, stacked in the order of `terms`: [len(terms)]. `beta` is this
        step's KL weight (a float or a 0-d tensor; default self.beta, less during a warm-up);
        `prior_z` holds as many N(0, I) draws as z when `needs_prior_sample`. `mmd_weight` (default
        self.mmd_weight) lets runs with different weights share one call (vaelab/training/batched.py)."""
        recon, kl = self.elbo_terms(logits, x, mu, logvar, z)
        if self.name == "mmd":
            distance = mmd(self.codes(mu, z), prior_z)
            weight = self.mmd_weight if mmd_weight is None else mmd_weight
            return torch.stack([recon + weight * distance, recon, kl, distance])
        return torch.stack([recon + (self.beta if beta is None else beta) * kl, recon, kl])

    def codes(self, mu: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """What the MMD compares with the prior's draws: the encoder means or the sampled z."""
        return mu if self.mmd_codes == "mean" else z

    def held_out(self, recon: float, kl: float, z: torch.Tensor, batch_size: int, generator) -> dict:
        """The terms on a held-out set, {term: value}, from its mean reconstruction and KL and its
        codes z [N, D] (`codes` of each batch). The MMD (a V-statistic, so it depends on the batch size) is the mean
        over batches of the training batch size, each against as many N(0, I) draws of `generator`."""
        if self.name == "mmd":
            whole = z[: max(1, len(z) // batch_size) * batch_size]  # whole batches; all of z when less than one
            prior = torch.randn(whole.shape, generator=generator, device=whole.device)
            distance = torch.stack(
                [mmd(a, b) for a, b in zip(whole.split(batch_size), prior.split(batch_size), strict=True)]
            )
            distance = distance.mean().item()
            return {"total": recon + self.mmd_weight * distance, "recon": recon, "kl": kl, "mmd": distance}
        return {"total": recon + self.beta * kl, "recon": recon, "kl": kl}

    def collapse(self, test_kl: float, test_mmd: float | None = None) -> str | None:
        """What shows that z carries next to nothing about the image, from an epoch's test terms, or
        None. On the ELBO, or an MMD of sampled codes, the KL: q(z|x) is then the prior for every x.
        On the MMD of encoder means, the means sit at one point, far from the prior's spread."""
        if self.name == "mmd" and self.mmd_codes == "mean":
            if test_mmd is not None and test_mmd >= COLLAPSED_MMD:
                return f"the test MMD of the encoder means is {test_mmd:.3f} (all at one point: 0.29 or more)"
            return None
        return f"the test KL is {test_kl:.3f} nats" if test_kl < COLLAPSED_KL else None

    def collapse_fix(self) -> tuple[str, object, str] | None:
        """For an objective other than the ELBO, (setting, value, advice with {} where the setting
        goes) that avoids a collapse; None for the ELBO, whose advice is the training's."""
        if self.name != "mmd":
            return None
        if self.mmd_codes == "sample":
            return (
                "mmd_codes",
                "mean",
                "The MMD of sampled codes cannot see it: when q(z|x) is N(0, I) for every image, its samples "
                "are prior draws and the MMD is at its floor. Train again with {}, which compares the "
                "encoder means with the prior.",
            )
        return (
            "mmd_weight",
            self.mmd_weight / 10,
            f"Train again with a smaller {{}} (now {self.mmd_weight:g}) or another seed.",
        )

    @property
    def label(self) -> str:
        """What was minimised, in a few words (the comparison's column): "ELBO", "β-VAE, β = 4", "MMD × 1000"."""
        if self.name == "mmd":
            return f"MMD × {self.mmd_weight:g}" + (" (sampled z)" if self.mmd_codes == "sample" else "")
        return "ELBO" if self.beta == 1.0 else f"β-VAE, β = {self.beta:g}"

    @property
    def caption(self) -> str:
        """How the total is made, for the training curves' caption."""
        if self.name == "mmd":
            return (
                f"total = reconstruction + {self.mmd_weight:g}·MMD, the InfoVAE objective this run minimised "
                f"(the MMD of the {'encoder means' if self.mmd_codes == 'mean' else 'sampled z'} to N(0, I) draws); "
                f"the KL is shown to watch, it is not in the total"
            )
        return f"total = reconstruction + {self.beta:g}·KL" + (" (the negative ELBO)" if self.beta == 1 else "")

    def large_settings(self) -> list[tuple[str, float, str]]:
        """(setting, value, what it does) of the settings that make the loss large: advice after a divergence."""
        large = []
        if self.name == "elbo" and self.beta > 1:
            large.append(("beta", self.beta, f"weights the KL {self.beta:g} times"))
        if self.likelihood == "gaussian" and self.std < 0.1:
            large.append(("gaussian_std", self.std, f"scales the reconstruction by {1 / self.std**2:.3g}"))
        if self.name == "mmd" and self.mmd_weight > 1000:
            large.append(("mmd_weight", self.mmd_weight, "weights the MMD"))
        return large


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


def log_weights(
    log_likelihood,
    proposal,
    num_samples: int,
    chunk: int | None = None,
    generator: torch.Generator | None = None,
    log_prior=log_standard_normal,
):
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
    return log_weights(
        vae_log_likelihood(model, x, y, lik), DiagonalGaussian(mu, logvar), num_samples, chunk, generator
    )


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
    out = {"mean": values.mean().item(), "se_images": values.std().item() / math.sqrt(n) if n > 1 else None}
    if variance is not None:
        out["se_mc"] = math.sqrt(variance.double().sum().item()) / n
    return out
