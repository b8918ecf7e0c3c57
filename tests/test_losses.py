"""Losses against independent references (torch.distributions) and their invariants."""

import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from vaelab.losses import Objective, bernoulli_nll, gaussian_nll, kl_monte_carlo, kl_standard_normal, log_normal, mmd


@pytest.fixture
def posterior():
    g = torch.Generator().manual_seed(0)
    return torch.randn(64, 8, generator=g), torch.randn(64, 8, generator=g)  # mu, logvar


def test_kl_matches_torch_distributions(posterior):
    mu, logvar = posterior
    reference = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(kl_standard_normal(mu, logvar), reference)


def test_kl_is_zero_at_the_prior_and_positive_elsewhere(posterior):
    mu, logvar = posterior
    assert torch.all(kl_standard_normal(torch.zeros(3, 4), torch.zeros(3, 4)) == 0)
    assert torch.all(kl_standard_normal(mu, logvar) > 0)
    assert torch.all(kl_standard_normal(torch.zeros(1, 2), torch.tensor([[0.3, 0.0]])) > 0)


def test_kl_is_additive_over_dimensions(posterior):
    mu, logvar = posterior
    parts = kl_standard_normal(mu[:, :3], logvar[:, :3]) + kl_standard_normal(mu[:, 3:], logvar[:, 3:])
    torch.testing.assert_close(kl_standard_normal(mu, logvar), parts)


def test_log_normal_matches_torch(posterior):
    mu, logvar = posterior
    x = torch.randn_like(mu)
    reference = Normal(mu, (0.5 * logvar).exp()).log_prob(x)
    torch.testing.assert_close(log_normal(x, mu, logvar), reference)


def test_monte_carlo_kl_averages_to_the_analytic_kl():
    torch.manual_seed(0)
    mu, logvar = torch.tensor([[0.7, -1.2, 0.1]]), torch.tensor([[-0.5, 0.4, -2.0]])
    n = 200_000
    z = mu + torch.randn(n, 3) * (0.5 * logvar).exp()
    estimates = kl_monte_carlo(z, mu.expand(n, 3), logvar.expand(n, 3))
    standard_error = estimates.std() / math.sqrt(n)
    assert abs(estimates.mean() - kl_standard_normal(mu, logvar)[0]) < 4 * standard_error


def test_bernoulli_nll_matches_torch_and_is_stable():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(16, 1, 28, 28, generator=g) * 3
    x = torch.rand(16, 1, 28, 28, generator=g).round()
    reference = -Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(bernoulli_nll(logits, x), reference)
    extreme = torch.full((1, 1, 28, 28), 200.0)
    assert torch.isfinite(bernoulli_nll(extreme, torch.zeros_like(extreme))).all()
    assert bernoulli_nll(extreme, torch.zeros_like(extreme)).item() == pytest.approx(784 * 200.0)


def test_bernoulli_nll_of_zero_logits_is_784_ln2():
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(bernoulli_nll(torch.zeros_like(x), x), torch.full((4,), 784 * math.log(2)))


def test_gaussian_nll_matches_torch():
    logits, x = torch.randn(5, 1, 4, 4), torch.rand(5, 1, 4, 4)
    reference = -Normal(torch.sigmoid(logits), 0.1).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(gaussian_nll(logits, x, 0.1), reference)


def test_the_objective_weights_the_kl_by_beta(posterior):
    mu, logvar = posterior
    logits, x = torch.randn(64, 1, 4, 4), torch.rand(64, 1, 4, 4)
    z = mu + logvar.exp().sqrt() * torch.randn_like(mu)
    total, recon, kl = Objective(beta=4.0)(logits, x, mu, logvar, z)
    torch.testing.assert_close(total, recon + 4 * kl)
    torch.testing.assert_close(recon, bernoulli_nll(logits, x).mean())
    torch.testing.assert_close(kl, kl_standard_normal(mu, logvar).mean())
    _, _, kl_mc = Objective(kl="mc")(logits, x, mu, logvar, z)
    torch.testing.assert_close(kl_mc, kl_monte_carlo(z, mu, logvar).mean())


def test_the_mmd_and_its_gradient_hold_in_float32_when_the_codes_bunch_together():
    """A collapsing MMD run has its 64 codes within 1e-3 of one point: the kernel's squared
    distances must not cancel: |a|^2 + |b|^2 - 2 a.b (torch.cdist) put the float32 gradient 1.9e-2
    off the float64 one here; the differences put it 1.1e-5 off, the float32 rounding of the codes."""
    generator = torch.Generator().manual_seed(0)
    codes = 3.0 + 1e-3 * torch.randn(64, 2, generator=generator, dtype=torch.float64)
    prior = torch.randn(64, 2, generator=generator, dtype=torch.float64)
    grads = []
    for dtype in (torch.float64, torch.float32):
        z = codes.to(dtype).detach().requires_grad_()
        value = mmd(z, prior.to(dtype))
        value.backward()
        grads.append((value.item(), z.grad.double()))
    (exact, exact_grad), (value, grad) = grads
    assert value == pytest.approx(exact, rel=1e-5)
    assert ((grad - exact_grad).norm() / exact_grad.norm()).item() < 1e-4
