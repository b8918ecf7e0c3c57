"""`vaelab report RUN`: every figure of a run as a PNG, gathered in one self-contained page.

    RUN/figures/NAME.png   the figures of SPEC.md, at 100 dpi
    RUN/report.html        settings, parameter counts, metrics, layers and every figure with a
                           caption; images by relative path, no scripts, no network, so the
                           page opens from disk and survives copying the run folder elsewhere

Reads only the run folder (and the data set it names). matplotlib comes in with vaelab.plots,
imported when a report is made, not when the CLI starts.
"""
import argparse
import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaelab.errors import VaelabError
from vaelab.runs import atomic_write, load_model, read_json, read_metrics
from vaelab.summary import layer_rows

Z_KINDS = ("mean", "sample")
PROJECTIONS = ("pca", "tsne")
RANGES = ("data", "scale")
GRID_LIMITS = (2, 64)
COLLAPSED = 0.05  # a data range narrower than this, in prior standard deviations, is collapsed
MAX_EPOCH_ROWS = 20  # figure 9 shows at most this many epochs, evenly spaced


@dataclass(frozen=True)
class Settings:
    """What `make_report` draws; the CLI flags of `vaelab report` map one to one."""
    grid: int = 15
    labels: tuple[int, ...] = (4, 8)
    walk: tuple[tuple[int, int], ...] = ((1, 7), (4, 9), (3, 8))
    projection: str = "pca"
    z: str = "mean"
    range_: str = "data"
    scale: float = 3.0
    trim: float = 0.0
    seed: int = 0


@dataclass
class Run:
    """A run folder read once: the model, its data, and the test encoder outputs."""
    dir: Path
    config: dict
    model: object
    rows: list
    data: object
    mu: np.ndarray  # [N_test, latent_dim] encoder means
    logvar: np.ndarray


def load_run(run_dir) -> Run:
    """Model, config, metrics and data of a run, with the test set encoded once (batches of 1000)."""
    from vaelab import plots
    from vaelab.data import load_dataset
    model, config = load_model(run_dir)
    data = load_dataset(config["train"]["dataset"], config["train"]["data_dir"])
    mu, logvar = plots.encode(model, data.test_x, data.test_y)
    return Run(Path(run_dir), config, model, read_metrics(run_dir), data, mu, logvar)


def make_report(run_dir, grid=15, labels=(4, 8), walk=((1, 7), (4, 9), (3, 8)), projection="pca",
                z="mean", range_="data", scale=3.0, trim=0.0, seed=0) -> Path:
    """Write RUN/figures/*.png and RUN/report.html; returns the page's path."""
    s = Settings(grid, tuple(labels), tuple(tuple(p) for p in walk), projection, z, range_, scale, trim, seed)
    problem = settings_problem(s, read_json(Path(run_dir) / "config.json")["data"]["classes"])
    if problem:
        raise VaelabError(problem)  # before any work
    run = load_run(run_dir)
    out = run.dir / "figures"
    out.mkdir(exist_ok=True)
    shown = []
    for name, fig, caption in figures(run, s):
        fig.savefig(out / f"{name}.png", dpi=100, bbox_inches="tight")  # "tight": no clipped labels
        shown.append((name, caption))
    for stale in set(out.glob("*.png")) - {out / f"{name}.png" for name, _ in shown}:
        if not stale.name.startswith("eval_"):  # vaelab evaluate's figures stay
            stale.unlink()  # from an earlier report with other settings (e.g. other --labels)
    atomic_write(run.dir / "report.html", render_page(run, shown).encode())
    return run.dir / "report.html"


