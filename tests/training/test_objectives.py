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


def test_the_mmd_of_encoder_means_sees_a_posterior_collapsed_onto_the_prior():
    """q(z|x) = N(0, I) for every image (a fresh encoder's start: mu near 0, log sigma^2 near 0) puts z
    at prior draws: the MMD of sampled codes is then at its floor, that of two prior samples, and cannot
    push the codes apart; the MMD of the means sees every code at one point (about 0.33 at D = 2)."""
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.zeros(32, 2), torch.zeros(32, 2)
    z, prior = torch.randn(32, 2, generator=g), torch.randn(32, 2, generator=g)
    x, logits = torch.zeros(32, 1, 28, 28), torch.zeros(32, 1, 28, 28)
    sampled = Objective("mmd", mmd_codes="sample")(logits, x, mu, logvar, z, prior)[3].item()
    means = Objective("mmd", mmd_codes="mean")(logits, x, mu, logvar, z, prior)[3].item()
    floor = torch.stack([mmd(torch.randn(32, 2, generator=g), torch.randn(32, 2, generator=g)) for _ in range(200)])
    assert sampled < floor.quantile(0.95).item() and means > 0.25 > 5 * floor.mean().item(), (sampled, means, floor)
    assert Objective("mmd").mmd_codes == "mean" and TrainConfig().mmd_codes == "mean"  # the default sees it


@pytest.mark.parametrize(
    "settings, row, expected",
    [
        (dict(objective="mmd", mmd_codes="sample"), dict(test_kl=0.0004, test_mmd=0.04), "--mmd-codes mean"),
        (dict(objective="mmd"), dict(test_kl=9.0, test_mmd=0.35), "encoder means is 0.350"),
        (dict(objective="mmd"), dict(test_kl=4.0, test_mmd=0.05), None),
        (dict(), dict(test_kl=0.01), "test KL is 0.010 nats"),
    ],
)
def test_a_collapsed_mmd_run_is_named_like_an_elbo_run(settings, row, expected, tmp_path):
    from vaelab.options import CALLER
    from vaelab.training.advice import collapse_notice

    token = CALLER.set("cli")
    try:
        notice = collapse_notice(row, TrainConfig(epochs=5, **settings), tmp_path)
    finally:
        CALLER.reset(token)
    assert (notice is None) if expected is None else (expected in notice and "collapsed" in notice), notice


@pytest.mark.slow  # 13 short trainings (about 5 minutes on 2 cores)
def test_the_mmd_defaults_keep_the_code_for_every_model_and_seed(tmp_path):
    """examples/03's MMD settings (mnist-sample, batch 32, weight 1000), one epoch: the MMD of
    sampled codes collapsed conv onto the prior from the first epoch (KL 0.0002, every mean at 0);
    the default, the MMD of the encoder means, keeps z informative on every model and seed."""
    import numpy as np

    from vaelab.runs import open_run
    from vaelab.training import train
    from vaelab.training.advice import collapse_notice

    def run(model, seed, **settings):
        cfg = TrainConfig(
            model=model, dataset="mnist-sample", epochs=1, batch_size=32, objective="mmd", seed=seed, **settings
        )
        r = open_run(train(cfg, out=str(tmp_path / f"{model}-{seed}-{len(settings)}"), progress=False))
        return r, collapse_notice(r.rows[-1], cfg, r.dir)

    old, notice = run("conv", 0, mmd_codes="sample")
    assert old.mu.std(0).max() < 0.05 and notice and "mmd_codes='mean'" in notice  # the failure, and it is named
    for model in ("mlp", "conv", "cvae", "cvae-mlp"):
        for seed in (0, 1, 2):
            r, notice = run(model, seed)
            spread, last = r.mu.std(0), r.rows[-1]
            assert notice is None and np.all(spread > 0.3), (model, seed, spread, last)
            assert last["test_recon"] < old.rows[-1]["test_recon"] - 5, (model, seed, last)


def test_a_run_saved_before_mmd_codes_resumes_with_the_sampled_codes_it_was_trained_with(tmp_path):
    from vaelab.training.start import resumed_config

    saved = {"train": {"objective": "mmd", "epochs": 2}}  # config.json of a run from before the setting
    assert resumed_config(saved, {"epochs": 4}, tmp_path).mmd_codes == "sample"
    assert Objective.from_settings(saved["train"]).mmd_codes == "sample"
    assert resumed_config({"train": {"objective": "mmd", "mmd_codes": "mean"}}, {}, tmp_path).mmd_codes == "mean"
