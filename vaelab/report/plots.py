"""Every figure vaelab draws: one function per figure, each returning a matplotlib Figure.

Figures 1-9 are those of the exercises (README, "Figures"): the classes, training curves, latent
scatter, manifold grid and the image at z = 0, per-class grid, CVAE manifold, interpolation walks,
architecture and reconstructions per epoch; then image grids with labelled rows and columns.
Figures of several runs, and of the evaluation's and the sweep's numbers, are in charts.py.
Inputs are arrays and tensors (images, points, values), never a model or a path: figures.py
decides what to draw and runs the model; this module only draws.
Figures are built from `matplotlib.figure.Figure`, not pyplot: no global state, and no backend
forced on the caller. They show themselves in Jupyter (`Figure._repr_png_`) with no `%matplotlib`
magic, and save as PNG anywhere (`fig.savefig`).
"""

import io

import matplotlib.figure
import numpy as np
import torch
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

from vaelab.data.pixels import to_float
from vaelab.images import tile

DPI = 100


class Figure(matplotlib.figure.Figure):
    """A matplotlib Figure that IPython displays as a PNG: without pyplot, IPython has no
    formatter for figures, and a notebook would show only `<Figure size ...>`."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
        return buffer.getvalue()


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def show_image(ax, image: np.ndarray) -> None:
    ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")


def no_ticks(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


# ---- 1, 2: the data and the training curves ----------------------------------------------------


def class_examples(images: torch.Tensor, labels, classes) -> Figure:
    """Figure 1: the first image of each class (uint8 [N, C, H, W]), titled with its name."""
    labels = np.asarray(labels)
    fig = new_figure(1.1 * len(classes), 1.5)
    for k, name in enumerate(classes):
        ax = fig.add_subplot(1, len(classes), k + 1)
        picks = np.flatnonzero(labels == k)
        if len(picks):
            show_image(ax, tile(to_float(images[picks[:1]]).numpy(), 1))
        ax.set_title(name, fontsize=9)
        no_ticks(ax)
    return fig


def training_curves(rows: list[dict], panels) -> Figure:
    """Figure 2: each term per epoch, train and test, from metrics.jsonl rows; `panels` are
    (term, title, unit) in the order drawn (total, reconstruction, KL, and an MMD run's MMD term)."""
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in rows]
    fig = new_figure(3.7 * len(panels), 3.2)
    for i, (key, title, unit) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for split in ("train", "test"):
            ax.plot(epochs, [r[f"{split}_{key}"] for r in rows], marker="o", ms=3, label=split)
        ax.set(title=title, xlabel="epoch", ylabel=unit)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
        ax.legend()
    return fig


