"""Data given in memory, as a notebook holds it: arrays, tensors, Keras's tuples and npz layout,
a torch Dataset or DataLoader; and a run trained on them found again."""

import inspect
import logging
from dataclasses import fields

import numpy as np
import pytest
import torch

import vaelab
from vaelab.config import TrainConfig
from vaelab.data import load_dataset, memory_dataset
from vaelab.errors import VaelabError

RNG = np.random.default_rng(0)
X = (RNG.random((300, 8, 8)) * 255).astype(np.uint8)
Y = np.arange(300) % 3


@pytest.mark.parametrize(
    "given,test_size",
    [
        (X, 30),
        ((X, Y), 30),
        (((X, Y), (X[:50], Y[:50])), 50),  # keras.datasets' load_data()
        ({"x_train": X, "y_train": Y, "x_test": X[:40], "y_test": Y[:40]}, 40),
        ((torch.from_numpy(X[:, None]).float() / 255, torch.from_numpy(Y)), 30),  # [N, C, H, W] floats
        (torch.utils.data.TensorDataset(torch.from_numpy(X).float() / 255, torch.from_numpy(Y)), 30),
        (torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(Y))), 30),
    ],
    ids=["x", "x-y", "keras-tuples", "keras-dict", "tensors-nchw", "dataset", "dataloader"],
)
def test_every_form_in_memory_becomes_the_same_images(given, test_size):
    data = memory_dataset(given)
    assert data.image_shape == (1, 8, 8) and len(data.test_x) == test_size
    assert len(data.train_x) + len(data.test_x) == 300 + (test_size if test_size != 30 else 0)
    pixels = {tuple(img.flatten()) for img in data.train_x[:, 0].numpy()}  # each image survives, uint8
    assert pixels <= {tuple(img.flatten()) for img in X}
    assert data.labelled == (given is not X) and (data.classes == ("0", "1", "2") or given is X)


def test_no_test_split_holds_out_a_seeded_tenth_and_says_so(caplog):
    with caplog.at_level(logging.INFO, logger="vaelab"):
        a, b = memory_dataset((X, Y)), memory_dataset((X, Y))
    assert torch.equal(a.test_x, b.test_x) and "no test split: a seeded 10% (30 images) is held out" in caplog.text


def test_the_keras_npz_layout_loads(tmp_path):
    np.savez(tmp_path / "mnist.npz", x_train=X, y_train=Y, x_test=X[:20], y_test=Y[:20])
    data = load_dataset(f"npz:{tmp_path / 'mnist.npz'}")
    assert (len(data.train_x), len(data.test_x)) == (300, 20) and data.classes == ("0", "1", "2")


@pytest.mark.parametrize("given", [[1, 2, 3], "x", {"images": X}, object()])
def test_data_in_another_form_is_named_with_the_forms_vaelab_takes(given):
    with pytest.raises(VaelabError):
        memory_dataset(given) if not isinstance(given, str) else load_dataset(given)


def test_a_run_on_data_in_memory_is_found_again_with_them(tmp_path, caplog):
    run = vaelab.train("mlp", (X, Y), epochs=1, batch_size=50, out=tmp_path / "run", progress=False)
    assert run.config["data"]["name"] == "memory" and "content" in run.config["data"]["source"]
    assert run.history.epoch == [1] and run.history.history["test_elbo"] == run.history["test_elbo"]
    with pytest.raises(VaelabError, match="trained on data given in memory.*vaelab.load\\(RUN, data="):
        assert vaelab.load(run.dir).data is None  # raises first
    assert len(vaelab.load(run.dir, data=(X, Y)).data.train_x) == 270
    with caplog.at_level(logging.WARNING, logger="vaelab"):
        vaelab.load(run.dir, data=(X[::-1].copy(), Y))
    assert "are not those" in caplog.text
    longer = vaelab.resume(run, epochs=2, progress=False)  # the Run keeps its data
    assert longer.history.epoch == [1, 2]
    assert "elbo" in vaelab.evaluate(longer, iw_samples=2, quality_samples=0)


def test_train_shows_every_setting_with_its_default_and_help():
    parameters = inspect.signature(vaelab.train).parameters
    for f in fields(TrainConfig):
        if f.name not in ("model", "dataset"):
            assert parameters[f.name].default == f.default, f.name
            assert f.metadata["help"] in vaelab.train.__doc__, f.name
    for option in ("latent_dim", "hidden_dim", "dense_dim", "channels", "label_merge"):
        assert parameters[option].default is None and option in vaelab.train.__doc__
