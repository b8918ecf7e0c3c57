"""A trained model's latent space as pure functions: no figures, no web requests.

The report, the explorer, evaluation, sample quality and the `sample` command all read the latent
space through these functions, so they agree by construction: the same codes, the same plane,
the same prior draws, the same scatter subset.

A latent space of more than two dimensions is shown in one plane: the two leading principal
directions of the test encoder means (`latent_plane`). The plane runs through z = 0, so the point
(0, 0) is the prior's mean and "±scale" keeps its meaning under N(0, I) whatever the latent size.
Codes are numpy arrays [N, latent_dim]; images are float tensors [N, C, H, W] in [0, 1] on the CPU.
"""

from dataclasses import dataclass

import numpy as np
import torch

from vaelab.data.pixels import to_float
from vaelab.device import device_of
from vaelab.errors import VaelabError
from vaelab.images import tile
from vaelab.options import named

SCATTER_POINTS = 5000  # test images on a latent scatter: at most this many, a seeded random subset


# ---- codes and images ------------------------------------------------------------------------------


def _labels(model, y, start: int, size: int, device):
    """The batch's labels for a conditional model; None for an unconditional one."""
    return None if y is None or not model.config.num_classes else torch.as_tensor(y[start : start + size]).to(device)


@torch.no_grad()
def encode_set(model, x_uint8: torch.Tensor, y: torch.Tensor | None = None, batch_size: int = 1000):
    """(mu, logvar) of q(z|x[,y]) as float32 numpy [N, latent_dim], for uint8 images, in batches."""
    device = device_of(model)
    parts = [
        model.encode(to_float(x_uint8[i : i + batch_size].to(device)), _labels(model, y, i, batch_size, device))
        for i in range(0, len(x_uint8), batch_size)
    ]
    return torch.cat([p[0] for p in parts]).cpu().numpy(), torch.cat([p[1] for p in parts]).cpu().numpy()


def reparameterized(mu: np.ndarray, logvar: np.ndarray, seed: int = 0) -> np.ndarray:
    """One z = mu + eps * exp(logvar / 2) per image, with a seeded eps so figures repeat."""
    eps = np.random.default_rng(seed).standard_normal(mu.shape)
    return mu + eps * np.exp(0.5 * logvar)


@torch.no_grad()
def decode(model, z, label=None, batch_size: int = 1000) -> torch.Tensor:
    """Images sigmoid(decoder(z)) [N, C, H, W] in [0, 1]; `label` (an int, [N] labels, or float
    label rows [N, K] mixing classes) is used only by conditional models, which need it."""
    device = device_of(model)
    z = torch.as_tensor(np.asarray(z), dtype=torch.float32)
    y = None
    if model.config.num_classes:
        if label is None:
            raise VaelabError("this model is conditional: give the label to decode with (label=3)")
        y = torch.as_tensor(np.asarray(label))
        y = y.float() if y.is_floating_point() else y.to(torch.int64).expand(len(z))
    return (
        torch.cat(
            [
                torch.sigmoid(
                    model.decode(z[i : i + batch_size].to(device), _labels(model, y, i, batch_size, device))
                ).cpu()
                for i in range(0, len(z), batch_size)
            ]
        )
        if len(z)
        else torch.empty(0, *model.config.input_shape)
    )


def sample_prior(model, n: int, seed: int = 0, label: int | None = None):
    """(z [n, latent_dim] ~ N(0, I) from a seeded CPU generator, labels [n] or None). A
    conditional model gets `label`, or the labels 0, 1, 2, ... in turn, so every class is asked
    for equally."""
    c = model.config
    if label is not None and not c.num_classes:
        raise VaelabError(
            f"{named('label')} needs a conditional model (cvae or cvae-mlp); this run's model is not conditional"
        )
    if label is not None and not 0 <= label < c.num_classes:
        raise VaelabError(f"{named('label')} must be a class index in 0..{c.num_classes - 1}, got {label}")
    z = torch.randn(n, c.latent_dim, generator=torch.Generator().manual_seed(seed))
    if not c.num_classes:
        return z, None
    return z, torch.full((n,), label) if label is not None else torch.arange(n) % c.num_classes


