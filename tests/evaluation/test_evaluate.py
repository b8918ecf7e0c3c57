"""Evaluation: the importance-weighted bound against a model whose likelihood is known exactly,
then every evaluation on real runs on the bundled MNIST sample (copies of the session's shared runs)."""

import json
import math
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import copy_run, vaelab_cli
from PIL import Image
from torch.distributions import MultivariateNormal

from vaelab import latent, losses
from vaelab.data import load_dataset, pixels
from vaelab.data.pixels import to_float
from vaelab.errors import VaelabError
from vaelab.evaluation import (
    EvalConfig,
    classifier_path,
    cvae_classifier,
    evaluate_run,
    frechet_distance,
    iw_scores,
    latent_stats,
)
from vaelab.losses import kl_monte_carlo, log_normal, reconstruction_nll
from vaelab.runs import load_model

BERNOULLI = {"likelihood": "bernoulli", "std": 0.1}


# ---- a linear-Gaussian model: x = W z + b + noise, z ~ N(0, I); log p(x) in closed form -------------


class FullGaussian:
    """A full-covariance Gaussian proposal, [B, D] means, one shared covariance."""

    def __init__(self, mean, cov):
        self.mean, self.chol = mean, torch.linalg.cholesky(cov)
        self.dist = MultivariateNormal(mean, scale_tril=self.chol)

    def sample(self, n, generator=None):
        eps = torch.randn((n, *self.mean.shape), generator=generator, dtype=self.mean.dtype)
        return self.mean + eps @ self.chol.T

    def log_prob(self, z):
        return self.dist.log_prob(z)


@pytest.fixture(scope="module")
def linear():
    g = torch.Generator().manual_seed(0)
    d, p, sigma, b_images = 3, 6, 0.5, 8
    W = torch.randn(p, d, generator=g, dtype=torch.float64)
    b = torch.randn(p, generator=g, dtype=torch.float64)
    x = (
        torch.randn(b_images, d, generator=g, dtype=torch.float64) @ W.T
        + b
        + sigma * torch.randn(b_images, p, generator=g, dtype=torch.float64)
    )
    marginal = MultivariateNormal(b, W @ W.T + sigma**2 * torch.eye(p, dtype=torch.float64))
    post_cov = torch.linalg.inv(torch.eye(d, dtype=torch.float64) + W.T @ W / sigma**2)
    post_mean = (x - b) @ W @ post_cov / sigma**2  # Sigma W^T (x - b) / sigma^2, row by row

    def log_likelihood(z):  # z [S, B, D] -> log N(x; W z + b, sigma^2 I), [S, B]
        return log_normal(x, z @ W.T + b, torch.full_like(x, 2 * math.log(sigma))).sum(-1)

    return SimpleNamespace(
        log_px=marginal.log_prob(x),
        log_likelihood=log_likelihood,
        posterior=FullGaussian(post_mean, post_cov),
        post_mean=post_mean,
        post_cov=post_cov,
    )


@pytest.mark.parametrize("k", [1, 10, 1000])
def test_the_true_posterior_gives_log_px_exactly_for_every_k(linear, k):
    log_w, _ = losses.log_weights(
        linear.log_likelihood, linear.posterior, k, chunk=64, generator=torch.Generator().manual_seed(1)
    )
    torch.testing.assert_close(losses.iw_bound(log_w), linear.log_px, rtol=0, atol=1e-9)
    torch.testing.assert_close(losses.elbo(log_w), linear.log_px, rtol=0, atol=1e-9)
    assert losses.iw_variance(log_w).max() < 1e-12  # constant weights: no Monte Carlo error


