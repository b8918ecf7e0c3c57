"""Checks of a student's functions against vaelab's references (vaelab/checking/reference.py), on random
and edge-case inputs. When a value is wrong, the usual mistakes are tried one by one, so the message
says which it is in the exercise's terms (the KL's sign, a mean where a sum belongs, log σ² taken
for σ, ...). Each function returns Check objects; nothing here raises for a student's error."""

import math

import torch
import torch.nn.functional as F

from vaelab.checking import reference
from vaelab.checking.results import Check
from vaelab.checking.training import bce_logits

B, D, PIXELS = 16, 8, 784  # batch, latent dimensions and pixels of the random inputs
LOG_2PI = math.log(2 * math.pi)


def close(a, b, rtol: float = 1e-3, atol: float = 1e-3) -> bool:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=atol))


def call(fn, *args):
    """(value as a detached float64 tensor, None) or (None, the error in a sentence)."""
    try:
        out = fn(*args)
    except Exception as e:  # the student's code: any error is a finding
        return None, f"raised {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
    if isinstance(out, (tuple, list)):
        return None, f"returned a {type(out).__name__} of {len(out)} values; it should return one tensor"
    try:
        return torch.as_tensor(out.detach() if isinstance(out, torch.Tensor) else out, dtype=torch.float64), None
    except (TypeError, ValueError, RuntimeError):
        return None, f"returned a {type(out).__name__}; it should return a tensor"


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def diagnose(value, candidates: list[tuple[str, torch.Tensor]]) -> str | None:
    """The message of the first candidate mistake whose value equals `value`."""
    return next((message for message, expected in candidates if close(value, expected)), None)


def batch_forms(per_image: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """The reference as a batch mean (the exercise's form) and as one value per image."""
    return [("batch mean", per_image.mean()), ("per image", per_image)]


def compare(piece: str, fn, args, per_image: torch.Tensor, mistakes) -> Check:
    """Check `fn(*args)` against the reference `per_image` [B] (or its batch mean); `mistakes(ref)`
    lists (message, value) of the usual wrong answers for a reference value `ref`."""
    value, error = call(fn, *args)
    if error:
        return Check(f"{piece}.value", "error", f"{piece} {error}")
    for _, ref in batch_forms(per_image):
        if close(value, ref):
            return Check(f"{piece}.value", "pass", "matches vaelab's reference on random inputs")
        found = diagnose(value, mistakes(ref))
        if found:
            return Check(f"{piece}.value", "fail", found)
    if value.dim() == 2:
        return Check(f"{piece}.value", "fail", f"{piece} returns shape {list(value.shape)}: it is not summed")
    shown = f"{value.item():.4g}" if value.numel() == 1 else f"shape {list(value.shape)}"
    return Check(
        f"{piece}.value",
        "fail",
        f"{piece} gives {shown}, vaelab's reference {per_image.mean().item():.4g} (mean over the batch of "
        f"{len(per_image)}) for the same inputs: none of the usual mistakes explains it",
    )


# ---- kl_divergence ---------------------------------------------------------------------------------


def check_kl(fn) -> list[Check]:
    g = generator(1)
    mu, logvar = torch.randn(B, D, generator=g) * 1.5, torch.randn(B, D, generator=g)
    per_image = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)

    def mistakes(ref):
        return [
            ("the KL has the wrong sign: KL = −½ Σ (1 + log σ² − μ² − σ²) is ≥ 0 and yours is its negative", -ref),
            (
                f"the KL is averaged over the latent dimensions instead of summed (yours is {D} times too "
                "small with D = 8): sum over the dimensions, average over the batch",
                ref / D,
            ),
            ("the KL is summed over the batch instead of averaged: take the mean over the batch", ref * B),
            ("the KL lacks the ½ in −½ Σ (1 + log σ² − μ² − σ²): it is twice too large", ref * 2),
            ("the KL uses log σ² where σ² belongs: −½ Σ (1 + log σ² − μ² − exp(log σ²))", _kl_no_exp(mu, logvar, ref)),
        ]

    checks = [compare("kl_divergence", fn, (mu, logvar), per_image, mistakes)]
    checks.append(_kl_edges(fn))
    checks.append(gradient_check("kl_divergence", fn, (mu, logvar), ("μ", "log σ²")))
    return checks


