"""`vaelab compare RUN RUN ...`: runs side by side (figure 9 of the exercises).

    OUT/compare.md     the table, also printed to the terminal
    OUT/compare.html   the table and both figures, self-contained like a run's report
    OUT/curves.png     the runs' test curves overlaid
    OUT/scatters.png   their test encoder means side by side, with the prior's 1- and 2-sigma
                       circles (runs on one data set with a latent size of 2 or more)
    OUT/samples.png    images each run generates from the same z ~ N(0, I)
    OUT/manifolds.png  their manifold grids side by side

The losses are read from each run's metrics.jsonl (its last epoch); seconds per epoch is the
mean over the run's epochs, measured on the device named in its config.json. Measured here on
the test set: how far the aggregate posterior q(z) is from the prior (the MMD of the objective
between sampled test codes and N(0, I) draws), the active units, and sample quality (the
classifier-feature Fréchet distance, confidence and class balance of vaelab/evaluation/quality.py).
"""

import html
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from vaelab import latent, runs
from vaelab.errors import VaelabError
from vaelab.files import atomic_write
from vaelab.images import save_figure_png
from vaelab.options import as_given, check, named, opt
from vaelab.report import GRID_LIMITS, grid_size
from vaelab.report.pages import figure, markdown_table, page, table

COLUMNS = (
    ("run", "run"),
    ("model", "model"),
    ("dataset", "data set"),
    ("latent_dim", "latent"),
    ("params", "parameters"),
    ("epochs", "epochs"),
    ("train_total", "train loss"),
    ("test_total", "test loss"),
    ("test_recon", "test recon"),
    ("test_kl", "test KL"),
    ("test_elbo", "test ELBO"),
    ("seconds", "s / epoch"),
    ("prior_mmd", "q(z) MMD to prior"),
    ("active_units", "active units"),
    ("knn_on_z", "k-NN on z"),
    ("logistic_on_z", "logistic on z"),
    ("frechet_distance", "sample Fréchet"),
    ("mean_confidence", "sample confidence"),
    ("balance", "class balance"),
    ("device", "device"),
    ("objective", "objective"),
)
FORMATS = {
    "prior_mmd": "{:.4f}",
    "balance": "{:.3f}",
    "mean_confidence": "{:.1%}",
    "knn_on_z": "{:.1%}",
    "logistic_on_z": "{:.1%}",
}
TEXT_COLUMNS = ("run", "model", "dataset", "device", "objective")
MMD_POINTS = 2000  # test codes (and prior draws) in the q(z)-to-prior MMD


def sample_count(text: str) -> int:
    """0 (skip) or at least 100: fewer images give no stable Fréchet distance."""
    if not text.strip().isdigit() or 0 < int(text) < 100:
        raise ValueError(f"expected 0 (skip) or a whole number of at least 100 images, got {text!r}")
    return int(text)


@dataclass(frozen=True)
class CompareSettings:
    """What `compare_runs` measures and draws; `vaelab compare`'s flags are these fields."""

    grid: int = opt(
        15, "images per side of each manifold grid, 2 to 64", min=GRID_LIMITS[0], max=GRID_LIMITS[1], parse=grid_size
    )
    label: int = opt(4, "class decoded by conditional models' grids", min=0)
    quality_samples: int = opt(
        10_000, "images generated per run for sample quality; 0 skips it", min=0, cap=100_000, parse=sample_count
    )
    classifier_epochs: int | None = opt(
        None,
        "epochs of the sample-quality classifier when first trained for a "
        "data set; None: 3 on a full set, up to 15 on a small one",
        min=1,
    )

    def __post_init__(self):
        check(self)
        if 0 < self.quality_samples < 100:
            raise VaelabError(
                f"{named('quality_samples')} must be 0 (skip) or at least 100, got {self.quality_samples}"
            )