def test_a_mismatched_proposal_converges_to_log_px_as_k_grows(linear):
    """A diagonal Gaussian off the posterior (the VAE's own proposal class): L_K < log p(x) and the
    gap shrinks with K (Burda et al. 2015, Theorem 1), ending within its standard error."""
    logvar = torch.diagonal(linear.post_cov).log().expand_as(linear.post_mean) + 1.0
    q = losses.DiagonalGaussian(linear.post_mean + 0.5, logvar)
    gaps, ses = [], []
    for k in (1, 10, 100, 10_000):
        log_w, _ = losses.log_weights(
            linear.log_likelihood, q, k, chunk=1000, generator=torch.Generator().manual_seed(k)
        )
        gaps.append((linear.log_px - losses.iw_bound(log_w)).mean().item())
        ses.append(math.sqrt(losses.iw_variance(log_w).sum().item()) / len(linear.log_px))
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3] > -3 * ses[3], (gaps, ses)
    assert gaps[0] > 0.5 and abs(gaps[3]) < 3 * ses[3] + 0.01, (gaps, ses)


def test_k_1_is_the_elbo_and_averages_to_its_closed_form(linear):
    q = losses.DiagonalGaussian(linear.post_mean - 0.3, torch.zeros_like(linear.post_mean))
    log_w, log_px_z = losses.log_weights(linear.log_likelihood, q, 1, generator=torch.Generator().manual_seed(2))
    z = q.sample(1, torch.Generator().manual_seed(2))  # the same draw, scored independently
    one_sample_elbo = (
        linear.log_likelihood(z)
        + torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        - torch.distributions.Normal(q.mu, 1.0).log_prob(z).sum(-1)
    )
    torch.testing.assert_close(losses.iw_bound(log_w), one_sample_elbo[0])
    torch.testing.assert_close(losses.iw_bound(log_w), losses.elbo(log_w))
    # E_q[log p(x,z) - log q(z)] = log p(x) - KL(q || posterior), both in closed form
    eye = torch.eye(3, dtype=torch.float64)
    kl = torch.distributions.kl_divergence(
        MultivariateNormal(q.mu, eye), MultivariateNormal(linear.post_mean, linear.post_cov)
    )
    many, _ = losses.log_weights(
        linear.log_likelihood, q, 20_000, chunk=5000, generator=torch.Generator().manual_seed(3)
    )
    se = many.std(0) / math.sqrt(len(many))
    assert ((losses.elbo(many) - (linear.log_px - kl)).abs() < 4 * se).all()
    assert (losses.iw_bound(many) >= losses.elbo(many)).all()  # Jensen, on the same samples


def test_a_vae_with_one_sample_gives_the_losses_single_sample_elbo():
    """Through the real model path: L_1 = -(BCE(x, decoder(z)) + log q(z|x) - log p(z)), the same z."""
    from vaelab.models import build_model, make_config

    torch.manual_seed(0)
    model = build_model("conv", make_config("conv", (1, 28, 28), 10)).eval()
    x = to_float(load_dataset("mnist-sample").test_x[:6])
    log_w, _ = losses.vae_log_weights(model, x, None, 1, BERNOULLI, torch.Generator().manual_seed(5))
    with torch.no_grad():
        mu, logvar = model.encode(x)
        z = losses.DiagonalGaussian(mu, logvar).sample(1, torch.Generator().manual_seed(5))[0]
        expected = -(reconstruction_nll(model.decode(z), x) + kl_monte_carlo(z, mu, logvar))
    torch.testing.assert_close(log_w[0], expected, rtol=1e-5, atol=1e-3)


# ---- binarisation and the Fréchet distance --------------------------------------------------------


def test_binarisation_modes():
    x = load_dataset("mnist-sample").test_x[:200]
    static = pixels.binarized_set(x, "static", "test")
    assert torch.equal(static, pixels.binarized_set(x, "static", "test"))  # one fixed draw
    assert not torch.equal(static, pixels.binarized_set(x, "static", "train"))
    assert set(static.unique().tolist()) == {0, 255}
    assert abs(static.float().mean() - x.float().mean()) < 1.0  # P(1) = x / 255
    assert pixels.binarized_set(x, "none") is x and pixels.binarized_train_set(x, "dynamic") is x
    a, b = (pixels.binarize(to_float(x), "dynamic") for _ in range(2))
    assert not torch.equal(a, b) and set(a.unique().tolist()) == {0.0, 1.0}
    with pytest.raises(VaelabError, match="dynamic, static"):
        pixels.binarized_set(x, "otsu")


