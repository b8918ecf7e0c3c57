"""Every figure vaelab draws: one function per figure, each returning a matplotlib Figure.

Figures 1-9 are those of the exercises (README, "Figures"): the classes, training curves, latent
scatter, manifold grid and the image at z = 0, per-class grid, CVAE manifold, interpolation walks,
architecture, reconstructions per epoch and the comparison of runs; then the evaluation's
confusion matrices and the sweep's trade-off. Inputs are tensors, arrays and models, never
paths, so a notebook can call any of them; the latent space is read through vaelab/latent.py.
Figures are built from `matplotlib.figure.Figure`, not pyplot: no global state, and no backend
forced on the caller.
"""
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

from vaelab.errors import VaelabError
from vaelab.images import tile
from vaelab.latent import Plane, decode, grid_values, scatter_subset, walk
from vaelab.pixels import to_float

DPI = 100


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
    pick = scatter_subset(len(z), n, seed)
    pick = pick[np.random.default_rng(seed).permutation(len(pick))]  # drawn in random order: no class on top
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


# ---- the evaluation and the sweep --------------------------------------------------------------

def confusion_figure(matrices: dict, classes):
    """One panel per classifier: counts, each row (true class) shaded by its share."""
    fig = _figure(4.6 * len(matrices), 4.4)
    for i, (title, matrix) in enumerate(matrices.items()):
        m = np.asarray(matrix)
        ax = fig.add_subplot(1, len(matrices), i + 1)
        share = m / np.maximum(m.sum(1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (r, c), count in np.ndenumerate(m):
            ax.text(c, r, str(count), ha="center", va="center", fontsize=6, color="white" if share[r, c] > 0.5 else "black")
        ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
        ax.set(title=title, xlabel="predicted", ylabel="true")
    return fig


def sweep_figure(name: str, rows: list[dict], title: str = "") -> Figure:
    """The sweep: test reconstruction, KL and -ELBO (and -L_K when measured) against the value
    of the swept setting `name` (rows of vaelab.sweep)."""
    x = [r["value"] for r in rows]
    panels = [("test reconstruction (nats)", "test_recon"), ("test KL (nats)", "test_kl"), ("-ELBO (nats)", "test_elbo")]
    fig = Figure(figsize=(4 * len(panels), 3.4), dpi=DPI, layout="constrained")
    for i, (heading, key) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        sign = -1 if key == "test_elbo" else 1
        ax.plot(x, [sign * r[key] for r in rows], "o-", label="-ELBO" if sign < 0 else None)
        if key == "test_elbo" and rows[0]["iw_bound"] is not None:
            ax.plot(x, [-r["iw_bound"] for r in rows], "s--", label="-L_K")
            ax.legend()
        if min(x) > 0 and max(x) / min(x) >= 4:
            ax.set_xscale("log", base=2)
        ax.set_xticks(x, [f"{v:g}" for v in x])
        ax.set(title=heading, xlabel=name.replace("_", " "))
    fig.suptitle(title, fontsize=10)
    return fig
