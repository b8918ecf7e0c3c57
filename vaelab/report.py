"""`vaelab report RUN`: every figure of a run as a PNG, gathered in one self-contained page.

    RUN/figures/NAME.png   the figures of the exercises (README, "Figures"), at 100 dpi
    RUN/report.html        settings, parameter counts, metrics, layers and every figure with a
                           caption; images by relative path, no scripts, no network, so the
                           page opens from disk and survives copying the run folder elsewhere

Reads only the run folder (and the data set it names), through vaelab.runs. matplotlib comes in
with vaelab.plots, imported when a report is made, not when the CLI starts.
"""
import html
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from vaelab import runs
from vaelab.errors import VaelabError
from vaelab.images import read_png
from vaelab.options import check, opt
from vaelab.pages import figure, page, table
from vaelab.summary import layer_rows

Z_KINDS = ("mean", "sample")
PROJECTIONS = ("pca", "tsne")
RANGES = ("data", "scale")
GRID_LIMITS = (2, 64)
COLLAPSED = 0.05  # a data range narrower than this, in prior standard deviations, is collapsed
MAX_EPOCH_ROWS = 20  # figure 9 shows at most this many epochs, evenly spaced


# ---- the settings, and how their flags' text reads ------------------------------------------------

def grid_size(text: str) -> int:
    low, high = GRID_LIMITS
    if not text.strip().isdigit() or not low <= int(text) <= high:
        raise ValueError(f"expected a whole number from {low} to {high}, got {text!r}")
    return int(text)


def label_list(text: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() for p in parts):
        raise ValueError(f"expected class indices separated by commas, such as 4,8, got {text!r}")
    return tuple(int(p) for p in parts)


def pair_list(text: str) -> tuple[tuple[int, int], ...]:
    pairs = [p.strip().split(":") for p in text.split(",")]
    if not all(len(p) == 2 and all(x.strip().isdigit() for x in p) for p in pairs):
        raise ValueError(f"expected class pairs A:B separated by commas, such as 1:7,4:9, got {text!r}")
    return tuple((int(a), int(b)) for a, b in pairs)


