"""The figures hold what they claim: the decoded z, the points, the labels, the metrics."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from matplotlib.collections import PathCollection
from PIL import Image

from vaelab import latent
from vaelab.images import tile
from vaelab.models.summary import layer_rows
from vaelab.report import figures, plots
from vaelab.runs import Run, load_model, read_metrics


@pytest.fixture(scope="module")
def lab(trained_run, sample):
    """The shared conv and cvae runs on the bundled sample (only read here), with their test codes."""
    conv_dir, cvae_dir = trained_run("conv"), trained_run("cvae")
    data = sample
    conv, _ = load_model(conv_dir)
    cvae, _ = load_model(cvae_dir)
    mu, logvar = latent.encode_set(conv, data.test_x, data.test_y)
    cvae_mu, _ = latent.encode_set(cvae, data.test_x, data.test_y)
    return SimpleNamespace(
        conv=conv,
        cvae=cvae,
        conv_dir=conv_dir,
        data=data,
        mu=mu,
        logvar=logvar,
        cvae_mu=cvae_mu,
        conv_run=Run.open(conv_dir, data=data),
        cvae_run=Run.open(cvae_dir, data=data),
    )


def shown_image(fig, axes: int = 0) -> np.ndarray:
    return np.asarray(fig.axes[axes].images[0].get_array())


def sigmoid_decode(model, z, label=None) -> np.ndarray:
    y = None if label is None else torch.full((len(z),), label)
    with torch.no_grad():
        return torch.sigmoid(model.decode(torch.as_tensor(z, dtype=torch.float32), y)).numpy()


def test_encode_gives_the_encoder_means_of_the_whole_test_set(lab):
    assert lab.mu.shape == (1000, 2) and lab.logvar.shape == (1000, 2)
    with torch.no_grad():
        mu, _ = lab.conv.encode(lab.data.test_x[:5].float() / 255)
    np.testing.assert_allclose(lab.mu[:5], mu.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", [15, 31])
def test_manifold_is_n_tiles_of_28_pixels_a_side_decoded_at_the_grid_z(lab, n):
    plane = latent.latent_plane(lab.mu)
    bounds = latent.latent_range(plane.coords(lab.mu))
    tiles = latent.decode_grid(lab.conv, plane, bounds, n)
    assert tiles.shape == (n * 28, n * 28)
    (lo1, hi1), (lo2, hi2) = bounds
    top_left, bottom_right = sigmoid_decode(lab.conv, [[lo1, hi2], [hi1, lo2]])[:, 0]
    np.testing.assert_allclose(tiles[:28, :28], top_left, atol=1e-5)  # z2 grows upwards
    np.testing.assert_allclose(tiles[-28:, -28:], bottom_right, atol=1e-5)
    fig = plots.manifold_grid(tiles, *latent.grid_values(bounds, n), plane.names, "grid")
    np.testing.assert_array_equal(shown_image(fig), tiles)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert 2 <= len(labels) <= 9
    assert float(labels[0]) == pytest.approx(lo1, abs=0.06) and float(labels[-1]) == pytest.approx(hi1, abs=0.06)


def test_data_range_is_the_min_max_of_the_means_or_their_percentiles_or_the_scale(lab):
    np.testing.assert_allclose(latent.latent_range(lab.mu), np.stack([lab.mu.min(0), lab.mu.max(0)], 1))
    trimmed = latent.latent_range(lab.mu, trim=5)
    np.testing.assert_allclose(trimmed[:, 0], np.percentile(lab.mu, 5, axis=0))
    np.testing.assert_array_equal(latent.latent_range(lab.mu, "scale", 2.5), [[-2.5, 2.5], [-2.5, 2.5]])


def test_image_at_the_origin_is_the_sigmoid_of_the_decoder_at_zero(lab):
    fig, _ = figures.origin(lab.conv_run)
    np.testing.assert_allclose(shown_image(fig), sigmoid_decode(lab.conv, np.zeros((1, 2)))[0, 0], atol=1e-6)
    fig, _ = figures.origin(lab.cvae_run, label=8)
    np.testing.assert_allclose(shown_image(fig), sigmoid_decode(lab.cvae, np.zeros((1, 2)), 8)[0, 0], atol=1e-6)


def test_scatter_holds_every_test_point_coloured_by_its_label(lab):
    labels = lab.data.test_y.numpy()
    fig, _ = figures.scatter(lab.conv_run)
    dots = next(c for c in fig.axes[0].collections if isinstance(c, PathCollection))
    offsets, colours = np.asarray(dots.get_offsets()), np.asarray(dots.get_array())
    assert offsets.shape == (1000, 2)  # all of mnist-sample's 1,000 test images
    # match points to images by position (and label, should two codes coincide)
    shown, codes = np.lexsort((colours, *offsets.T[::-1])), np.lexsort((labels, *lab.mu.T[::-1]))
    np.testing.assert_allclose(offsets[shown], lab.mu[codes], rtol=1e-6)
    np.testing.assert_array_equal(colours[shown], labels[codes])
    assert len({tuple(dots.to_rgba(k)) for k in range(10)}) == 10  # one colour per class
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == list(lab.data.classes)
    assert "encoder means" in fig.axes[0].get_title()


def test_scatter_keeps_at_most_5000_points_and_names_sampled_z(lab):
    many = SimpleNamespace(
        mu=np.tile(lab.mu, (6, 1)),
        logvar=np.tile(lab.logvar, (6, 1)),
        data=SimpleNamespace(
            test_x=lab.data.test_x.repeat(6, 1, 1, 1), test_y=lab.data.test_y.repeat(6), classes=lab.data.classes
        ),
    )
    fig, _ = figures.scatter(many, z="sample")
    assert len(fig.axes[0].collections[0].get_offsets()) == 5000
    assert "reparameterised samples" in fig.axes[0].get_title()


def test_a_larger_latent_is_shown_in_its_principal_plane():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((500, 8)) * np.array([5, 3, 1, 1, 1, 1, 1, 1])
    plane = latent.latent_plane(z)
    np.testing.assert_allclose(plane.basis @ plane.basis.T, np.eye(2), atol=1e-8)
    assert abs(plane.basis[0, 0]) > 0.95 and abs(plane.basis[1, 1]) > 0.95  # the two widest axes
    assert "PC1" in plane.names[0] and "PCA" in plane.about
    np.testing.assert_allclose(plane.coords(plane.latent(np.array([[1.0, 2.0]]))), [[1.0, 2.0]])


def test_vae_class_codes_sit_where_each_class_lives(lab):
    labels = lab.data.test_y.numpy()
    z, y = latent.class_codes(lab.mu, labels, 10, per_class=4000)
    for k in (0, 1, 7):
        members = lab.mu[labels == k]
        np.testing.assert_allclose(z[y == k].mean(0), members.mean(0), atol=0.1 * members.std(0).max() + 1e-6)
        np.testing.assert_allclose(z[y == k].std(0), members.std(0), rtol=0.1)


def test_cvae_class_grid_decodes_the_label_it_claims(lab):
    z, y = latent.class_codes(
        lab.cvae_mu, lab.data.test_y, 10, per_class=5, conditional=True
    )  # as the figure draws them
    np.testing.assert_array_equal(z[y == 0], z[y == 9])  # the same z in every row: only the label changes
    grid = shown_image(figures.class_grid(lab.cvae_run)[0])
    assert grid.shape == (10 * 28, 5 * 28)
    for k in range(10):
        row = grid[k * 28 : (k + 1) * 28]
        np.testing.assert_allclose(row, tile(sigmoid_decode(lab.cvae, z[y == k], k), 5), atol=1e-5)
        other = tile(sigmoid_decode(lab.cvae, z[y == k], (k + 1) % 10), 5)
        assert np.abs(row - other).mean() > 0.01


def test_walk_runs_from_the_first_code_to_the_second(lab):
    x, y = lab.data.test_x, lab.data.test_y
    ends, images = latent.walk(lab.conv, x, y, 1, 7, steps=10)
    first = [int(torch.nonzero(y == k)[0]) for k in (1, 7)]
    np.testing.assert_allclose(ends.numpy(), x[first].numpy() / 255.0, atol=1e-7)
    mu = lab.mu[first]
    np.testing.assert_allclose(images[0].numpy(), sigmoid_decode(lab.conv, mu[:1])[0], atol=1e-5)
    np.testing.assert_allclose(images[-1].numpy(), sigmoid_decode(lab.conv, mu[1:])[0], atol=1e-5)
    _, images = latent.walk(lab.cvae, x, y, 4, 9, steps=10)
    cvae_mu = lab.cvae_mu[[int(torch.nonzero(y == k)[0]) for k in (4, 9)]]
    np.testing.assert_allclose(images[-1].numpy(), sigmoid_decode(lab.cvae, cvae_mu[1:], 9)[0], atol=1e-5)
    fig, _ = figures.walks(lab.conv_run, ((1, 7), (4, 9)))
    assert len(fig.axes) == 2 and fig.axes[0].get_ylabel() == "1 → 7"


def test_training_curves_plot_the_metrics(lab):
    rows = read_metrics(lab.conv_dir)
    fig, _ = figures.curves(lab.conv_run)
    assert [ax.get_title() for ax in fig.axes] == ["total loss", "reconstruction", "KL"]
    train_line, test_line = fig.axes[2].get_lines()
    assert list(train_line.get_ydata()) == [r["train_kl"] for r in rows]
    assert list(test_line.get_ydata()) == [r["test_kl"] for r in rows]


def test_class_examples_show_the_first_training_image_of_each_class(lab):
    d = lab.data
    fig = plots.class_examples(d.train_x, d.train_y, d.classes)
    assert [ax.get_title() for ax in fig.axes] == list(d.classes)
    first_three = int(torch.nonzero(d.train_y == 3)[0])
    np.testing.assert_allclose(shown_image(fig, 3), d.train_x[first_three, 0].numpy() / 255.0)


def test_reconstructions_of_every_epoch_stack_down(lab):
    first = np.asarray(Image.open(lab.conv_dir / "recon" / "epoch_001.png"))
    pngs = [first, 255 - first]  # a stand-in second epoch that differs everywhere
    image = shown_image(plots.reconstruction_epochs(pngs, [1, 2]))
    half = pngs[0].shape[0] // 2
    assert image.shape == (3 * half, pngs[0].shape[1])  # the inputs once, then one band per epoch
    np.testing.assert_allclose(image[2 * half :], pngs[1][half:] / 255.0)


def test_architecture_diagram_names_every_layer_with_its_parameters(lab):
    rows = layer_rows(lab.cvae)
    c = lab.cvae.config
    fig = plots.architecture_diagram(rows, c.input_shape, c.latent_dim, c.num_classes)
    texts = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    for r in rows:
        assert f"{r['layer']}: {r['kind']}" in texts and f"{r['params']:,} params" in texts
    assert fig.axes[0].get_title() == "encoder (131,786 params)"


def test_a_conditional_model_needs_a_label_to_decode(lab):
    with pytest.raises(Exception, match="conditional.*label"):
        latent.decode(lab.cvae, np.zeros((1, 2)))


def test_colour_images_keep_their_channels():
    from vaelab.models import build_model, make_config

    model = build_model("conv", make_config("conv", (3, 32, 32), 10)).eval()
    x = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    y = torch.arange(40) % 10
    mu, _ = latent.encode_set(model, x, y)
    plane = latent.latent_plane(mu)
    tiles = latent.decode_grid(model, plane, latent.latent_range(mu, "scale"), 5)
    assert tiles.shape == (5 * 32, 5 * 32, 3)
    assert shown_image(plots.class_examples(x, y, [str(k) for k in range(10)])).shape == (32, 32, 3)
    assert shown_image(plots.interpolation_walks([latent.walk(model, x, y, 0, 1, steps=4)], ["0 → 1"])).shape[2] == 3