def samples(model, n: int, seed: int = 0, label: int | None = None) -> torch.Tensor:
    """n generated images: decoder means at z ~ N(0, I) (see `sample_prior`)."""
    z, y = sample_prior(model, n, seed, label)
    return decode(model, z, y)


# ---- the plane a latent space is drawn in ------------------------------------------------------------


@dataclass(frozen=True)
class Plane:
    """Two orthonormal directions in z-space through z = 0: the axes of the scatter and grids."""

    basis: np.ndarray  # [2, latent_dim]
    names: tuple[str, str]  # axis labels
    about: str  # how the plane was chosen, for captions
    explained: tuple[float, float] | None = None  # share of the means' variance along each axis (PCA)

    def coords(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z) @ self.basis.T  # [N, 2]

    def latent(self, coords: np.ndarray) -> np.ndarray:
        return np.asarray(coords) @ self.basis  # [N, latent_dim]; 0 along every other direction


def latent_plane(mu: np.ndarray) -> Plane:
    """z itself for a 2-D latent; else the two leading principal directions of the means."""
    latent_dim = mu.shape[1]
    if latent_dim < 2:
        raise VaelabError(
            "the latent scatter and grids need a latent size of at least 2; train with --latent-dim 2 or more"
        )
    if latent_dim == 2:
        return Plane(np.eye(2), ("$z_1$", "$z_2$"), "the latent plane itself (latent size 2, no projection)")
    from sklearn.decomposition import PCA  # scikit-learn loads slowly; only needed here

    pca = PCA(2).fit(mu)
    share = pca.explained_variance_ratio_
    names = tuple(f"z along PC{i + 1} ({s * 100:.0f}% of the variance)" for i, s in enumerate(share))
    about = (
        f"the plane of the two leading principal directions of the test encoder means "
        f"(PCA; latent size {latent_dim}), through z = 0"
    )
    return Plane(pca.components_.astype(np.float64), names, about, tuple(float(s) for s in share))


def project(z: np.ndarray, plane: Plane, projection: str = "pca", seed: int = 0):
    """(points [N, 2], axis names) of codes z: in `plane`, or a t-SNE embedding for
    projection="tsne" when the latent has more than two dimensions."""
    if projection not in ("pca", "tsne"):
        raise VaelabError(f"the projection is 'pca' or 'tsne', not {projection!r}")
    if projection == "tsne" and z.shape[1] > 2:
        from sklearn.manifold import TSNE

        return TSNE(2, init="pca", random_state=seed).fit_transform(z), ("t-SNE 1", "t-SNE 2")
    return plane.coords(z), plane.names


def latent_range(coords: np.ndarray, mode: str = "data", scale: float = 3.0, trim: float = 0.0) -> np.ndarray:
    """[[lo1, hi1], [lo2, hi2]]: the min/max of `coords` (or its trim..100-trim percentiles)
    for mode "data", or ±scale for mode "scale"."""
    if mode == "scale":
        return np.array([[-scale, scale], [-scale, scale]], dtype=float)
    if mode != "data":
        raise VaelabError(f"the z range is 'data' or 'scale', not {mode!r}")
    lo, hi = np.percentile(coords, [trim, 100 - trim], axis=0)
    return np.stack([lo, hi], axis=1)


def scatter_subset(total: int, n: int = SCATTER_POINTS, seed: int = 0) -> np.ndarray:
    """Indices (ascending) of the at most n test images a latent scatter shows: a seeded random
    choice, the same for the report, the comparison and the explorer."""
    return np.sort(np.random.default_rng(seed).permutation(total)[:n])


# ---- grids, class codes, walks --------------------------------------------------------------------