def settings_problem(s: Settings, classes) -> str | None:
    """What is wrong with the settings for a data set with these classes, or None."""
    k = len(classes)
    low, high = GRID_LIMITS
    checks = [
        (low <= s.grid <= high, f"--grid must be from {low} to {high}, got {s.grid}"),
        (s.z in Z_KINDS, f"--z must be one of {', '.join(Z_KINDS)}, got {s.z!r}"),
        (s.projection in PROJECTIONS, f"--projection must be one of {', '.join(PROJECTIONS)}, got {s.projection!r}"),
        (s.range_ in RANGES, f"--range must be one of {', '.join(RANGES)}, got {s.range_!r}"),
        (s.scale > 0, f"--scale must be above 0, got {s.scale}"),
        (0 <= s.trim < 50, f"--trim is a percentile from 0 up to 50, got {s.trim}"),
    ]
    valid = f"this run's data has classes 0..{k - 1} ({', '.join(classes)})"
    bad_labels = [str(x) for x in s.labels if not 0 <= x < k]
    bad_pairs = [f"{a}:{b}" for a, b in s.walk if not (0 <= a < k and 0 <= b < k)]
    checks += [(not bad_labels, f"--labels {','.join(bad_labels)}: not a class; {valid}"),
               (not bad_pairs, f"--walk {','.join(bad_pairs)}: not a pair of classes; {valid}")]
    return next((message for ok, message in checks if not ok), None)


# ---- the figures, each with its caption ----------------------------------------------------------

def figures(run: Run, s: Settings):
    """(name, Figure, caption) for every figure that applies to the run, in SPEC.md order."""
    yield from data_figures(run)
    if run.mu.shape[1] >= 2:
        yield from latent_figures(run, s)
    yield from model_figures(run, s)


def data_figures(run: Run):
    from vaelab import plots
    d = run.data
    yield ("classes", plots.class_examples(d.train_x, d.train_y, d.classes),
           f"The first training image of each class of {d.name}, titled with its class name.")
    if run.rows:
        beta = run.config["train"]["beta"]
        yield ("curves", plots.training_curves(run.rows),
               f"Loss per epoch in nats per image: train is the mean over the epoch's batches, test is the "
               f"whole test split with z sampled as in training; total = reconstruction + {beta:g}·KL.")


def latent_figures(run: Run, s: Settings):
    from vaelab import plots
    d, model = run.data, run.model
    plane = plots.latent_plane(run.mu)
    z = run.mu if s.z == "mean" else plots.reparameterized(run.mu, run.logvar, s.seed)
    n = min(5000, len(z))
    what = "Encoder means" if s.z == "mean" else f"Reparameterised samples z = μ + ε·σ (seed {s.seed})"
    which = f"all {n:,} test images" if n == len(z) else f"{n:,} random test images (of {len(z):,}, seed {s.seed})"
    yield ("scatter", plots.latent_scatter(z, d.test_y, d.classes, plane, s.z, s.projection, n, s.seed),
           f"{what} of {which}, coloured by class; axes: {_projection_note(run, s, plane)}.")
    bounds = plots.latent_range(plane.coords(run.mu), s.range_, s.scale, s.trim)
    yield from manifold_figures(run, s, plane, bounds)
    codes = plots.class_codes(run.mu, d.test_y, len(d.classes), 5, s.seed, conditional=_conditional(run))
    yield "classes_grid", plots.class_grid(model, *codes, d.classes), _class_grid_note(run, s)


def manifold_figures(run: Run, s: Settings, plane, bounds):
    """Figure 4 (a VAE) or figure 6 (a CVAE, one grid per chosen label), each with z = 0 alone."""
    from vaelab import plots
    labels = s.labels if _conditional(run) else (None,)
    for label in labels:
        suffix = "" if label is None else f"_label{label}"
        with_label = "" if label is None else f" with label {run.data.classes[label]}"
        tiles = plots.decode_grid(run.model, plane, bounds, s.grid, label)
        title = f"{s.grid}×{s.grid} decoded z{with_label}"
        yield (f"manifold{suffix}", plots.manifold_grid(tiles, bounds, s.grid, plane, title),
               f"Images decoded{with_label} from a {s.grid}×{s.grid} grid of z (the ticks give its values) "
               f"in {plane.about}, {_range_note(run, s, bounds)}.")
        yield (f"origin{suffix}", plots.origin_image(run.model, label),
               f"The image decoded at z = 0, the prior's mean{with_label}.")