def _number(text: str, ok, wanted: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")  # fails `ok` below, so the message is the same
    if not ok(value):
        raise ValueError(f"expected {wanted}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    return _number(text, lambda v: 0 < v < float("inf"), "a number above 0")


def percentile(text: str) -> float:
    return _number(text, lambda v: 0 <= v < 50, "a percentile from 0 up to (not including) 50")


@dataclass(frozen=True)
class ReportSettings:
    """What `make_report` draws; `vaelab report`'s flags are these fields."""
    grid: int = opt(15, "images per side of the manifold grids, 2 to 64", min=GRID_LIMITS[0], max=GRID_LIMITS[1],
                    parse=grid_size)
    labels: tuple[int, ...] = opt((4, 8), "classes of the CVAE manifold grids, comma separated", parse=label_list)
    walk: tuple[tuple[int, int], ...] = opt(((1, 7), (4, 9), (3, 8)), "class pairs A:B of the interpolation walks",
                                            parse=pair_list)
    z: str = opt("mean", "scatter the encoder means or one reparameterised sample per image", choices=Z_KINDS)
    projection: str = opt("pca", "for a latent size above 2: PCA, or t-SNE (slower: seconds to minutes)",
                          choices=PROJECTIONS)
    range_: str = opt("data", "z range of the grids: min/max of the test encoder means, or ±--scale",
                      choices=RANGES, flag="--range")
    scale: float = opt(3.0, "half-width of the grids with --range scale, in prior standard deviations",
                       above=0.0, parse=positive_float)
    trim: float = opt(0.0, "with --range data, span percentiles TRIM to 100-TRIM of the means instead of min/max",
                      min=0.0, parse=percentile)
    seed: int = opt(0, "seed of the scatter subset and of sampled z")

    def __post_init__(self):
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "walk", tuple(tuple(p) for p in self.walk))
        check(self)
        if not self.trim < 50:
            raise VaelabError(f"--trim is a percentile from 0 up to 50, got {self.trim}")


def settings_problem(s: ReportSettings, classes) -> str | None:
    """What is wrong with the classes the settings name, for a data set with these classes, or None."""
    k = len(classes)
    valid = f"this run's data has classes 0..{k - 1} ({', '.join(classes)})"
    bad_labels = [str(x) for x in s.labels if not 0 <= x < k]
    bad_pairs = [f"{a}:{b}" for a, b in s.walk if not (0 <= a < k and 0 <= b < k)]
    if bad_labels:
        return f"--labels {','.join(bad_labels)}: not a class; {valid}"
    if bad_pairs:
        return f"--walk {','.join(bad_pairs)}: not a pair of classes; {valid}"
    return None


def make_report(run_dir, settings: ReportSettings | None = None, **changes) -> Path:
    """Write RUN/figures/*.png and RUN/report.html; returns the page's path. `changes` are
    ReportSettings fields (grid=31, labels=(4, 8), ...)."""
    s = replace(settings or ReportSettings(), **changes)
    problem = settings_problem(s, runs.read_config(run_dir)["data"]["classes"])
    if problem:
        raise VaelabError(problem)  # before any work
    run = runs.open_run(run_dir)
    shown = []
    for name, fig, caption in figures(run, s):
        runs.save_figure(run.dir, name, fig)
        shown.append((name, caption))
    evaluation = runs.read_eval(run.dir) or {}
    runs.remove_figures(run.dir, keep={name for name, _ in shown} | set(evaluation.get("figures", {})))
    return runs.write_report(run.dir, render_page(run, shown))


# ---- the figures, each with its caption ----------------------------------------------------------

def figures(run: runs.Run, s: ReportSettings):
    """(name, Figure, caption) for every figure that applies to the run, in the order of the
    figures in the README."""
    yield from data_figures(run)
    if run.mu.shape[1] >= 2:
        yield from latent_figures(run, s)
    yield from model_figures(run, s)


def data_figures(run: runs.Run):
    from vaelab import plots
    d = run.data
    yield ("classes", plots.class_examples(d.train_x, d.train_y, d.classes),
           f"The first training image of each class of {d.name}, titled with its class name.")
    if run.rows:
        beta = run.config["train"]["beta"]
        yield ("curves", plots.training_curves(run.rows),
               f"Loss per epoch in nats per image: train is the mean over the epoch's batches, test is the "
               f"whole test split with z sampled as in training; total = reconstruction + {beta:g}·KL.")


def latent_figures(run: runs.Run, s: ReportSettings):
    from vaelab import latent, plots
    d, model = run.data, run.model
    plane = latent.latent_plane(run.mu)
    z = run.mu if s.z == "mean" else latent.reparameterized(run.mu, run.logvar, s.seed)
    n = min(5000, len(z))
    what = "Encoder means" if s.z == "mean" else f"Reparameterised samples z = μ + ε·σ (seed {s.seed})"
    which = f"all {n:,} test images" if n == len(z) else f"{n:,} random test images (of {len(z):,}, seed {s.seed})"
    yield ("scatter", plots.latent_scatter(z, d.test_y, d.classes, plane, s.z, s.projection, n, s.seed),
           f"{what} of {which}, coloured by class; axes: {_projection_note(run, s, plane)}.")
    bounds = latent.latent_range(plane.coords(run.mu), s.range_, s.scale, s.trim)
    yield from manifold_figures(run, s, plane, bounds)
    codes = latent.class_codes(run.mu, d.test_y, len(d.classes), 5, s.seed, conditional=_conditional(run))
    yield "classes_grid", plots.class_grid(model, *codes, d.classes), _class_grid_note(run, s)


def manifold_figures(run: runs.Run, s: ReportSettings, plane, bounds):
    """Figure 4 (a VAE) or figure 6 (a CVAE, one grid per chosen label), each with z = 0 alone."""
    from vaelab import latent, plots
    labels = s.labels if _conditional(run) else (None,)
    for label in labels:
        suffix = "" if label is None else f"_label{label}"
        with_label = "" if label is None else f" with label {run.data.classes[label]}"
        tiles = latent.decode_grid(run.model, plane, bounds, s.grid, label)
        title = f"{s.grid}×{s.grid} decoded z{with_label}"
        yield (f"manifold{suffix}", plots.manifold_grid(tiles, bounds, s.grid, plane, title),
               f"Images decoded{with_label} from a {s.grid}×{s.grid} grid of z (the ticks give its values) "
               f"in {plane.about}, {_range_note(run, s, bounds)}.")
        yield (f"origin{suffix}", plots.origin_image(run.model, label),
               f"The image decoded at z = 0, the prior's mean{with_label}.")


def model_figures(run: runs.Run, s: ReportSettings):
    from vaelab import plots
    d, c = run.data, run.model.config
    how = "; a CVAE decodes the first half with label A and the second with label B" if _conditional(run) else ""
    yield ("walks", plots.interpolation_walks(run.model, d.test_x, d.test_y, s.walk, d.classes),
           f"Images decoded at 10 evenly spaced points on the straight line in z between the encoder means "
           f"of the first test image of class A and of class B (those two images at the ends){how}.")
    yield ("architecture", plots.architecture_diagram(layer_rows(run.model), c.input_shape, c.latent_dim, c.num_classes),
           "Encoder and decoder layers in call order, each with its output shape and parameter count "
           "(from a forward pass of one zero input; the layer table above lists the same).")
    epochs, pngs, total = reconstruction_pngs(run.dir)
    if pngs:
        which = "each epoch" if len(epochs) == total else f"{len(epochs)} of the {total} epochs, evenly spaced"
        yield ("reconstructions", plots.reconstruction_epochs(pngs, epochs),
               f"The same test images (top row) and their reconstructions from the encoder mean after "
               f"{which} (one row each, epoch {epochs[0]} first), from recon/epoch_*.png.")


def reconstruction_pngs(run_dir):
    """(epochs, arrays, how many there are) of RUN/recon/epoch_*.png, at most MAX_EPOCH_ROWS of
    them, evenly spaced from the first to the last."""
    found = runs.reconstruction_epochs(run_dir)
    if not found:
        return [], [], 0
    keep = np.unique(np.linspace(0, len(found) - 1, min(len(found), MAX_EPOCH_ROWS)).round().astype(int))
    return [found[i][0] for i in keep], [read_png(found[i][1]) for i in keep], len(found)


def _conditional(run: runs.Run) -> bool:
    return run.model.config.num_classes > 0


def _projection_note(run: runs.Run, s: ReportSettings, plane) -> str:
    if run.mu.shape[1] > 2 and s.projection == "tsne":
        return f"a t-SNE embedding of the {run.mu.shape[1]}-D codes (no units)"
    return plane.about


def _range_note(run: runs.Run, s: ReportSettings, bounds) -> str:
    span = f"first axis {bounds[0, 0]:.2f} to {bounds[0, 1]:.2f}, second {bounds[1, 0]:.2f} to {bounds[1, 1]:.2f}"
    if s.range_ == "scale":
        return f"over ±{s.scale:g} on each axis (prior standard deviations, the range chosen with --range scale)"
    which = "min/max" if s.trim == 0 else f"percentiles {s.trim:g} to {100 - s.trim:g}"
    note = f"over the {which} of the {len(run.mu):,} test encoder means, where the data's codes lie ({span})"
    if min(bounds[:, 1] - bounds[:, 0]) < COLLAPSED:
        note += (": the codes barely move with the image (posterior collapse, KL near 0), so the grid "
                 "looks uniform; vaelab report --range scale shows the decoder over the prior instead")
    return note


def _class_grid_note(run: runs.Run, s: ReportSettings) -> str:
    if _conditional(run):
        return (f"Five samples per class: five z ~ N(0, I) (seed {s.seed}) decoded with each row's label, "
                f"the same z in every row, so a column keeps its style while the label changes.")
    return (f"Five samples per class: z ~ N(m, diag(s²)) (seed {s.seed}), m and s the mean and standard "
            f"deviation of that class's test encoder means, decoded.")


# ---- the page ----------------------------------------------------------------------------------

def render_page(run: runs.Run, shown) -> str:
    c, t, p = run.config, run.config["train"], run.config["params"]
    settings = [(k, _setting(v)) for k, v in t.items()] + [
        ("device used", c["device"]), ("created", c.get("created", "")),
        ("versions", ", ".join(f"{k} {v}" for k, v in c["versions"].items()))]
    latent_dim = run.model.config.latent_dim
    body = [f"<h1>vaelab run <code>{html.escape(run.dir.name)}</code></h1>",
            f"<p>{html.escape(c['model'])} on {html.escape(c['data']['name'])}: latent size {latent_dim}, "
            f"{len(run.rows)} epochs, {c['data']['train_size']:,} training and {c['data']['test_size']:,} test images."
            f"{' With one latent dimension there is no latent scatter or grid (they need two).' if latent_dim < 2 else ''}</p>",
            "<h2>Metrics</h2>", metrics_html(run.rows),
            "<h2>Settings</h2>", table(("setting", "value"), settings),
            "<h2>Parameters</h2>", table(("encoder", "decoder", "total"), [(p["encoder"], p["decoder"], p["encoder"] + p["decoder"])]),
            "<h2>Layers</h2>", layers_html(run.model),
            "<h2>Figures</h2>", *(figure(f"figures/{name}.png", caption, name) for name, caption in shown)]
    return page(f"vaelab report: {run.dir.name}", "\n".join(body))


def _setting(value) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def metrics_html(rows: list[dict]) -> str:
    """The last epoch's losses and the mean seconds per epoch; every epoch in a folded table."""
    if not rows:
        return "<p>No epoch has finished yet (metrics.jsonl is empty).</p>"
    last = rows[-1]
    seconds = sum(r["seconds"] for r in rows) / len(rows)
    keys = ("train_total", "train_recon", "train_kl", "test_total", "test_recon", "test_kl", "test_elbo")
    final = table(("after epoch", "train total", "train recon", "train KL", "test total", "test recon",
                   "test KL", "test ELBO", "seconds per epoch (mean)"),
                  [(last["epoch"], *(float(last[k]) for k in keys), seconds)])
    every = table(list(rows[0]), [list(r.values()) for r in rows])
    return final + f"<details><summary>every epoch</summary>{every}</details>"


def layers_html(model) -> str:
    rows = [(r["part"], r["layer"], r["kind"], "×".join(map(str, r["output_shape"])), r["params"]) for r in layer_rows(model)]
    return table(("part", "layer", "kind", "output shape", "params"), rows)