def run_summary(run: runs.Run, name: str | None = None) -> dict:
    """One row of the comparison: the run's settings and the metrics of its last epoch."""
    if not run.rows:
        raise VaelabError(f"{run.dir} has no finished epoch (metrics.jsonl is empty); train it first or leave it out")
    config, last = run.config, run.rows[-1]
    return {
        "run": name or run.dir.name,
        "model": config["model"],
        "dataset": config["data"]["name"],
        "latent_dim": config["model_config"]["latent_dim"],
        "params": sum(config["params"].values()),
        "epochs": last["epoch"],
        **{k: last[k] for k in ("train_total", "test_total", "test_recon", "test_kl", "test_elbo")},
        "seconds": run.seconds_per_epoch,
        "device": config.get("device", ""),
        "objective": run.objective.label,
    }


def latent_summary(run, seed: int = 0) -> dict:
    """How the run's test codes sit against the prior: MMD of MMD_POINTS sampled z to as many
    N(0, I) draws (0 when q(z) = p(z); kernel of the MMD objective), and the active units."""
    from vaelab.evaluation import latent_stats
    from vaelab.losses import mmd

    z = torch.from_numpy(latent.reparameterized(run.mu, run.logvar, seed)).double()
    g = torch.Generator().manual_seed(seed)
    z = z[torch.randperm(len(z), generator=g)[:MMD_POINTS]]
    stats = latent_stats(torch.from_numpy(run.mu), torch.from_numpy(run.logvar))
    return {
        "prior_mmd": mmd(z, torch.randn(z.shape, generator=g, dtype=z.dtype)).item(),
        "active_units": stats["active_units"],
    }


def classifier_summary(run, k: int = 5) -> dict:
    """Test accuracy of k-NN and logistic regression fitted to the training encoder means (a CVAE's
    encoded with their own labels): how much of the class the code holds. Blanks without labels."""
    if not run.data.labelled or run.data.num_classes < 2:
        return {"knn_on_z": "–", "logistic_on_z": "–"}
    from vaelab.evaluation import latent_classifiers

    d = run.data
    train_mu, _ = latent.encode_set(run.model, d.train_x, d.train_y)
    out = latent_classifiers(train_mu, d.train_y.numpy(), run.mu, d.test_y.numpy(), k)
    return {"knn_on_z": out["knn"]["accuracy"], "logistic_on_z": out["logistic"]["accuracy"]}


def conditioning_note(summaries: list[dict], loaded: list) -> str:
    """Where a VAE and a CVAE of one data set are compared: what the label takes out of z."""
    notes = []
    for dataset in dict.fromkeys(s["dataset"] for s in summaries):
        pairs = [(s, run) for s, run in zip(summaries, loaded, strict=True) if s["dataset"] == dataset]
        vaes = [s for s, run in pairs if not run.conditional and isinstance(s["knn_on_z"], float)]
        cvaes = [s for s, run in pairs if run.conditional and isinstance(s["knn_on_z"], float)]
        if not (vaes and cvaes):
            continue
        notes.append(
            f"On {dataset}, the class is read from z at {_scores(vaes)} for the VAE, and at {_scores(cvaes)} for "
            f"the CVAE, whose encoder and decoder are given the label: the closer the CVAE is to chance, the "
            f"more of the class its label carries, leaving z to hold the style."
        )
    return " ".join(notes)


def _scores(group: list[dict]) -> str:
    return ", ".join(f"{s['run']} {s['knn_on_z']:.1%} (k-NN) / {s['logistic_on_z']:.1%} (logistic)" for s in group)


def quality_summary(run, samples: int, classifier_epochs: int | None = None) -> dict:
    """Sample quality of the run (vaelab/evaluation/quality.py): blanks when skipped or the data has no labels."""
    keys = ("frechet_distance", "mean_confidence", "balance")
    if not samples or not run.data.labelled:
        return dict.fromkeys(keys, "–")
    from vaelab.evaluation import sample_quality

    q = sample_quality(run.model, run.data, samples, epochs=classifier_epochs)
    return {k: q[k] for k in keys} | {"classifier_accuracy": q["classifier"]["test_accuracy"]}