def model_figures(run: Run, s: Settings):
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


def reconstruction_pngs(run_dir: Path):
    """(epochs, arrays, how many there are) of RUN/recon/epoch_*.png, at most MAX_EPOCH_ROWS of
    them, evenly spaced from the first to the last."""
    from PIL import Image
    paths = sorted((run_dir / "recon").glob("epoch_*.png"), key=lambda p: int(p.stem.split("_")[1]))
    if not paths:
        return [], [], 0
    keep = np.unique(np.linspace(0, len(paths) - 1, min(len(paths), MAX_EPOCH_ROWS)).round().astype(int))
    epochs = [int(paths[i].stem.split("_")[1]) for i in keep]
    return epochs, [np.asarray(Image.open(paths[i])) for i in keep], len(paths)


def _conditional(run: Run) -> bool:
    return run.model.config.num_classes > 0


def _projection_note(run: Run, s: Settings, plane) -> str:
    if run.mu.shape[1] > 2 and s.projection == "tsne":
        return f"a t-SNE embedding of the {run.mu.shape[1]}-D codes (no units)"
    return plane.about


def _range_note(run: Run, s: Settings, bounds) -> str:
    span = f"first axis {bounds[0, 0]:.2f} to {bounds[0, 1]:.2f}, second {bounds[1, 0]:.2f} to {bounds[1, 1]:.2f}"
    if s.range_ == "scale":
        return f"over ±{s.scale:g} on each axis (prior standard deviations, the range chosen with --range scale)"
    which = "min/max" if s.trim == 0 else f"percentiles {s.trim:g} to {100 - s.trim:g}"
    note = f"over the {which} of the {len(run.mu):,} test encoder means, where the data's codes lie ({span})"
    if min(bounds[:, 1] - bounds[:, 0]) < COLLAPSED:
        note += (": the codes barely move with the image (posterior collapse, KL near 0), so the grid "
                 "looks uniform; vaelab report --range scale shows the decoder over the prior instead")
    return note


def _class_grid_note(run: Run, s: Settings) -> str:
    if _conditional(run):
        return (f"Five samples per class: five z ~ N(0, I) (seed {s.seed}) decoded with each row's label, "
                f"the same z in every row, so a column keeps its style while the label changes.")
    return (f"Five samples per class: z ~ N(m, diag(s²)) (seed {s.seed}), m and s the mean and standard "
            f"deviation of that class's test encoder means, decoded.")


# ---- the page ----------------------------------------------------------------------------------

STYLE = """body{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}figure{margin:1.5em 0}img{max-width:100%}
figcaption{color:#444;max-width:900px}code{background:#f3f3f3;padding:0 3px}"""