def epoch_seconds(rows: list[dict], images_per_epoch: int) -> Figure:
    """Seconds of each epoch as a bar, training (images_per_epoch / images per second) and the
    test evaluation stacked, so one slow epoch shows where a mean would hide it."""
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in rows]
    training = [min(r["seconds"], images_per_epoch / r["images_per_second"]) for r in rows]
    fig = new_figure(min(11.0, 3.0 + 0.3 * len(rows)), 2.8)
    ax = fig.add_subplot()
    ax.bar(epochs, training, label="training")
    ax.bar(
        epochs,
        [r["seconds"] - t for r, t in zip(rows, training, strict=True)],
        bottom=training,
        label="test evaluation",
    )
    ax.set(xlabel="epoch", ylabel="seconds", title="time per epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    return fig


# ---- 3: latent scatter -------------------------------------------------------------------------


def latent_scatter(points: np.ndarray, labels, classes, names, title: str, circles: bool = True) -> Figure:
    """Figure 3: codes in a plane (points [N, 2], in the order drawn) coloured by class, the axes
    named by `names`. With `circles` the prior N(0, I)'s 1- and 2-sigma circles are dashed and both
    axes share one scale (in a plane through z = 0 the prior's projection is N(0, I) too; not on a t-SNE map)."""
    labels = np.asarray(labels)
    fig = new_figure(6.4, 5.2)
    ax = fig.add_subplot()
    k = len(classes)
    dots = ax.scatter(
        points[:, 0],
        points[:, 1],
        c=labels,
        cmap=class_colours(k),
        vmin=-0.5,
        vmax=k - 0.5,
        s=3 if len(points) > 2000 else 8,
        alpha=0.8,
        linewidths=0,
    )
    bar = fig.colorbar(dots, ax=ax, ticks=range(k))
    bar.ax.set_yticklabels([f"{i} {name}" if name != str(i) else name for i, name in enumerate(classes)])
    if circles:
        for r in (1, 2):
            ax.add_patch(Circle((0, 0), r, fill=False, ls="--", lw=0.8, color="black"))
        ax.set_aspect("equal", adjustable="datalim")  # z units alike on both axes: circles stay round
    ax.set(title=title, xlabel=names[0], ylabel=names[1])
    return fig


def class_colours(k: int):
    from matplotlib import colormaps

    return colormaps["tab10" if k <= 10 else "tab20"].resampled(k)


# ---- 4, 6: manifold grid and the image at z = 0 ------------------------------------------------


def manifold_grid(tiles: np.ndarray, xs: np.ndarray, ys: np.ndarray, names, title: str) -> Figure:
    """Figures 4 and 6: an n×n tiled grid of decoded images (row 0 at the top holds the largest
    second coordinate), ticked with the z values `xs` and `ys` (each ascending, n of them) of its
    columns and rows: at most 9 ticks a side, the first and the last included."""
    fig = new_figure(1.4 + tiles.shape[1] / DPI, 1.1 + tiles.shape[0] / DPI)  # about 1 screen pixel per pixel
    manifold_axes(fig.add_subplot(), tiles, xs, ys, names, title)
    return fig


def manifold_axes(
    ax, tiles: np.ndarray, xs: np.ndarray, ys: np.ndarray, names, title: str, fontsize: float = 8
) -> None:
    """Draw a manifold grid into `ax`, ticked with its z values."""
    n = len(xs)
    size = tiles.shape[0] // n
    show_image(ax, tiles)
    shown = _tick_positions(n)
    ax.set_xticks((shown + 0.5) * size, _tick_labels(xs[shown], xs), fontsize=fontsize)
    ax.set_yticks((shown + 0.5) * size, _tick_labels(ys[::-1][shown], ys), fontsize=fontsize)
    ax.set(title=title, xlabel=names[0], ylabel=names[1])


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


def origin_image(image: torch.Tensor, title: str) -> Figure:
    """Figure 4, second part: one decoded image [1, C, H, W] on its own (the image at z = 0)."""
    fig = new_figure(2, 2.2)
    ax = fig.add_subplot()
    show_image(ax, tile(image, 1))
    ax.set_title(title, fontsize=9)
    no_ticks(ax)
    return fig


# ---- 5, 7: per-class samples and interpolation walks -------------------------------------------


def class_grid(images: torch.Tensor, classes, notes=None, title: str = "") -> Figure:
    """Figure 5: one row per class of decoded images [K * per_class, C, H, W], class by class.
    `notes`: a text per row, written at its right (e.g. how many of its images a classifier recognises)."""
    per_class = len(images) // len(classes)
    tiles = tile(images, per_class)
    size = tiles.shape[0] // len(classes)
    fig = new_figure(1.3 + tiles.shape[1] / DPI * 1.5 + (2.4 if notes else 0), 0.6 + tiles.shape[0] / DPI * 1.5)
    ax = fig.add_subplot()
    show_image(ax, tiles)
    rows = (np.arange(len(classes)) + 0.5) * size
    ax.set_yticks(rows, list(classes), fontsize=8)
    ax.set_xticks([])
    for row, note in zip(rows, notes or (), strict=False):
        ax.text(tiles.shape[1] + size * 0.2, row, note, va="center", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def interpolation_walks(strips: list, names: list[str]) -> Figure:
    """Figure 7: one strip per walk, (ends [2, C, H, W], steps [S, C, H, W]): input a, the decoded
    walk, input b; each strip named ("7 → 1")."""
    steps = len(strips[0][1])
    fig = new_figure(1.2 + (steps + 2.5) * 0.42, 0.5 + 0.55 * len(strips))
    for row, ((ends, images), name) in enumerate(zip(strips, names, strict=True)):
        ax = fig.add_subplot(len(strips), 1, row + 1)
        show_image(ax, _strip(tile(ends[:1], 1), tile(images, steps), tile(ends[1:], 1)))
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
        no_ticks(ax)
    w = strips[0][0].shape[-1]
    gap = w // 4
    ax.set_xticks(
        [w / 2, w + gap + w / 2, w + gap + (steps - 0.5) * w, (steps + 1.5) * w + 2 * gap],
        ["input A", "t = 0", "t = 1", "input B"],
        fontsize=8,
    )
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
    in call order, from `vaelab.models.summary.layer_rows`; the mu and logvar heads side by side."""
    parts = _diagram_rows(rows, input_shape, latent_dim, num_classes)
    height = max(len(boxes) for boxes in parts.values())
    fig = new_figure(9, 0.75 * height + 0.6)
    for col, (part, boxes) in enumerate(parts.items()):
        ax = fig.add_subplot(1, 2, col + 1)
        total = sum(r["params"] for r in rows if r["part"] == part)
        ax.set(xlim=(0, 1), ylim=(height, -0.1), title=f"{part} ({total:,} params)")
        ax.axis("off")
        for i, texts in enumerate(boxes):
            _boxes(ax, i, texts)
    return fig


def _diagram_rows(rows: list[dict], input_shape, latent_dim: int, num_classes: int) -> dict:
    """{part: [[box text, ...] per diagram row]}, starting with the part's input. Layers that read
    the same input stand side by side: the mu and logvar heads, and a conditional conv encoder's
    label branch beside the first convolution, whose output it joins."""
    label = f" + label ({num_classes} classes)" if num_classes else ""
    decoder_in = f"{latent_dim} + {num_classes} = {latent_dim + num_classes}" if num_classes else f"{latent_dim}"
    parts = {"encoder": [[f"input x{label}\n{_shape(input_shape)}"]], "decoder": [[f"input z{label}\n{decoder_in}"]]}
    previous = None
    for r in rows:
        text = f"{r['layer']}: {r['kind']}\n{_shape(r['output_shape'])} · {r['params']:,} params"
        boxes = parts["encoder" if r["part"] == "sample" else r["part"]]  # z is sampled from the encoder's output
        if r["part"] == "sample":
            boxes.append(
                [f"{r['layer']}: {r['kind']}, ε ~ N(0, I)\n{_shape(r['output_shape'])} · 0 params → the decoder"]
            )
        elif r["layer"] == "logvar" and boxes[-1][0].startswith("mu:"):
            boxes[-1].append(text)  # the two heads read the same input: one row
        elif r["layer"] == "label" and r["part"] == "encoder" and previous is not None:
            boxes[-1].append(
                f"label: {r['kind']} → {_shape(previous['output_shape'])}\n"
                f"joins {previous['layer']} · {r['params']:,} params"
            )
        else:
            boxes.append([text])
        previous = r
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
        ax.add_patch(
            FancyBboxPatch(
                (left + 0.03, i + 0.1), width - 0.06, 0.6, boxstyle="round,pad=0.02", fc=colour, ec="#4a6a8a"
            )
        )
        ax.text(centre, i + 0.4, text, ha="center", va="center", fontsize=8 if len(texts) == 1 else 7)
        if i:
            ax.add_patch(FancyArrowPatch((0.5, i - 0.28), (centre, i + 0.08), arrowstyle="-|>", mutation_scale=10))


# ---- 9: reconstructions per epoch ---------------------------------------


def reconstruction_epochs(pngs: list[np.ndarray], epochs: list[int]) -> Figure:
    """Figure 9: the RUN/recon/epoch_*.png arrays (inputs on top, reconstructions below) as one
    image: the inputs once, then each epoch's reconstructions, epochs down."""
    half = pngs[0].shape[0] // 2  # image_grid draws two rows of equal height
    bands = [pngs[0][:half]] + [png[half : 2 * half] for png in pngs]
    image = np.concatenate(bands) / 255.0
    fig = new_figure(1.3 + image.shape[1] / DPI, 0.5 + image.shape[0] / DPI)
    ax = fig.add_subplot()
    show_image(ax, image)
    ax.set_yticks((np.arange(len(bands)) + 0.5) * half, ["test images"] + [f"epoch {e}" for e in epochs], fontsize=8)
    ax.set_xticks([])
    return fig


# ---- images: samples, the CVAE's label at z = 0, the label swap -----------------------------------


def image_figure(image: np.ndarray, title: str = "", scale: float = 1.5) -> Figure:
    """A tiled image (vaelab.images.tile) shown as it is, with a title."""
    fig = new_figure(0.4 + image.shape[1] / DPI * scale, 0.5 + image.shape[0] / DPI * scale)
    ax = fig.add_subplot()
    show_image(ax, image)
    no_ticks(ax)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def labelled_columns(images: torch.Tensor, columns, rows=(), title: str = "") -> Figure:
    """Images [len(rows) * len(columns), C, H, W] row by row, each column titled (and each row
    named): the CVAE's z = 0 under every label, or its label swap."""
    ncol = len(columns)
    image = tile(images, ncol)
    size = image.shape[1] // ncol
    fig = new_figure(1.0 + image.shape[1] / DPI * 1.5, 0.7 + image.shape[0] / DPI * 1.5)
    ax = fig.add_subplot()
    show_image(ax, image)
    ax.set_xticks((np.arange(ncol) + 0.5) * size, list(columns), fontsize=8)
    ax.xaxis.tick_top()
    ax.set_yticks((np.arange(len(rows)) + 0.5) * size, list(rows), fontsize=8)
    if title:
        ax.set_xlabel(title, fontsize=9)
    return fig