def _kl_no_exp(mu, logvar, ref):
    wrong = -0.5 * (1 + logvar - mu.pow(2) - logvar).sum(1)
    return wrong.mean() if ref.dim() == 0 else wrong


def _kl_edges(fn) -> Check:
    zero, _ = call(fn, torch.zeros(B, D), torch.zeros(B, D))
    if zero is None or not torch.allclose(zero, torch.zeros_like(zero), atol=1e-5):
        return Check("kl_divergence.edges", "fail", "the KL of q = N(0, I) to the prior N(0, I) must be 0")
    for logvar in (-30.0, 30.0):
        value, error = call(fn, torch.zeros(B, D), torch.full((B, D), logvar))
        if error or not torch.isfinite(value).all():
            return Check(
                "kl_divergence.edges",
                "fail",
                f"the KL is not finite at log σ² = {logvar:g}: compute it from log σ² directly "
                "(exp(log σ²), not log(σ²) of an exponential that under- or overflows)",
            )
    return Check("kl_divergence.edges", "pass", "0 at q = N(0, I), finite for log σ² from −30 to 30")


def gradient_check(piece: str, fn, args, names) -> Check:
    """The output's gradient reaches every input (no .detach(), .item(), numpy or sampling without
    the reparameterisation in between)."""
    inputs = [a.clone().requires_grad_(True) for a in args]
    try:
        out = fn(*inputs)
        out.sum().backward()
    except Exception as e:
        return Check(
            f"{piece}.gradient",
            "fail",
            f"no gradient flows through {piece} ({type(e).__name__}): keep it in torch operations, with no "
            ".detach(), .item() or numpy",
        )
    lost = [n for n, t in zip(names, inputs, strict=True) if t.grad is None or not t.grad.abs().sum() > 0]
    if lost:
        return Check(
            f"{piece}.gradient",
            "fail",
            f"the gradient does not reach {' or '.join(lost)}: "
            + (
                "z = μ + ε·exp(½ log σ²) with ε ~ N(0, I) drawn apart (torch.randn_like), not a sample "
                "drawn from N(μ, σ²) (torch.normal, .sample()), which blocks the gradient"
                if piece == "reparameterize"
                else "keep it in torch operations, with no .detach(), .item() or numpy"
            ),
        )
    return Check(f"{piece}.gradient", "pass", f"the gradient reaches {' and '.join(names)}")


# ---- reparameterize --------------------------------------------------------------------------------


def check_reparameterize(fn) -> list[Check]:
    n = 20_000
    mu = torch.tensor([3.0, -1.0, 0.0, 2.0]).expand(n, 4).contiguous()
    sigma = torch.tensor([2.0, 0.5, 1.5, 3.0])
    logvar = (2 * sigma.log()).expand(n, 4).contiguous()
    torch.manual_seed(0)
    z, error = call(fn, mu, logvar)
    grad = gradient_check("reparameterize", fn, (mu[:8], logvar[:8]), ("μ", "log σ²"))
    if error:
        return [Check("reparameterize.distribution", "error", f"reparameterize {error}"), grad]
    if z.shape != mu.shape:
        return [Check("reparameterize.distribution", "fail", f"z has shape {list(z.shape)}, μ {list(mu.shape)}"), grad]
    mean, sd = z.mean(0).float(), z.std(0).float()
    near = lambda a, b: bool(torch.allclose(a, b, rtol=0.05, atol=0.05))  # noqa: E731  (20,000 draws)
    if near(mean, mu[0]) and near(sd, sigma):
        return [Check("reparameterize.distribution", "pass", "z has mean μ and sd σ = exp(½ log σ²)"), grad]
    found = diagnose_spread(sd, logvar[0], sigma) if near(mean, mu[0]) else None
    if found is None and near(sd, sigma):
        found = "z does not have mean μ: z = μ + ε·σ"
    found = found or (
        f"z has mean {mean.tolist()} and sd {[round(v, 2) for v in sd.tolist()]}, expected μ = "
        f"{mu[0].tolist()} and σ = {sigma.tolist()}: z = μ + ε·exp(½ log σ²)"
    )
    return [Check("reparameterize.distribution", "fail", found), grad]