def table(header, rows) -> str:
    """An HTML table; numbers are right-aligned, everything is escaped."""
    def cell(v, tag="td"):
        numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
        text = f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" if numeric else str(v)
        return f"<{tag}{' class=n' if numeric else ''}>{html.escape(text)}</{tag}>"
    head = "".join(cell(h, "th") for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>\n")


def figure_html(name: str, caption: str) -> str:
    return (f"<figure><img src=\"figures/{name}.png\" alt=\"{html.escape(name)}\">"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def render_page(run: Run, shown) -> str:
    c, t, p = run.config, run.config["train"], run.config["params"]
    settings = [(k, _setting(v)) for k, v in t.items()] + [
        ("device used", c["device"]), ("created", c.get("created", "")),
        ("versions", ", ".join(f"{k} {v}" for k, v in c["versions"].items()))]
    body = [f"<h1>vaelab run <code>{html.escape(run.dir.name)}</code></h1>",
            f"<p>{html.escape(c['model'])} on {html.escape(c['data']['name'])}: latent size {run.mu.shape[1]}, "
            f"{len(run.rows)} epochs, {c['data']['train_size']:,} training and {c['data']['test_size']:,} test images."
            f"{' With one latent dimension there is no latent scatter or grid (they need two).' if run.mu.shape[1] < 2 else ''}</p>",
            "<h2>Metrics</h2>", metrics_html(run.rows),
            "<h2>Settings</h2>", table(("setting", "value"), settings),
            "<h2>Parameters</h2>", table(("encoder", "decoder", "total"), [(p["encoder"], p["decoder"], p["encoder"] + p["decoder"])]),
            "<h2>Layers</h2>", layers_html(run.model),
            "<h2>Figures</h2>", *(figure_html(name, caption) for name, caption in shown)]
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


# ---- the `vaelab report` subcommand -------------------------------------------------------------

def grid_size(text: str) -> int:
    low, high = GRID_LIMITS
    if not text.strip().isdigit() or not low <= int(text) <= high:
        raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, got {text!r}")
    return int(text)


def label_list(text: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected class indices separated by commas, such as 4,8, got {text!r}")
    return tuple(int(p) for p in parts)


def pair_list(text: str) -> tuple[tuple[int, int], ...]:
    pairs = [p.strip().split(":") for p in text.split(",")]
    if not all(len(p) == 2 and all(x.strip().isdigit() for x in p) for p in pairs):
        raise argparse.ArgumentTypeError(f"expected class pairs A:B separated by commas, such as 1:7,4:9, got {text!r}")
    return tuple((int(a), int(b)) for a, b in pairs)


def _number(text: str, ok, wanted: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")  # fails `ok` below, so the message is the same
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    return _number(text, lambda v: 0 < v < float("inf"), "a number above 0")


def percentile(text: str) -> float:
    return _number(text, lambda v: 0 <= v < 50, "a percentile from 0 up to (not including) 50")


def add_report_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="write RUN/figures/*.png and RUN/report.html")
    p.add_argument("run", help="run folder")
    p.add_argument("--grid", type=grid_size, default=15, help="images per side of the manifold grids, 2 to 64 (default: 15)")
    p.add_argument("--labels", type=label_list, default=(4, 8), help="classes of the CVAE manifold grids, comma separated (default: 4,8)")
    p.add_argument("--walk", type=pair_list, default=((1, 7), (4, 9), (3, 8)), help="class pairs A:B of the interpolation walks (default: 1:7,4:9,3:8)")
    p.add_argument("--z", choices=Z_KINDS, default="mean", help="scatter the encoder means or one reparameterised sample per image (default: mean)")
    p.add_argument("--projection", choices=PROJECTIONS, default="pca", help="for a latent size above 2: PCA, or t-SNE (slower: seconds to minutes) (default: pca)")
    p.add_argument("--range", dest="range_", choices=RANGES, default="data", help="z range of the grids: min/max of the test encoder means, or ±--scale (default: data)")
    p.add_argument("--scale", type=positive_float, default=3.0, help="half-width of the grids with --range scale, in prior standard deviations (default: 3)")
    p.add_argument("--trim", type=percentile, default=0.0, help="with --range data, span percentiles TRIM to 100-TRIM of the means instead of min/max (default: 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the scatter subset and of sampled z (default: 0)")
    p.set_defaults(handler=cmd_report, report_parser=p)
    return p


def cmd_report(args) -> None:
    classes = read_json(Path(args.run) / "config.json")["data"]["classes"]
    s = Settings(args.grid, args.labels, args.walk, args.projection, args.z, args.range_, args.scale, args.trim, args.seed)
    problem = settings_problem(s, classes)
    if problem:
        args.report_parser.error(problem)  # usage line + message, exit status 2, like any bad flag
    print(f"wrote {make_report(args.run, **vars(s))}")
