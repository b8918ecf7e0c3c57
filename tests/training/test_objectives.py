"""MMD (InfoVAE), beta and KL warm-up, and every model family on 32x32x3 data."""

import pytest
import torch

from vaelab.config import TrainConfig
from vaelab.data import load_dataset
from vaelab.losses import Objective, mmd
from vaelab.models import MODELS, build_model, make_config
from vaelab.training.loop import evaluate
from vaelab.training.schedule import kl_weight, learning_rate


def gaussian(n, mean, seed):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed)) + torch.tensor(mean)


def test_mmd_of_one_distribution_is_near_zero_and_grows_with_distance():
    same = mmd(gaussian(500, [0.0, 0.0], 1), gaussian(500, [0.0, 0.0], 2)).item()
    values = [mmd(gaussian(500, [0.0, 0.0], 1), gaussian(500, [d, 0.0], 2)).item() for d in (0.5, 1, 2, 4)]
    assert 0 <= same < 0.01
    assert values == sorted(values) and values[0] > 5 * same


def test_mmd_is_symmetric():
    a, b = gaussian(300, [0.0, 0.0], 3), gaussian(200, [1.0, -1.0], 4)
    torch.testing.assert_close(mmd(a, b), mmd(b, a))


def test_mmd_gradient_reaches_the_encoder():
    torch.manual_seed(0)
    model = build_model("conv", make_config("conv", (1, 28, 28), 10))
    x = torch.rand(32, 1, 28, 28)
    logits, mu, logvar, z = model(x)
    total, recon, _, _ = Objective("mmd", mmd_weight=100.0)(logits, x, mu, logvar, z, torch.randn_like(z))
    (total - recon).backward()  # the MMD term alone
    assert model.encoder.conv_first.weight.grad.abs().sum() > 0
    assert model.decoder.dense.weight.grad is None or model.decoder.dense.weight.grad.abs().sum() == 0


def test_kl_warmup_rises_linearly_to_beta():
    cfg = TrainConfig(beta=2.0, kl_warmup=2)
    weights = [kl_weight(cfg, epoch, step, 10) for epoch in (1, 2, 3) for step in (0, 5)]
    assert weights == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    assert kl_weight(TrainConfig(beta=0.5), 1, 0, 10) == 0.5


def test_lr_warmup_rises_linearly_over_at_most_one_epoch():
    cfg = TrainConfig(lr=1e-3, lr_warmup=100)
    assert [learning_rate(cfg, done, 468) for done in (0, 49, 99, 100, 5000)] == pytest.approx(
        [1e-5, 5e-4, 1e-3, 1e-3, 1e-3]
    )
    assert [learning_rate(cfg, done, 31) for done in (0, 30, 31)] == pytest.approx([1e-3 / 31, 1e-3, 1e-3])
    assert learning_rate(TrainConfig(lr=1e-3, lr_warmup=0), 0, 468) == 1e-3


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_trains_on_32x32x3_with_falling_loss(name):
    torch.manual_seed(0)
    model = build_model(name, make_config(name, (3, 32, 32), 10))
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(32, 3, 32, 32, generator=g) > 0.6).float()
    y = torch.randint(0, 10, (32,), generator=g)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        logits, mu, logvar, z = model(x, y)
        total, _, _ = Objective()(logits, x, mu, logvar, z)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(total.item())
    assert logits.shape == (32, 3, 32, 32)
    assert losses[-1] < losses[0] - 20, losses


def test_an_mmd_runs_test_total_is_its_objective_not_the_negative_elbo():
    """The test 'total' of an MMD run is reconstruction + weight * MMD on the test codes, in the
    training batch size: the term scales with the weight; recon, KL and ELBO do not change."""
    torch.manual_seed(0)
    model = build_model("mlp", make_config("mlp", (1, 28, 28), 10))
    data = load_dataset("mnist-sample")
    x, y = data.test_x[:600], data.test_y[:600]
    elbo = evaluate(model, x, y, TrainConfig())
    light, heavy = (
        evaluate(model, x, y, TrainConfig(objective="mmd", mmd_weight=w, batch_size=128)) for w in (10.0, 1000.0)
    )
    for r in (light, heavy):
        assert (r["recon"], r["kl"], r["elbo"]) == (elbo["recon"], elbo["kl"], elbo["elbo"])
        assert r["total"] > r["recon"]
    assert elbo["total"] == pytest.approx(-elbo["elbo"])
    assert (heavy["total"] - heavy["recon"]) == pytest.approx(100 * (light["total"] - light["recon"]), rel=1e-6)
    shifted = evaluate(model, x, y, TrainConfig(objective="mmd", mmd_weight=10.0, batch_size=600))
    assert shifted["total"] != light["total"]  # one batch of 600, not four of 128: another V-statistic