def diagnose_spread(sd, logvar, sigma) -> str | None:
    near = lambda a, b: bool(torch.allclose(a, b, rtol=0.05, atol=0.05))  # noqa: E731
    if near(sd, logvar.abs()):
        return "reparameterize uses log σ² as σ: z = μ + ε·exp(½ log σ²), not μ + ε·log σ²"
    if near(sd, sigma.pow(2)):
        return "reparameterize uses σ² = exp(log σ²) as σ: the ½ is missing in exp(½ log σ²)"
    if near(sd, sigma.sqrt()):
        return "reparameterize uses exp(¼ log σ²): σ = exp(½ log σ²)"
    if near(sd, torch.zeros_like(sd)):
        return "reparameterize adds no noise: z = μ + ε·σ with ε ~ N(0, I)"
    return None


# ---- reconstruction_loss ---------------------------------------------------------------------------


def recon_inputs(flat: bool):
    g = generator(2)
    x = torch.rand(B, 1, 28, 28, generator=g)
    x[: B // 2] = (x[: B // 2] > 0.5).float()  # half binary, half grey, as MNIST pixels are
    logits = torch.randn(B, 1, 28, 28, generator=g) * 2
    return (x.flatten(1), logits.flatten(1)) if flat else (x, logits)


def recon_convention(fn, flat: bool) -> tuple[str | None, Check]:
    """("logits" or "probabilities", the value check): which output the loss expects, and whether it is right."""
    x, logits = recon_inputs(flat)
    per_image = bce_logits(logits, x)
    on_logits, error_l = call(fn, x, logits)
    on_probs, error_p = call(fn, x, torch.sigmoid(logits))
    for convention, value in (("logits", on_logits), ("probabilities", on_probs)):
        if value is not None and any(close(value, ref, rtol=1e-3, atol=1e-2) for _, ref in batch_forms(per_image)):
            return convention, Check(
                "reconstruction_loss.value", "pass", f"binary cross-entropy from {convention}, summed over pixels"
            )
    if error_l and error_p:
        return None, Check("reconstruction_loss.value", "error", f"reconstruction_loss {error_p}")
    for convention, value, out in (("probabilities", on_probs, torch.sigmoid(logits)), ("logits", on_logits, logits)):
        if value is None:
            continue
        found = diagnose(value.float(), recon_mistakes(x, out, per_image, convention))
        if found:
            return convention, Check("reconstruction_loss.value", "fail", found)
    value = on_probs if on_probs is not None else on_logits
    return None, Check(
        "reconstruction_loss.value",
        "fail",
        f"reconstruction_loss gives {value.mean().item():.4g}, the binary cross-entropy summed over pixels and "
        f"averaged over the batch is {per_image.mean().item():.4g} for the same images",
    )


def recon_mistakes(x, out, per_image, convention):
    pixels = x[0].numel()
    mistakes = []
    for _, ref in batch_forms(per_image):
        mistakes += [
            (
                f"the reconstruction is a mean over pixels, not a sum: it is {pixels} times too small against "
                "the KL (sum over the pixels, average over the batch)",
                ref / pixels,
            ),
            ("the reconstruction is summed over the batch instead of averaged", ref * B),
            ("the reconstruction has the wrong sign: −log p(x|z) is ≥ 0", -ref),
        ]
    p = out if convention == "probabilities" else torch.sigmoid(out)
    squared = (x - p).pow(2).flatten(1).sum(1)
    mistakes += [
        (
            "the reconstruction is a squared error, not the binary cross-entropy of the Bernoulli decoder",
            squared.mean(),
        ),
        ("the reconstruction is a squared error, not the binary cross-entropy of the Bernoulli decoder", squared),
    ]
    if convention == "probabilities":
        swapped = F.binary_cross_entropy(x.clamp(1e-7, 1 - 1e-7), p, reduction="none").flatten(1).sum(1)
        mistakes.append(("reconstruction_loss takes (x_hat, x): the exercise's order is (x, x_hat)", swapped.mean()))
    return mistakes


# ---- log_normal_pdf and mmd ------------------------------------------------------------------------


def check_log_normal_pdf(fn) -> list[Check]:
    g = generator(3)
    sample, mean, logvar = (
        torch.randn(B, D, generator=g),
        torch.randn(B, D, generator=g),
        torch.randn(B, D, generator=g),
    )
    elementwise = -0.5 * ((sample - mean).pow(2) * torch.exp(-logvar) + logvar + LOG_2PI)
    value, error = call(fn, sample, mean, logvar)
    if error:
        return [Check("log_normal_pdf.value", "error", f"log_normal_pdf {error}")]
    for ref in (elementwise.sum(1), elementwise):
        if close(value, ref):
            return [Check("log_normal_pdf.value", "pass", "log N(x; μ, exp(log σ²)) matches, summed over dimensions")]
        found = diagnose(
            value,
            [
                ("log_normal_pdf lacks the log 2π term: −½ ((x−μ)² e^(−log σ²) + log σ² + log 2π)", ref + _log2pi(ref)),
                ("log_normal_pdf has the wrong sign: it returns −log N", -ref),
                ("log_normal_pdf multiplies by e^(log σ²) where it should divide: (x−μ)² e^(−log σ²)", _times(ref)),
                ("log_normal_pdf is averaged over dimensions instead of summed", ref / D),
            ],
        )
        if found:
            return [Check("log_normal_pdf.value", "fail", found)]
    return [
        Check("log_normal_pdf.value", "fail", "log_normal_pdf differs from −½ ((x−μ)² e^(−log σ²) + log σ² + log 2π)")
    ]


def _log2pi(ref):
    return 0.5 * LOG_2PI * (D if ref.dim() == 1 else 1)


def _times(ref):
    g = generator(3)
    sample, mean, logvar = (
        torch.randn(B, D, generator=g),
        torch.randn(B, D, generator=g),
        torch.randn(B, D, generator=g),
    )
    wrong = -0.5 * ((sample - mean).pow(2) * torch.exp(logvar) + logvar + LOG_2PI)
    return wrong.sum(1) if ref.dim() == 1 else wrong


def check_mmd(fn) -> list[Check]:
    g = generator(4)
    a, b = torch.randn(200, 2, generator=g) + 1.0, torch.randn(200, 2, generator=g)
    value, error = call(fn, a, b)
    if error:
        return [Check("mmd.value", "error", f"mmd {error}")]
    ref = reference.mmd(a, b)
    if close(value, ref, rtol=1e-3, atol=1e-5):
        return [Check("mmd.value", "pass", "the squared MMD with the kernel exp(−|a−b|²/dim) matches")]
    same, _ = call(fn, a, a)
    found = diagnose(value, [("mmd returns the MMD, not its square (InfoVAE uses MMD²)", ref.sqrt())])
    if not found and same is not None and not close(same, torch.zeros_like(same), atol=1e-4):
        found = f"mmd(a, a) is {same.item():.3g}, not 0: E k(a,a') + E k(b,b') − 2 E k(a,b) vanishes for equal samples"
    return [
        Check(
            "mmd.value",
            "fail",
            found or f"mmd gives {value.item():.4g}, InfoVAE's biased estimate with k = exp(−|a−b|²/dim) {ref:.4g}",
        )
    ]


FUNCTION_CHECKS = {
    "reparameterize": check_reparameterize,
    "kl_divergence": check_kl,
    "log_normal_pdf": check_log_normal_pdf,
    "mmd": check_mmd,
}
