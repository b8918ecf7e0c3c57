"""The figures of a run (SPEC.md, "Figures" 1-9): one function per figure, each returning a Figure.

Inputs are tensors, arrays and models, never paths, so a notebook can call any of them; the
report (vaelab/report.py) only feeds them what it reads from a run folder. Figures are built
from `matplotlib.figure.Figure`, not pyplot: no global state, and no backend forced on the caller.

The latent helpers come first. A latent space of more than two dimensions is shown in the
plane of the two leading principal directions of the test encoder means (`latent_plane`); that
plane runs through z = 0, so the grid point (0, 0) is the prior's mean and "±scale" keeps its
meaning under N(0, I) whatever the latent size.
"""
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

from vaelab.errors import VaelabError
from vaelab.train import to_float

DPI = 100


# ---- latent codes ------------------------------------------------------------------------------

@torch.no_grad()
def encode(model, x_uint8: torch.Tensor, y: torch.Tensor | None = None, batch_size: int = 1000):
    """(mu, logvar) of q(z|x[,y]) as numpy [N, latent_dim], for uint8 images, in batches."""
    device = next(model.parameters()).device
    y = y if model.config.num_classes else None  # an unconditional model takes no label
    mus, logvars = [], []
    for start in range(0, len(x_uint8), batch_size):
        x = to_float(x_uint8[start:start + batch_size].to(device))
        mu, logvar = model.encode(x, None if y is None else y[start:start + batch_size].to(device))
        mus.append(mu.cpu())
        logvars.append(logvar.cpu())
    return torch.cat(mus).numpy(), torch.cat(logvars).numpy()


def reparameterized(mu: np.ndarray, logvar: np.ndarray, seed: int = 0) -> np.ndarray:
    """One z = mu + eps * exp(logvar / 2) per image, with a seeded eps so figures repeat."""
    eps = np.random.default_rng(seed).standard_normal(mu.shape)
    return mu + eps * np.exp(0.5 * logvar)


@torch.no_grad()
def decode(model, z, label=None) -> torch.Tensor:
    """Images sigmoid(decoder(z)) [N, C, H, W] in [0, 1]; `label` (an int or [N] labels) is used
    only by conditional models."""
    device = next(model.parameters()).device
    z = torch.as_tensor(np.asarray(z), dtype=torch.float32).to(device)
    y = None
    if model.config.num_classes:
        if label is None:
            raise VaelabError("this model is conditional: give the label to decode with (label=3)")
        y = torch.as_tensor(label, dtype=torch.int64).expand(len(z)).to(device)
    return torch.sigmoid(model.decode(z, y)).cpu()


@dataclass(frozen=True)
class Plane:
    """Two orthonormal directions in z-space through z = 0: the axes of the scatter and grids."""
    basis: np.ndarray  # [2, latent_dim]
    names: tuple[str, str]  # axis labels
    about: str  # how the plane was chosen, for captions

    def coords(self, z: np.ndarray) -> np.ndarray:
        return z @ self.basis.T  # [N, 2]

    def latent(self, coords: np.ndarray) -> np.ndarray:
        return coords @ self.basis  # [N, latent_dim]; 0 along every other direction


def latent_plane(mu: np.ndarray) -> Plane:
    """z itself for a 2-D latent; else the two leading principal directions of the means."""
    latent_dim = mu.shape[1]
    if latent_dim < 2:
        raise VaelabError("the latent scatter and grids need a latent size of at least 2; train with --latent-dim 2 or more")
    if latent_dim == 2:
        return Plane(np.eye(2), ("$z_1$", "$z_2$"), "the latent plane itself (latent size 2, no projection)")
    from sklearn.decomposition import PCA  # scikit-learn loads slowly; only needed here
    pca = PCA(2).fit(mu)
    share = pca.explained_variance_ratio_ * 100
    names = tuple(f"z along PC{i + 1} ({s:.0f}% of the variance)" for i, s in enumerate(share))
    about = (f"the plane of the two leading principal directions of the test encoder means "
             f"(PCA; latent size {latent_dim}), through z = 0")
    return Plane(pca.components_, names, about)


