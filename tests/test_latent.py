"""The latent space has one home (vaelab/latent.py): the report and the explorer read it alike."""

import base64
import io

import numpy as np
import pytest
import torch
from matplotlib.collections import PathCollection
from PIL import Image

from vaelab import explorer, latent
from vaelab.config import TrainConfig
from vaelab.report import figures
from vaelab.runs import open_run
from vaelab.training import train


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """An MLP with an 8-dimensional latent after one epoch on Fashion-MNIST (10,000 test images,
    so the scatter shows a 5,000-image subset), opened by the report and by the explorer."""
    out = tmp_path_factory.mktemp("latent") / "mlp8"
    train(
        TrainConfig(model="mlp", dataset="fashion-mnist", epochs=1, batch_size=500),
        {"latent_dim": 8},
        out=str(out),
        progress=False,
    )
    run = open_run(out)
    drawn = {
        "scatter": figures.scatter(run)[0],
        "manifold": figures.manifold(run, 3, None, "scale", 1.0)[0],
        "origin": figures.origin(run)[0],
    }
    return drawn, explorer.Explorer(explorer.load_runs([out]))


def png(data_url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


def test_report_and_explorer_draw_the_same_images_at_the_same_points(wide):
    drawn, explorer = wide
    dots = next(c for c in drawn["scatter"].axes[0].collections if isinstance(c, PathCollection))
    report = np.c_[np.asarray(dots.get_offsets()), np.asarray(dots.get_array())]
    points = explorer.points({"run": "0"})
    page = np.c_[points["x"], points["y"], points["label"]]
    assert len(report) == len(page) == 5000  # of the 10,000 test images
    from sklearn.neighbors import NearestNeighbors

    distance, match = NearestNeighbors(n_neighbors=1).fit(report[:, :2]).kneighbors(page[:, :2])
    assert distance.max() < 2e-4  # the page rounds to 4 decimals
    assert len(np.unique(match)) == len(page)  # one report point for each point of the page
    np.testing.assert_array_equal(report[match[:, 0], 2], page[:, 2])  # with its label


def test_z_zero_is_the_origin_of_both_planes(wide):
    drawn, explorer = wide
    answer = explorer.decode({"z": [0.0] * 8})
    np.testing.assert_allclose(answer["plane"], [0, 0], atol=1e-9)
    tile = np.asarray(drawn["manifold"].axes[0].images[0].get_array())[28:56, 28:56]  # centre of a 3x3 grid over ±1
    at_origin = np.asarray(drawn["origin"].axes[0].images[0].get_array())
    np.testing.assert_allclose(tile, at_origin, atol=1e-6)
    page = png(explorer.decode({"plane": [0.0, 0.0]})["image"]).astype(int)
    assert np.abs(page - np.round(at_origin * 255)).max() <= 1


def test_the_scatter_subset_is_seeded_sorted_and_at_most_n():
    a, b = latent.scatter_subset(10_000), latent.scatter_subset(10_000)
    assert len(a) == 5000 and np.array_equal(a, b) and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, latent.scatter_subset(10_000, seed=1))
    assert np.array_equal(latent.scatter_subset(300), np.arange(300))


def test_the_prior_sampler_asks_a_conditional_model_for_every_class_in_turn():
    from vaelab.models import build_model, make_config

    cvae = build_model("cvae-mlp", make_config("cvae-mlp", (1, 28, 28), 10))
    z, y = latent.sample_prior(cvae, 25, seed=4)
    assert z.shape == (25, 2) and y.tolist() == [k % 10 for k in range(25)]
    assert torch.equal(z, latent.sample_prior(cvae, 25, seed=4)[0])
    assert latent.sample_prior(cvae, 3, label=7)[1].tolist() == [7, 7, 7]
    with pytest.raises(Exception, match="not conditional"):
        latent.sample_prior(build_model("mlp", make_config("mlp", (1, 28, 28), 10)), 3, label=1)