def _cell(value, key: str = "") -> str:
    if key in FORMATS and isinstance(value, float):
        return FORMATS[key].format(value)
    if isinstance(value, float):
        return f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def compare_markdown(summaries: list[dict]) -> str:
    return markdown_table(
        [title for _, title in COLUMNS],
        [[_cell(s[key], key) for key, _ in COLUMNS] for s in summaries],
        [key not in TEXT_COLUMNS for key, _ in COLUMNS],
    )


def run_names(run_dirs) -> list[str]:
    """Folder names, or the paths as given when two folders share a name."""
    names = [Path(d).name for d in run_dirs]
    return names if len(set(names)) == len(names) else [str(d) for d in run_dirs]


def manifold_tiles(run, grid: int = 15, label: int = 4):
    """(tiles, xs, ys, axis names) of a run's manifold grid over its data range (figure 4; a CVAE's
    with `label`, figure 6)."""
    plane = latent.latent_plane(run.mu)
    bounds = latent.latent_range(plane.coords(run.mu))
    classes = run.model.config.num_classes
    conditional = classes > 0
    if conditional and not 0 <= label < classes:
        raise VaelabError(f"{as_given('label', label)} is not a class of {run.dir}: use 0..{classes - 1}")
    tiles = latent.decode_grid(run.model, plane, bounds, grid, label if conditional else None)
    return (tiles, *latent.grid_values(bounds, grid), plane.names)