def latent_range(coords: np.ndarray, mode: str = "data", scale: float = 3.0, trim: float = 0.0) -> np.ndarray:
    """[[lo1, hi1], [lo2, hi2]]: the min/max of `coords` (or its trim..100-trim percentiles)
    for mode "data", or ±scale for mode "scale"."""
    if mode == "scale":
        return np.array([[-scale, scale], [-scale, scale]], dtype=float)
    if mode != "data":
        raise VaelabError(f"the z range is 'data' or 'scale', not {mode!r}")
    lo, hi = np.percentile(coords, [trim, 100 - trim], axis=0)
    return np.stack([lo, hi], axis=1)


def class_codes(mu: np.ndarray, labels, num_classes: int, per_class: int = 5, seed: int = 0,
                conditional: bool = False):
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
            raise VaelabError(f"no test image has class {k}, so where it lives in z is unknown; use a test set with every class")
        zs.append(members.mean(0) + rng.standard_normal((per_class, mu.shape[1])) * members.std(0))
    return np.concatenate(zs), y


# ---- image arrays ------------------------------------------------------------------------------

def tile(images, ncol: int) -> np.ndarray:
    """[N, C, H, W] -> one array [rows*H, ncol*W] (grey) or [rows*H, ncol*W, C], no gaps."""
    images = np.asarray(images, dtype=np.float32)
    n, c, h, w = images.shape
    rows = n // ncol
    grid = images.reshape(rows, ncol, c, h, w).transpose(0, 3, 1, 4, 2).reshape(rows * h, ncol * w, c)
    return grid[..., 0] if c == 1 else grid


