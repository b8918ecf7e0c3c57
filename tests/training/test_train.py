"""The training loop on real data (the bundled 5,000 MNIST digits)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from vaelab.config import TrainConfig
from vaelab.errors import VaelabError
from vaelab.runs import load_model, read_metrics
from vaelab.training import resume, train
from vaelab.training.loop import evaluate


def test_two_epochs_of_conv_bring_the_test_loss_down(tmp_path):
    cfg = TrainConfig(model="conv", dataset="mnist-sample", epochs=2, seed=0)
    run = train(cfg, out=str(tmp_path / "run"), progress=False)
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2]
    untrained = 784 * 0.693  # Bernoulli loss of an untrained decoder, about 543 nats
    assert rows[0]["test_total"] < 0.75 * untrained
    assert rows[1]["test_total"] < rows[0]["test_total"] - 10, rows
    assert rows[1]["test_elbo"] == pytest.approx(-(rows[1]["test_recon"] + rows[1]["test_kl"]))
    model, config = load_model(run)
    assert config["params"] == {"encoder": 62_794, "decoder": 65_089}


def test_resume_continues_bit_for_bit(tmp_path):
    cfg = TrainConfig(model="mlp", dataset="mnist-sample", epochs=2, seed=3)
    straight = train(cfg, out=str(tmp_path / "straight"), progress=False)
    first = train(TrainConfig(**{**cfg.__dict__, "epochs": 1}), out=str(tmp_path / "split"), progress=False)
    resumed = resume(first, epochs=2, progress=False)
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")} for r in rows]
    assert strip(read_metrics(straight)) == strip(read_metrics(resumed))
    assert json.loads((resumed / "config.json").read_text())["train"]["epochs"] == 2


def test_an_existing_run_folder_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    cfg = TrainConfig(model="mlp", dataset="mnist-sample", epochs=1)
    with pytest.raises(VaelabError, match=r"already exists.*vaelab\.resume\(.*overwrite=True"):
        train(cfg, out=str(out), progress=False)
    assert (out / "notes.txt").read_text() == "keep me"


def test_conditional_model_trains_and_evaluates(trained_run, sample):
    run = trained_run("cvae")  # trained by the session's shared fixture
    model, config = load_model(run)
    result = evaluate(model, sample.test_x, sample.test_y, TrainConfig(**config["train"]))
    assert result["elbo"] == pytest.approx(-(result["recon"] + result["kl"]))
    assert result["recon"] < 400


def test_batch_larger_than_the_data_is_refused(tmp_path):
    cfg = TrainConfig(model="mlp", dataset="mnist-sample", epochs=1, batch_size=5000)
    with pytest.raises(VaelabError, match="larger than the 4000 training images"):
        train(cfg, out=str(tmp_path / "run"), progress=False)


def test_binarized_training_shows_binary_test_images(tmp_path):
    import numpy as np
    from PIL import Image

    cfg = TrainConfig(model="mlp", dataset="mnist-sample", epochs=1, binarize="dynamic")
    run = train(cfg, out=str(tmp_path / "run"), progress=False)
    assert np.isfinite(read_metrics(run)[0]["test_elbo"])
    image = np.array(Image.open(run / "recon" / "epoch_001.png"))
    top_row = image[: image.shape[0] // 2]  # the 8 test images as the model saw them
    assert set(np.unique(top_row)) <= {0, 255}


def test_a_collapsed_posterior_is_named_with_what_to_do(tmp_path, capsys):
    """beta 300 on the sample drives the KL to 0 in one epoch: the user is told, with the fix."""
    run = train(
        TrainConfig(model="mlp", dataset="mnist-sample", epochs=1, beta=300.0), out=str(tmp_path / "r"), progress=False
    )
    printed = capsys.readouterr().out
    kl = read_metrics(run)[-1]["test_kl"]
    assert kl < 0.05 and f"test KL is {kl:.3f} nats: the posterior has collapsed" in printed
    # called from Python, the advice is written as Python (`vaelab train` writes it as flags)
    assert f"vaelab.resume('{run}', epochs=11)" in printed and "beta=1 (now 300)" in printed
    healthy = train(TrainConfig(model="mlp", dataset="mnist-sample", epochs=1), out=str(tmp_path / "h"), progress=False)
    assert read_metrics(healthy)[-1]["test_kl"] > 1 and "collapsed" not in capsys.readouterr().out