def compare_runs(
    run_dirs, out_dir, settings: CompareSettings | None = None, trust_code: bool = False, **changes
) -> Path:
    """Write the comparison of `run_dirs` (folders, or opened vaelab.runs.Run) into `out_dir`; returns
    the HTML page's path. `changes` are CompareSettings fields (grid=31, quality_samples=0, ...)."""
    s = replace(settings or CompareSettings(), **changes)
    if not run_dirs:
        raise VaelabError("give at least one run folder to compare")
    names = run_names([r.dir if isinstance(r, runs.Run) else r for r in run_dirs])
    loaded = [r if isinstance(r, runs.Run) else runs.Run.open(r, trust_code=trust_code) for r in run_dirs]
    summaries = [run_summary(run, name) for run, name in zip(loaded, names, strict=True)]
    for summary, run in zip(summaries, loaded, strict=True):
        summary.update(
            latent_summary(run),
            **classifier_summary(run),
            **quality_summary(run, s.quality_samples, s.classifier_epochs),
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shown = save_figures(summaries, loaded, out, s.grid, s.label)
    atomic_write(out / "compare.md", compare_markdown(summaries).encode())
    note = conditioning_note(summaries, loaded)
    atomic_write(
        out / "compare.html", compare_page(summaries, shown, s.grid, s.label, s.quality_samples, note).encode()
    )
    return out / "compare.html"


def save_figures(summaries: list[dict], loaded: list, out: Path, grid: int, label: int) -> list[str]:
    """The comparison's figures in OUT (a scatter and a grid need a latent size of 2 or more, the
    scatters one data set); returns the names written, stale ones from an earlier call removed."""
    from vaelab.report import charts  # matplotlib: only when a comparison is made

    figures = {
        "curves": charts.compare_curves({s["run"]: run.rows for s, run in zip(summaries, loaded, strict=True)}),
        "samples": charts.side_by_side(
            {f"{s['run']} ({s['model']})": sample_tiles(run) for s, run in zip(summaries, loaded, strict=True)}
        ),
    }
    planar = [(s, run) for s, run in zip(summaries, loaded, strict=True) if s["latent_dim"] >= 2]
    if planar and len({s["dataset"] for s, _ in planar}) == 1:
        figures["scatters"] = charts.scatter_panels(
            {f"{s['run']} ({s['model']})": scatter_points(run) for s, run in planar}, planar[0][1].data.classes
        )
    if planar:
        figures["manifolds"] = charts.manifold_panels(
            {_panel_title(s, run, label): manifold_tiles(run, grid, label) for s, run in planar}
        )
    for name in ("curves", "scatters", "samples", "manifolds"):
        (out / f"{name}.png").unlink(missing_ok=True)
    for name, fig in figures.items():
        save_figure_png(out / f"{name}.png", fig)
    return [name for name in ("curves", "scatters", "samples", "manifolds") if name in figures]


def _panel_title(summary: dict, run, label: int) -> str:
    """A manifold panel's title; a conditional model's names the label it decodes with."""
    with_label = f", label {run.data.classes[label]}" if run.conditional else ""
    return f"{summary['run']} ({summary['model']}{with_label})"


def scatter_points(run, n: int = latent.SCATTER_POINTS):
    """(points [n, 2], labels, axis names) of a run's test encoder means, in its latent plane."""
    plane = latent.latent_plane(run.mu)
    pick = latent.scatter_subset(len(run.mu), n)
    return plane.coords(run.mu[pick]), run.data.test_y.numpy()[pick], plane.names


def sample_tiles(run, n: int = 10, seed: int = 0) -> np.ndarray:
    """n×n images decoded from the same seeded z ~ N(0, I) for every run of that latent size (a
    conditional model gets the labels 0, 1, 2, ... along each row)."""
    from vaelab.images import tile

    return tile(latent.samples(run.model, n * n, seed), n)


CAPTIONS = {
    "curves": "Test loss per epoch, every run overlaid: total, reconstruction, KL.",
    "scatters": "Each run's test encoder means (5,000 at most; a latent above 2-D in the plane of its two leading "
    "principal directions), coloured by class, with the prior N(0, I)'s 1- and 2-sigma circles dashed: "
    "a code that fills the circles evenly is one the decoder can sample from.",
    "samples": "100 images each run generates: decoder means at z ~ N(0, I), the same seeded z for runs of one "
    "latent size (conditional models: labels 0, 1, 2, ... along each row).",
}


def compare_page(
    summaries: list[dict], shown: list[str], grid: int, label: int, quality_samples: int, note: str = ""
) -> str:
    rows = [[_cell(s[key], key) for key, _ in COLUMNS] for s in summaries]
    captions = {**CAPTIONS, "manifolds": _manifold_note(grid, label)}
    quality = (
        f"Sample Fréchet is the classifier-feature Fréchet distance between {quality_samples:,} generated "
        f"images and the test images, on the features of vaelab's small convolutional classifier for the "
        f"data set (lower is better; not comparable with published FIDs); confidence is its mean top "
        f"probability on the samples, class balance the entropy of its predicted classes over log K (1: even). "
        if quality_samples
        else "Sample quality was not measured (--quality-samples 0). "
    )
    body = (
        f"<h1>vaelab comparison of {len(summaries)} runs</h1>"
        f"{table([title for _, title in COLUMNS], rows)}"
        f"<p>Final epoch of each run; losses in nats per image; seconds per epoch are the mean over "
        f"epochs, on each run's own device (last column), so compare them only on one device. "
        f"q(z) MMD to prior is the squared MMD between {MMD_POINTS:,} sampled test codes and as many N(0, I) "
        f"draws (0 when the codes follow the prior); a unit is active when its encoder mean varies by more "
        f"than 0.01 over the test set. k-NN (k = 5) and logistic regression on z are fitted to the training "
        f"encoder means and scored on the test means (a CVAE's encoded with their own labels). "
        f"{html.escape(quality)}</p>"
    )
    if note:
        body += f"<p>{html.escape(note)}</p>"
    body += "".join(figure(f"{name}.png", captions[name], name) for name in shown)
    return page("vaelab comparison", body, wide=True)


def _manifold_note(grid: int, label: int) -> str:
    return (
        f"Each run's {grid}×{grid} manifold grid over the min/max of its own test encoder means "
        f"(a latent above 2-D in the plane of its two leading principal directions; a conditional "
        f"model decoded with label {label}); the ticks give the z values."
    )
