"""Figures of several runs and of numbers: runs side by side (figure 9 of the exercises), the
evaluation's confusion matrices and the sweep's trade-off. Built like plots.py's: plain
matplotlib Figures that show themselves in Jupyter.
"""

import numpy as np
from matplotlib.patches import Circle
from matplotlib.ticker import MaxNLocator

from vaelab.report.plots import Figure, class_colours, manifold_axes, new_figure, no_ticks, show_image

TITLE = 10  # points: titles stay readable when a page shrinks the figure


def compare_curves(runs: dict[str, list[dict]]) -> Figure:
    """Model comparison: each run's test total / reconstruction / KL per epoch, overlaid."""
    fig = new_figure(11, 3.4)
    for i, (key, title) in enumerate(
        (("total", "test total loss"), ("recon", "test reconstruction"), ("kl", "test KL"))
    ):
        ax = fig.add_subplot(1, 3, i + 1)
        for name, rows in runs.items():
            ax.plot([r["epoch"] for r in rows], [r[f"test_{key}"] for r in rows], marker="o", ms=3, label=name)
        ax.set(title=title, xlabel="epoch", ylabel="nats per image")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
    fig.axes[0].legend(fontsize=8)
    return fig


def side_by_side(images: dict[str, np.ndarray]) -> Figure:
    """Model comparison: one image per run (e.g. their manifold grids), titled with its name."""
    fig = new_figure(3.2 * len(images), 3.6)
    for i, (name, image) in enumerate(images.items()):
        ax = fig.add_subplot(1, len(images), i + 1)
        show_image(ax, image)
        ax.set_title(name, fontsize=TITLE)
        no_ticks(ax)
    return fig


def manifold_panels(runs: dict[str, tuple]) -> Figure:
    """Model comparison: each run's manifold grid, ticked with its z values.
    runs: name -> (tiles, xs, ys, axis names), as plots.manifold_grid takes them."""
    fig = new_figure(4.4 * len(runs), 4.6)
    for i, (name, (tiles, xs, ys, names)) in enumerate(runs.items()):
        manifold_axes(fig.add_subplot(1, len(runs), i + 1), tiles, xs, ys, names, name, fontsize=7)
        fig.axes[-1].title.set_fontsize(TITLE)
    return fig


def scatter_panels(runs: dict[str, tuple], classes) -> Figure:
    """Model comparison: each run's test z (2-D, or in its plane) coloured by class, with the
    prior's 1- and 2-sigma circles, so how well q(z) fills N(0, I) can be compared by eye.
    runs: name -> (points [N, 2], labels, axis names)."""
    fig = new_figure(4.2 * len(runs), 4.0)
    k = len(classes)
    for i, (name, (points, labels, names)) in enumerate(runs.items()):
        ax = fig.add_subplot(1, len(runs), i + 1)
        dots = ax.scatter(
            points[:, 0],
            points[:, 1],
            c=labels,
            cmap=class_colours(k),
            vmin=-0.5,
            vmax=k - 0.5,
            s=2,
            alpha=0.7,
            linewidths=0,
        )
        for r in (1, 2):
            ax.add_patch(Circle((0, 0), r, fill=False, ls="--", lw=0.8, color="black"))
        ax.set_aspect("equal", adjustable="datalim")
        ax.set(title=name, xlabel=names[0], ylabel=names[1])
        ax.title.set_fontsize(TITLE)
    bar = fig.colorbar(dots, ax=fig.axes, ticks=range(k), fraction=0.02)
    bar.ax.set_yticklabels([f"{i} {c}" if c != str(i) else c for i, c in enumerate(classes)], fontsize=7)
    return fig


def confusion_figure(matrices: dict, classes):
    """One panel per classifier: counts, each row (true class) shaded by its share. Two panels fill
    a report page's 1,070 pixels unscaled, so the 10-point counts stay 10 pixels high or more."""
    fig = new_figure(5.3 * len(matrices), 5.2)
    for i, (title, matrix) in enumerate(matrices.items()):
        m = np.asarray(matrix)
        ax = fig.add_subplot(1, len(matrices), i + 1)
        share = m / np.maximum(m.sum(1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (r, c), count in np.ndenumerate(m):
            ax.text(
                c, r, str(count), ha="center", va="center", fontsize=10, color="white" if share[r, c] > 0.5 else "black"
            )
        ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=9)
        ax.set_yticks(range(len(classes)), classes, fontsize=9)
        ax.set(title=title, xlabel="predicted", ylabel="true")
    return fig


def sweep_figure(name: str, rows: list[dict], title: str = "") -> Figure:
    """The sweep: test reconstruction, KL and -ELBO (and -L_K when measured) against the value
    of the swept setting `name` (rows of vaelab.sweeps)."""
    x = [r["value"] for r in rows]
    panels = [
        ("test reconstruction (nats)", "test_recon"),
        ("test KL (nats)", "test_kl"),
        ("-ELBO (nats)", "test_elbo"),
    ]
    fig = new_figure(4 * len(panels), 3.4)
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