def test_frechet_distance_matches_scipy_and_known_cases():
    from scipy import linalg

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(500, 8)), rng.normal(size=(400, 8)) @ rng.normal(size=(8, 8)) + 1
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    reference = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * linalg.sqrtm(ca @ cb).real)
    assert frechet_distance(a, b) == pytest.approx(reference, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-8)
    assert frechet_distance(a, a + 2) == pytest.approx(8 * 4, rel=1e-9)  # same covariance: |shift|^2


# ---- real runs -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory, trained_run):
    """Copies of the shared conv (latent 2) and cvae runs on the sample, which the evaluation writes
    into; a private cache."""
    root = tmp_path_factory.mktemp("evaluate")
    conv_dir, cvae_dir = (copy_run(trained_run(model), root / model) for model in ("conv", "cvae"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        yield SimpleNamespace(
            root=root,
            conv_dir=conv_dir,
            cvae_dir=cvae_dir,
            data=load_dataset("mnist-sample"),
            conv=load_model(conv_dir)[0],
            cvae=load_model(cvae_dir)[0],
        )


def test_iw_bound_is_above_the_elbo_and_grows_with_k(lab):
    x, y = lab.data.test_x[:50], lab.data.test_y[:50]
    bound, se = {}, {}
    for k in (1, 10, 100):
        s = iw_scores(
            lab.conv, x, y, EvalConfig(iw_samples=k, decode_batch=1000), BERNOULLI, torch.Generator().manual_seed(k)
        )
        assert (s["bound"] >= s["elbo"] - 1e-9).all()
        bound[k], se[k] = s["bound"].mean().item(), math.sqrt(s["variance"].sum().item()) / 50
        if k == 1:
            torch.testing.assert_close(s["bound"], s["elbo"])
    assert bound[1] <= bound[10] + 3 * se[10] and bound[10] <= bound[100] + 3 * se[100], (bound, se)
    assert bound[100] > bound[1], bound


def test_evaluate_run_writes_every_number_and_figure(lab, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(lab.root / "cache"))
    r = evaluate_run(lab.conv_dir, iw_samples=20, iw_images=100, quality_samples=1000, classifier_epochs=1)
    assert json.loads((lab.conv_dir / "eval.json").read_text()) == json.loads(json.dumps(r))
    e, iw = r["elbo"], r["iw"]
    assert e["images"] == 1000 and iw["images"] == 100 and iw["samples"] == 20
    assert e["mean_z"]["elbo"] == pytest.approx(-(e["mean_z"]["recon"] + e["kl"]))
    assert iw["bound"] >= iw["elbo"] and 0 <= iw["bound_se_mc"] < 1 and -260 < iw["bound"] < -150
    assert iw["gap"] == pytest.approx(iw["bound"] - iw["elbo"]) and iw["gap_se_images"] > 0
    assert 0 <= r["latent"]["active_units"] <= 2 and len(r["latent"]["kl_per_dim"]) == 2
    assert sum(r["latent"]["kl_per_dim"]) == pytest.approx(e["kl"], rel=1e-4)
    c = r["latent_classifiers"]
    assert c["knn"]["accuracy"] > 0.2 and c["logistic"]["accuracy"] > 0.2, c  # chance 0.1 (± 0.01 on 1,000 images)
    assert np.sum(c["knn"]["confusion"]) == 1000 and np.trace(c["knn"]["confusion"]) == round(
        1000 * c["knn"]["accuracy"]
    )
    q = r["sample_quality"]
    assert q["frechet_distance"] > q["frechet_train_vs_test"] >= 0 and 0.1 <= q["mean_confidence"] <= 1
    assert len(q["class_shares"]) == 10 and sum(q["class_shares"]) == pytest.approx(1) and 0 <= q["balance"] <= 1
    path = classifier_path(load_dataset("mnist-sample"))  # keyed by the data's content
    assert q["classifier"]["path"] == str(path) and path.is_file() and path.name.startswith("mnist-sample-")
    assert str(lab.root / "cache") in q["classifier"]["path"] and q["classifier"]["test_accuracy"] > 0.5
    assert list(r["figures"]) == ["eval_confusion"] and (lab.conv_dir / "figures" / "eval_confusion.png").is_file()


def test_the_yardsticks_of_sample_quality_are_computed_once_per_classifier_file(lab, monkeypatch):
    """Every run scored on one data set shares the test and training-floor features; a classifier
    trained anew (a new file) gets its own, equal to what a fresh computation gives."""
    from vaelab.evaluation import quality

    monkeypatch.setenv("XDG_CACHE_HOME", str(lab.root / "cache"))
    first = quality.sample_quality(lab.conv, lab.data, n=500, epochs=1)
    held = next(iter(quality.REFERENCE.values()))
    second = quality.sample_quality(lab.cvae, lab.data, n=500, epochs=1)
    assert next(iter(quality.REFERENCE.values()))[0] is held[0]  # not computed again
    assert second["frechet_train_vs_test"] == first["frechet_train_vs_test"]
    retrained = quality.sample_quality(lab.conv, lab.data, n=500, epochs=1, retrain=True)
    assert next(iter(quality.REFERENCE.values()))[0] is not held[0] and len(quality.REFERENCE) == 1
    quality.REFERENCE.clear()
    fresh = quality.sample_quality(lab.conv, lab.data, n=500, epochs=1)
    for key in retrained.keys() - {"classifier"}:  # whose info says "trained now" the first time only
        assert fresh[key] == retrained[key], key


@pytest.mark.parametrize("name", ["mnist-sample", "fashion-mnist"])
def test_the_shipped_classifier_is_found_by_the_content_of_its_data(name, tmp_path, monkeypatch):
    """No training on first use for the data vaelab ships or finds: the classifier bench/classifiers.py
    trained is found by the data's content (the test fails when the data or its fingerprint changes
    and the file was not trained again), copied into the cache, and is as accurate as it says."""
    from vaelab.evaluation import quality

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    try:
        data = load_dataset(name)
    except VaelabError:
        pytest.skip(f"{name} is not on this machine (apt-get install dataset-fashion-mnist)")
    classifier, info = quality.get_classifier(data)
    assert not info["trained_now"] and info["path"] == str(classifier_path(data)) and str(tmp_path) in info["path"]
    assert (quality.BUNDLED / classifier_path(data).name).read_bytes() == classifier_path(data).read_bytes()
    _, probs = quality.predict(classifier, to_float(data.test_x))
    assert (probs.argmax(1) == data.test_y.numpy()).mean() == pytest.approx(info["test_accuracy"], abs=2e-3)
    assert info["test_accuracy"] > (0.95 if name == "mnist-sample" else 0.85)


ASK_FOR_A_CLASSIFIER = """
import sys
from vaelab.data import load_dataset
from vaelab.evaluation import get_classifier
print(get_classifier(load_dataset("npz:" + sys.argv[1]), epochs=2)[1]["trained_now"])
"""


def test_processes_that_ask_at_once_for_a_classifier_train_it_once(tmp_path):
    rng = np.random.default_rng(0)
    images = lambda n: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)  # noqa: E731
    labels = lambda n: rng.integers(0, 3, n)  # noqa: E731
    npz = tmp_path / "own.npz"
    np.savez(npz, x_train=images(3000), y_train=labels(3000), x_test=images(100), y_test=labels(100))
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    asking = [
        subprocess.Popen(
            [sys.executable, "-c", ASK_FOR_A_CLASSIFIER, str(npz)], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(2)
    ]
    answers = sorted(process.communicate(timeout=300)[0].strip() for process in asking)
    assert answers == ["False", "True"]  # one trained it, the other waited and read it
    assert len(list((tmp_path / "cache" / "vaelab" / "classifiers").glob("*.safetensors"))) == 1


def test_latent_stats_count_the_dimensions_whose_means_vary():
    mu = torch.stack([torch.linspace(-1, 1, 100), torch.full((100,), 0.3), 0.05 * torch.randn(100)], 1)
    stats = latent_stats(mu, torch.zeros_like(mu))
    assert stats["active_units"] == 1  # var 0.34 > 0.01; 0; about 0.0025 < 0.01
    assert stats["kl_per_dim"][1] == pytest.approx(0.5 * 0.3**2)


def test_cvae_classifies_by_its_bound_well_above_chance(lab):
    x, y = lab.data.test_x[:150], lab.data.test_y[:150]
    out = cvae_classifier(lab.cvae, x, y, EvalConfig(classify_samples=4), BERNOULLI, torch.Generator().manual_seed(0))
    assert out["iw"]["accuracy"] > 0.5 and out["elbo"]["accuracy"] > 0.4, out  # chance is 0.1
    assert np.sum(out["iw"]["confusion"]) == 150


def test_label_swap_keeps_z_and_changes_the_label(lab):
    images = latent.label_swap(lab.cvae, lab.data.test_x, lab.data.test_y)
    assert images.shape == (10 * 11, 1, 28, 28)
    first = [int(torch.nonzero(lab.data.test_y == c)[0]) for c in range(10)]
    torch.testing.assert_close(images[::11], to_float(lab.data.test_x[first]))  # the inputs, first column
    with torch.no_grad():
        x = to_float(lab.data.test_x[first[3] : first[3] + 1])
        mu, _ = lab.cvae.encode(x, torch.tensor([3]))
        expected = torch.sigmoid(lab.cvae.decode(mu, torch.tensor([7])))
    torch.testing.assert_close(images[3 * 11 + 1 + 7], expected[0])


def test_evaluate_command_on_a_cvae(lab):
    """`vaelab evaluate` end to end: the CVAE classifier, its confusion PNG, the printed summary (the label
    swap is drawn by the report, with its labels: tests/report/test_report_answers.py)."""
    result = vaelab_cli(
        "evaluate",
        lab.cvae_dir,
        "--iw-samples",
        "5",
        "--iw-images",
        "60",
        "--classify-samples",
        "2",
        "--quality-samples",
        "0",
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    assert "L_5" in result.stdout and "CVAE classifier" in result.stdout and "eval.json" in result.stdout
    r = json.loads((lab.cvae_dir / "eval.json").read_text())
    assert r["cvae_classifier"]["images"] == 60 and "sample_quality" not in r
    c = r["latent_classifiers"]  # the CVAE's z is classified too, to set beside a VAE's
    assert c["train_images"] == 4000 and 0 <= c["knn"]["accuracy"] <= 1 and np.sum(c["logistic"]["confusion"]) == 1000
    assert "latent classifiers" in result.stdout
    assert list(r["figures"]) == ["eval_confusion", "eval_cvae_confusion"]
    assert Image.open(lab.cvae_dir / "figures" / "eval_cvae_confusion.png").size[0] > 400


def evaluate_args(*argv):
    import argparse

    from vaelab.cli.read import add_evaluate_parser

    parser = argparse.ArgumentParser()
    add_evaluate_parser(parser.add_subparsers())
    return parser.parse_args(["evaluate", *argv])


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--iw-samples", "0"], "--iw-samples must be at least 1"),
        (["--binarize", "half"], "invalid choice: 'half'"),
        (["--decode-batch", "x"], "--decode-batch must be an int"),
    ],
)
def test_evaluate_flags_are_checked(flags, message, capsys):
    with pytest.raises(SystemExit):
        evaluate_args("RUN", *flags)
    assert message in capsys.readouterr().err


def test_more_images_than_the_test_set_is_refused(lab):
    args = evaluate_args(str(lab.conv_dir), "--iw-images", "5000")
    with pytest.raises(VaelabError, match="more than the 1,000 test images.*at most 1000"):
        args.handler(args)