def grid_values(bounds: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.linspace(*bounds[0], n), np.linspace(*bounds[1], n)


def decode_grid(model, plane: Plane, bounds: np.ndarray, n: int = 15, label=None) -> np.ndarray:
    """The n×n manifold as one tiled array of n·H × n·W pixels: the first coordinate grows to
    the right, the second upwards (row 0 holds the largest value)."""
    xs, ys = grid_values(bounds, n)
    a, b = np.meshgrid(xs, ys[::-1])
    coords = np.stack([a.ravel(), b.ravel()], axis=1)  # row-major, top row first
    return tile(decode(model, plane.latent(coords), label), n)


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _show(ax, image: np.ndarray) -> None:
    ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")


def _no_ticks(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


# ---- 1, 2: the data and the training curves ----------------------------------------------------

def class_examples(images: torch.Tensor, labels, classes) -> Figure:
    """Figure 1: the first image of each class (uint8 [N, C, H, W]), titled with its name."""
    labels = np.asarray(labels)
    fig = _figure(1.1 * len(classes), 1.5)
    for k, name in enumerate(classes):
        ax = fig.add_subplot(1, len(classes), k + 1)
        picks = np.flatnonzero(labels == k)
        if len(picks):
            _show(ax, tile(to_float(images[picks[:1]]).numpy(), 1))
        ax.set_title(name, fontsize=9)
        _no_ticks(ax)
    return fig


def training_curves(rows: list[dict]) -> Figure:
    """Figure 2: total, reconstruction and KL loss per epoch, train and test (metrics.jsonl rows)."""
    epochs = [r["epoch"] for r in rows]
    fig = _figure(11, 3.2)
    for i, (key, title) in enumerate((("total", "total loss"), ("recon", "reconstruction"), ("kl", "KL"))):
        ax = fig.add_subplot(1, 3, i + 1)
        for split in ("train", "test"):
            ax.plot(epochs, [r[f"{split}_{key}"] for r in rows], marker="o", ms=3, label=split)
        ax.set(title=title, xlabel="epoch", ylabel="nats per image")
        ax.legend()
    return fig


# ---- 3: latent scatter -------------------------------------------------------------------------

def latent_scatter(z: np.ndarray, labels, classes, plane: Plane, kind: str = "mean",
                   projection: str = "pca", n: int = 5000, seed: int = 0) -> Figure:
    """Figure 3: z of n random images (all when fewer) coloured by class. `kind` says whether z
    are encoder means or reparameterised samples; a latent above 2-D is shown in `plane`, or
    embedded with t-SNE when projection="tsne"."""
    labels = np.asarray(labels)
    pick = np.random.default_rng(seed).permutation(len(z))[:n]  # random order: no class drawn last
    points, names = _project(z[pick], plane, projection)
    fig = _figure(6.4, 5.2)
    ax = fig.add_subplot()
    k = len(classes)
    dots = ax.scatter(points[:, 0], points[:, 1], c=labels[pick], cmap=_class_colours(k),
                      vmin=-0.5, vmax=k - 0.5, s=3 if len(pick) > 2000 else 8, alpha=0.8, linewidths=0)
    bar = fig.colorbar(dots, ax=ax, ticks=range(k))
    bar.ax.set_yticklabels([f"{i} {name}" if name != str(i) else name for i, name in enumerate(classes)])
    what = "encoder means" if kind == "mean" else "reparameterised samples"
    ax.set(title=f"z of {len(pick):,} test images: {what}", xlabel=names[0], ylabel=names[1])
    return fig


def _project(z: np.ndarray, plane: Plane, projection: str):
    if projection == "tsne" and z.shape[1] > 2:
        from sklearn.manifold import TSNE
        return TSNE(2, init="pca", random_state=0).fit_transform(z), ("t-SNE 1", "t-SNE 2")
    if projection not in ("pca", "tsne"):
        raise VaelabError(f"the projection is 'pca' or 'tsne', not {projection!r}")
    return plane.coords(z), plane.names


def _class_colours(k: int):
    from matplotlib import colormaps
    return colormaps["tab10" if k <= 10 else "tab20"].resampled(k)


# ---- 4, 6: manifold grid and the image at z = 0 ------------------------------------------------

def manifold_grid(tiles: np.ndarray, bounds: np.ndarray, n: int, plane: Plane, title: str) -> Figure:
    """Figures 4 and 6: the n×n tiled grid from `decode_grid`, ticked with the z value of each
    column and row (at most 9 ticks a side, the first and the last included)."""
    size = tiles.shape[0] // n
    fig = _figure(1.4 + tiles.shape[1] / DPI, 1.1 + tiles.shape[0] / DPI)  # about 1 screen pixel per pixel
    ax = fig.add_subplot()
    _show(ax, tiles)
    xs, ys = grid_values(bounds, n)
    shown = _tick_positions(n)
    ax.set_xticks((shown + 0.5) * size, _tick_labels(xs[shown], xs), fontsize=8)
    ax.set_yticks((shown + 0.5) * size, _tick_labels(ys[::-1][shown], ys), fontsize=8)
    ax.set(title=title, xlabel=plane.names[0], ylabel=plane.names[1])
    return fig


def _tick_positions(n: int, most: int = 9) -> np.ndarray:
    """At most `most` evenly spaced grid indices, with both ends when n - 1 allows it."""
    k = next(k for k in range(1, n) if (n - 1) // k < most and (n - 1) % k == 0)
    if (n - 1) // k < 3:  # n - 1 has no fitting divisor (e.g. prime): even spacing beats the last column
        k = -(-(n - 1) // (most - 1))
    return np.arange(0, n, k)


def _tick_labels(values: np.ndarray, axis: np.ndarray) -> list[str]:
    """Enough decimals that neighbouring grid values differ (a collapsed range has tiny steps)."""
    step = abs(axis[1] - axis[0]) if len(axis) > 1 else 0
    decimals = int(np.clip(-np.floor(np.log10(step)), 0, 8)) if step > 0 else 2
    texts = [f"{v:.{decimals}f}" for v in values]
    return [f"{0:.{decimals}f}" if float(t) == 0 else t for t in texts]  # no "-0.0"


def origin_image(model, label=None) -> Figure:
    """Figure 4, second part: the image decoded at z = 0, the prior's mean, on its own."""
    image = decode(model, np.zeros((1, model.config.latent_dim)), label)
    fig = _figure(2, 2.2)
    ax = fig.add_subplot()
    _show(ax, tile(image, 1))
    ax.set_title("z = 0" + (f", label {label}" if label is not None else ""), fontsize=9)
    _no_ticks(ax)
    return fig


# ---- 5, 7: per-class samples and interpolation walks -------------------------------------------

def class_grid(model, z: np.ndarray, y: np.ndarray, classes) -> Figure:
    """Figure 5: one row per class of images decoded from `class_codes`' (z, y); a conditional
    model decodes each row with its class, an unconditional one ignores y."""
    per_class = len(z) // len(classes)
    images = torch.cat([decode(model, z[y == k], k) for k in range(len(classes))])
    tiles = tile(images, per_class)
    size = tiles.shape[0] // len(classes)
    fig = _figure(1.3 + tiles.shape[1] / DPI * 1.5, 0.6 + tiles.shape[0] / DPI * 1.5)
    ax = fig.add_subplot()
    _show(ax, tiles)
    ax.set_yticks((np.arange(len(classes)) + 0.5) * size, list(classes), fontsize=8)
    ax.set_xticks([])
    return fig


def walk(model, x_uint8: torch.Tensor, y: torch.Tensor, a: int, b: int, steps: int = 10):
    """Images along the line in z from the encoder mean of the first test image of class a to
    that of the first of class b; a conditional model decodes the first half with label a and
    the second with label b. Returns (the two inputs, the steps) as [N, C, H, W] tensors."""
    for k in (a, b):
        if not (y == k).any():
            raise VaelabError(f"no test image has class {k}; choose walk pairs among the classes present")
    picks = [int(torch.nonzero(y == k)[0]) for k in (a, b)]
    mu, _ = encode(model, x_uint8[picks], y[picks])
    t = np.linspace(0, 1, steps)[:, None]
    z = (1 - t) * mu[0] + t * mu[1]
    half = steps // 2
    images = torch.cat([decode(model, z[:half], a), decode(model, z[half:], b)])
    return to_float(x_uint8[picks]), images


def interpolation_walks(model, x_uint8: torch.Tensor, y: torch.Tensor, pairs, classes, steps: int = 10) -> Figure:
    """Figure 7: one strip per pair (a, b): input a, the decoded walk, input b."""
    fig = _figure(1.2 + (steps + 2.5) * 0.42, 0.5 + 0.55 * len(pairs))
    for row, (a, b) in enumerate(pairs):
        ends, images = walk(model, x_uint8, y, a, b, steps)
        ax = fig.add_subplot(len(pairs), 1, row + 1)
        _show(ax, _strip(tile(ends[:1], 1), tile(images, steps), tile(ends[1:], 1)))
        ax.set_ylabel(f"{classes[a]} → {classes[b]}", rotation=0, ha="right", va="center", fontsize=9)
        _no_ticks(ax)
    w = ends.shape[-1]
    gap = w // 4
    ax.set_xticks([w / 2, w + gap + w / 2, w + gap + (steps - 0.5) * w, (steps + 1.5) * w + 2 * gap],
                  ["input A", "t = 0", "t = 1", "input B"], fontsize=8)
    return fig


def _strip(*parts: np.ndarray) -> np.ndarray:
    """Parts side by side, parted by a grey gap a quarter of an image wide."""
    gap = np.full((parts[0].shape[0], parts[0].shape[1] // 4, *parts[0].shape[2:]), 0.5, dtype=np.float32)
    pieces = [parts[0]]
    for part in parts[1:]:
        pieces += [gap, part]
    return np.concatenate(pieces, axis=1)


# ---- 8: architecture diagram -------------------------------------------------------------------

def architecture_diagram(rows: list[dict], input_shape, latent_dim: int, num_classes: int = 0) -> Figure:
    """Figure 8: encoder and decoder as columns of boxes (layer, kind, output shape, parameters)
    in call order, from `vaelab.summary.layer_rows`; the mu and logvar heads side by side."""
    parts = _diagram_rows(rows, input_shape, latent_dim, num_classes)
    height = max(len(boxes) for boxes in parts.values())
    fig = _figure(9, 0.75 * height + 0.6)
    for col, (part, boxes) in enumerate(parts.items()):
        ax = fig.add_subplot(1, 2, col + 1)
        total = sum(r["params"] for r in rows if r["part"] == part)
        ax.set(xlim=(0, 1), ylim=(height, -0.1), title=f"{part} ({total:,} params)")
        ax.axis("off")
        for i, texts in enumerate(boxes):
            _boxes(ax, i, texts)
    return fig


def _diagram_rows(rows: list[dict], input_shape, latent_dim: int, num_classes: int) -> dict:
    """{part: [[box text, ...] per diagram row]}, starting with the part's input."""
    label = f" + label ({num_classes} classes)" if num_classes else ""
    parts = {"encoder": [[f"input x{label}\n{_shape(input_shape)}"]], "decoder": [[f"input z{label}\n{latent_dim}"]]}
    for r in rows:
        text = f"{r['layer']}: {r['kind']}\n{_shape(r['output_shape'])} · {r['params']:,} params"
        boxes = parts[r["part"]]
        if r["layer"] == "logvar" and boxes[-1][0].startswith("mu:"):
            boxes[-1].append(text)  # the two heads read the same input: one row
        else:
            boxes.append([text])
    return parts


def _shape(shape) -> str:
    return "×".join(map(str, shape)) if len(shape) > 1 else str(shape[0])


def _boxes(ax, i: int, texts: list[str]) -> None:
    """One row of the diagram: its boxes side by side, each with an arrow from the row above."""
    width = 0.9 / len(texts)
    for j, text in enumerate(texts):
        left = 0.05 + j * width
        centre = left + width / 2
        colour = "#e8e8e8" if i == 0 else "#dbe9f6"
        ax.add_patch(FancyBboxPatch((left + 0.03, i + 0.1), width - 0.06, 0.6, boxstyle="round,pad=0.02", fc=colour, ec="#4a6a8a"))
        ax.text(centre, i + 0.4, text, ha="center", va="center", fontsize=8)
        if i:
            ax.add_patch(FancyArrowPatch((0.5, i - 0.28), (centre, i + 0.08), arrowstyle="-|>", mutation_scale=10))


# ---- 9: reconstructions per epoch, and runs side by side ---------------------------------------

def reconstruction_epochs(pngs: list[np.ndarray], epochs: list[int]) -> Figure:
    """Figure 9: the RUN/recon/epoch_*.png arrays (inputs on top, reconstructions below) as one
    image: the inputs once, then each epoch's reconstructions, epochs down."""
    half = pngs[0].shape[0] // 2  # image_grid draws two rows of equal height
    bands = [pngs[0][:half]] + [png[half:2 * half] for png in pngs]
    image = np.concatenate(bands) / 255.0
    fig = _figure(1.3 + image.shape[1] / DPI, 0.5 + image.shape[0] / DPI)
    ax = fig.add_subplot()
    _show(ax, image)
    ax.set_yticks((np.arange(len(bands)) + 0.5) * half, ["test images"] + [f"epoch {e}" for e in epochs], fontsize=8)
    ax.set_xticks([])
    return fig


def compare_curves(runs: dict[str, list[dict]]) -> Figure:
    """Model comparison: each run's test total / reconstruction / KL per epoch, overlaid."""
    fig = _figure(11, 3.4)
    for i, (key, title) in enumerate((("total", "test total loss"), ("recon", "test reconstruction"), ("kl", "test KL"))):
        ax = fig.add_subplot(1, 3, i + 1)
        for name, rows in runs.items():
            ax.plot([r["epoch"] for r in rows], [r[f"test_{key}"] for r in rows], marker="o", ms=3, label=name)
        ax.set(title=title, xlabel="epoch", ylabel="nats per image")
    fig.axes[0].legend(fontsize=7)
    return fig


def side_by_side(images: dict[str, np.ndarray]) -> Figure:
    """Model comparison: one image per run (e.g. their manifold grids), titled with its name."""
    fig = _figure(3.2 * len(images), 3.6)
    for i, (name, image) in enumerate(images.items()):
        ax = fig.add_subplot(1, len(images), i + 1)
        _show(ax, image)
        ax.set_title(name, fontsize=8)
        _no_ticks(ax)
    return fig


def scatter_panels(runs: dict[str, tuple], classes) -> Figure:
    """Model comparison: each run's test z (2-D, or in its plane) coloured by class, with the
    prior's 1- and 2-sigma circles, so how well q(z) fills N(0, I) can be compared by eye.
    runs: name -> (points [N, 2], labels, axis names)."""
    fig = _figure(4.2 * len(runs), 4.0)
    k = len(classes)
    for i, (name, (points, labels, names)) in enumerate(runs.items()):
        ax = fig.add_subplot(1, len(runs), i + 1)
        dots = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap=_class_colours(k), vmin=-0.5, vmax=k - 0.5,
                          s=2, alpha=0.7, linewidths=0)
        for r in (1, 2):
            ax.add_patch(Circle((0, 0), r, fill=False, ls="--", lw=0.8, color="black"))
        ax.set_aspect("equal", adjustable="datalim")
        ax.set(title=name, xlabel=names[0], ylabel=names[1])
        ax.title.set_fontsize(8)
    bar = fig.colorbar(dots, ax=fig.axes, ticks=range(k), fraction=0.02)
    bar.ax.set_yticklabels([f"{i} {c}" if c != str(i) else c for i, c in enumerate(classes)], fontsize=7)
    return fig