def grid_values(bounds: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n values along each axis of an n×n grid over `bounds`, each ascending."""
    return np.linspace(*bounds[0], n), np.linspace(*bounds[1], n)


def grid_codes(plane: Plane, bounds: np.ndarray, n: int) -> np.ndarray:
    """z [n*n, latent_dim] of an n×n grid in the plane, row by row from the top: the first
    coordinate grows to the right, the second upwards (row 0 holds its largest value)."""
    xs, ys = grid_values(bounds, n)
    a, b = np.meshgrid(xs, ys[::-1])
    return plane.latent(np.stack([a.ravel(), b.ravel()], axis=1))


def decode_grid(model, plane: Plane, bounds: np.ndarray, n: int = 15, label=None) -> np.ndarray:
    """The n×n manifold as one tiled array of n·H × n·W pixels (see `grid_codes`)."""
    return tile(decode(model, grid_codes(plane, bounds, n), label), n)


def class_codes(mu: np.ndarray, labels, num_classes: int, per_class: int = 5, seed: int = 0, conditional: bool = False):
    """(z, y) for the per-class grid, class by class. A VAE draws z ~ N(m_k, diag(s_k^2)), m_k and
    s_k the mean and spread of class k's encoder means (where the class lives). A CVAE draws
    z ~ N(0, I) once and reuses it in every row, so only the label changes down a column."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    y = np.repeat(np.arange(num_classes), per_class)
    if conditional:
        return np.tile(rng.standard_normal((per_class, mu.shape[1])), (num_classes, 1)), y
    zs = []
    for k in range(num_classes):
        members = mu[labels == k]
        if len(members) == 0:
            raise VaelabError(
                f"no test image has class {k}, so where it lives in z is unknown; use a test set with every class"
            )
        zs.append(members.mean(0) + rng.standard_normal((per_class, mu.shape[1])) * members.std(0))
    return np.concatenate(zs), y


def posterior_draws(mu: np.ndarray, logvar: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """n codes z ~ q(z|x_i), each for a random image i (seeded) of the given codes: draws from
    where these images live in z, the aggregate posterior of the set."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(len(mu), size=n)
    return mu[pick] + rng.standard_normal((n, mu.shape[1])) * np.exp(0.5 * logvar[pick])


def line(start: np.ndarray, end: np.ndarray, steps: int) -> np.ndarray:
    """steps evenly spaced codes on the straight line from start to end, both included."""
    t = np.linspace(0, 1, steps)[:, None]
    return (1 - t) * np.asarray(start) + t * np.asarray(end)


def first_of_class(y: torch.Tensor, k: int) -> int:
    """Index of the first image of class k."""
    if not (y == k).any():
        raise VaelabError(f"no test image has class {k}; choose walk pairs among the classes present")
    return int(torch.nonzero(y == k)[0])


def walk(model, x_uint8: torch.Tensor, y: torch.Tensor, a: int, b: int, steps: int = 10):
    """Images along the line in z from the encoder mean of the first test image of class a to
    that of the first of class b. A conditional model's label moves along with z, from the one-hot
    label a to the one-hot label b (a mix of the two in between), so the image morphs rather than
    switching class halfway. Returns (the two inputs, the steps) as [N, C, H, W] tensors."""
    picks = [first_of_class(y, a), first_of_class(y, b)]
    mu, _ = encode_set(model, x_uint8[picks], y[picks])
    z = line(mu[0], mu[1], steps)
    labels = None
    if model.config.num_classes:
        labels = line(*np.eye(model.config.num_classes, dtype=np.float32)[[a, b]], steps).astype(np.float32)
    return to_float(x_uint8[picks]), decode(model, z, labels)


def label_swap(model, x_uint8: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[K*(K+1), C, H, W] images, row by row: the first test image of each class, then its encoder
    mean (encoded with its own label) decoded under labels 0..K-1."""
    k = model.config.num_classes
    picks = [int(torch.nonzero(y == c)[0]) for c in range(k) if (y == c).any()]
    mu, _ = encode_set(model, x_uint8[picks], y[picks])
    swapped = [decode(model, mu, c) for c in range(k)]
    return torch.stack([to_float(x_uint8[picks]), *swapped], 1).flatten(0, 1)  # [rows, K+1, ...] -> rows of K+1
