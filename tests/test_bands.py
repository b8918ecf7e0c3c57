"""The reference bands: measured numbers shipped with the package, and what a run is told about its own."""

import json
from dataclasses import asdict

import pytest

from vaelab import bands
from vaelab.config import TrainConfig
from vaelab.models import make_config

BAND = {"neg_elbo": {"mean": 180.0, "sd": 1.5}, "seeds": [0, 1, 2, 3, 4]}


def test_the_shipped_bands_hold_five_seeds_of_every_seed_model_on_the_sample():
    shipped = json.loads(bands.PATH.read_text())
    assert {"torch", "vaelab", "machine", "seeds"} <= set(shipped["measured"])
    for model in ("mlp", "mlp-small", "conv", "conv-small", "cvae", "cvae-mlp"):
        for kind in ("check", "train"):
            band = bands.get_band(kind, model, "mnist-sample", 2, 32)
            assert band is not None, (kind, model)
            assert len(band["seeds"]) >= 5 and len(band["per_seed"]["neg_elbo"]) == len(band["seeds"])
            assert 100 < band["neg_elbo"]["mean"] < 300 and band["neg_elbo"]["sd"] > 0
            assert band["recon"]["mean"] + band["kl"]["mean"] == pytest.approx(band["neg_elbo"]["mean"], abs=0.01)


def test_fashion_mnist_bands_were_measured_where_its_files_were_found():
    for model in ("mlp", "mlp-small", "cvae-mlp", "conv"):
        band = bands.get_band("train", model, "fashion-mnist", 2, 128)
        assert band is not None and len(band["seeds"]) >= 5, model
        assert 240 < band["neg_elbo"]["mean"] < 300  # Fashion-MNIST's -ELBO is far above MNIST's


def test_where_a_value_stands():
    assert bands.where(181.0, BAND) == (
        True,
        "test −ELBO 181.0 nats: within the reference band (the reference 180.0 ± 1.5 nats over 5 seeds)",
    )
    ok, text = bands.where(192.3, BAND)
    assert not ok and text.startswith("test −ELBO 192.3 nats: 12.3 nats worse than the reference 180.0")
    assert bands.where(170.0, BAND)[0] and "10.0 nats better" in bands.where(170.0, BAND)[1]


def run_config(**train):
    config = make_config("mlp", (1, 28, 28), 10)
    return {
        "model": "mlp",
        "model_config": json.loads(json.dumps(asdict(config))),
        "train": asdict(TrainConfig(model="mlp", dataset="mnist-sample", epochs=2, batch_size=32, **train)),
        "data": {"name": "mnist-sample", "image_shape": [1, 28, 28], "classes": list("0123456789")},
    }


def test_a_run_is_placed_against_its_band_only_when_it_has_the_bands_settings(monkeypatch):
    monkeypatch.setattr(
        bands, "get_band", lambda *key: BAND if key == ("train", "mlp", "mnist-sample", 2, 32) else None
    )
    line = bands.run_standing(run_config(), {"epoch": 2, "test_elbo": -192.3})
    assert line.startswith("Against runs of mlp on mnist-sample for 2 epochs at batch 32: test −ELBO 192.3 nats: 12.3")
    assert "check the data" in line
    assert bands.run_standing(run_config(beta=4.0), {"epoch": 2, "test_elbo": -192.3}) is None
    assert bands.run_standing(run_config(), {"epoch": 1, "test_elbo": -192.3}) is None  # stopped early
    other = run_config() | {"model_config": {**run_config()["model_config"], "latent_dim": 8}}
    assert bands.run_standing(other, {"epoch": 2, "test_elbo": -192.3}) is None
