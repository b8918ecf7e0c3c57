"""`vaelab compare RUN RUN ...`: runs side by side (SPEC.md, figure 9).

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
classifier-feature Fréchet distance, confidence and class balance of vaelab.quality).
"""
import argparse
import html
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from vaelab.errors import VaelabError
from vaelab.report import grid_size, page, table
from vaelab.runs import atomic_write, read_json, read_metrics

COLUMNS = (("run", "run"), ("model", "model"), ("dataset", "data set"), ("latent_dim", "latent"),
           ("params", "parameters"), ("epochs", "epochs"), ("train_total", "train loss"),
           ("test_total", "test loss"), ("test_recon", "test recon"), ("test_kl", "test KL"),
           ("test_elbo", "test ELBO"), ("seconds", "s / epoch"), ("prior_mmd", "q(z) MMD to prior"),
           ("active_units", "active units"), ("frechet_distance", "sample Fréchet"),
           ("mean_confidence", "sample confidence"), ("balance", "class balance"), ("device", "device"))
FORMATS = {"prior_mmd": "{:.4f}", "balance": "{:.3f}", "mean_confidence": "{:.1%}"}
TEXT_COLUMNS = ("run", "model", "dataset", "device")
MMD_POINTS = 2000  # test codes (and prior draws) in the q(z)-to-prior MMD


def run_summary(run_dir, name: str | None = None) -> dict:
    """One row of the comparison: the run's settings and the metrics of its last epoch."""
    run_dir = Path(run_dir)
    config, rows = read_json(run_dir / "config.json"), read_metrics(run_dir)
    if not rows:
        raise VaelabError(f"{run_dir} has no finished epoch (metrics.jsonl is empty); train it first or leave it out")
    last = rows[-1]
    return {"run": name or run_dir.name, "model": config["model"], "dataset": config["data"]["name"],
            "latent_dim": config["model_config"]["latent_dim"], "params": sum(config["params"].values()),
            "epochs": last["epoch"], **{k: last[k] for k in ("train_total", "test_total", "test_recon", "test_kl", "test_elbo")},
            "seconds": sum(r["seconds"] for r in rows) / len(rows), "device": config.get("device", "")}


def latent_summary(run, seed: int = 0) -> dict:
    """How the run's test codes sit against the prior: MMD of MMD_POINTS sampled z to as many
    N(0, I) draws (0 when q(z) = p(z); kernel of the MMD objective), and the active units."""
    from vaelab.evaluate import latent_stats
    from vaelab.losses import mmd
    from vaelab.plots import reparameterized
    z = torch.from_numpy(reparameterized(run.mu, run.logvar, seed)).double()
    g = torch.Generator().manual_seed(seed)
    z = z[torch.randperm(len(z), generator=g)[:MMD_POINTS]]
    stats = latent_stats(torch.from_numpy(run.mu), torch.from_numpy(run.logvar))
    return {"prior_mmd": mmd(z, torch.randn(z.shape, generator=g, dtype=z.dtype)).item(),
            "active_units": stats["active_units"]}


def quality_summary(run, samples: int, classifier_epochs: int | None = None) -> dict:
    """Sample quality of the run (vaelab.quality): blanks when skipped or the data has no labels."""
    keys = ("frechet_distance", "mean_confidence", "balance")
    if not samples or not run.data.labelled:
        return dict.fromkeys(keys, "–")
    from vaelab.quality import sample_quality
    q = sample_quality(run.model, run.data, samples, epochs=classifier_epochs)
    return {k: q[k] for k in keys} | {"classifier_accuracy": q["classifier"]["test_accuracy"]}


def _cell(value, key: str = "") -> str:
    if key in FORMATS and isinstance(value, float):
        return FORMATS[key].format(value)
    if isinstance(value, float):
        return f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def markdown_table(summaries: list[dict]) -> str:
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |",
             "|" + "|".join("---" if key in TEXT_COLUMNS else "---:" for key, _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(_cell(s[key], key) for key, _ in COLUMNS) + " |" for s in summaries]
    return "\n".join(lines) + "\n"


def run_names(run_dirs) -> list[str]:
    """Folder names, or the paths as given when two folders share a name."""
    names = [Path(d).name for d in run_dirs]
    return names if len(set(names)) == len(names) else [str(d) for d in run_dirs]


def manifold_tiles(run, grid: int = 15, label: int = 4):
    """A run's manifold grid over its data range (figure 4; a CVAE's with `label`, figure 6)."""
    from vaelab import plots
    plane = plots.latent_plane(run.mu)
    bounds = plots.latent_range(plane.coords(run.mu))
    classes = run.model.config.num_classes
    conditional = classes > 0
    if conditional and not 0 <= label < classes:
        raise VaelabError(f"--label {label} is not a class of {run.dir}: use 0..{classes - 1}")
    return plots.decode_grid(run.model, plane, bounds, grid, label if conditional else None)


def compare_runs(run_dirs, out_dir, grid: int = 15, label: int = 4, quality_samples: int = 10_000,
                 classifier_epochs: int | None = None) -> Path:
    """Write the comparison of `run_dirs` into `out_dir`; returns the HTML page's path."""
    from vaelab.report import load_run
    if not run_dirs:
        raise VaelabError("give at least one run folder to compare")
    names = run_names(run_dirs)
    summaries = [run_summary(d, n) for d, n in zip(run_dirs, names)]
    runs = [load_run(d) for d in run_dirs]
    for s, run in zip(summaries, runs):
        s.update(latent_summary(run), **quality_summary(run, quality_samples, classifier_epochs))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shown = save_figures(summaries, runs, out, grid, label)
    atomic_write(out / "compare.md", markdown_table(summaries).encode())
    atomic_write(out / "compare.html", compare_page(summaries, shown, grid, label, quality_samples).encode())
    return out / "compare.html"


def save_figures(summaries: list[dict], runs: list, out: Path, grid: int, label: int) -> list[str]:
    """The comparison's figures in OUT (a scatter and a grid need a latent size of 2 or more, the
    scatters one data set); returns the names written, stale ones from an earlier call removed."""
    from vaelab import plots  # matplotlib: only when a comparison is made
    figures = {"curves": plots.compare_curves({s["run"]: run.rows for s, run in zip(summaries, runs)}),
               "samples": plots.side_by_side({f"{s['run']} ({s['model']})": sample_tiles(run)
                                              for s, run in zip(summaries, runs)})}
    planar = [(s, run) for s, run in zip(summaries, runs) if s["latent_dim"] >= 2]
    if planar and len({s["dataset"] for s, _ in planar}) == 1:
        figures["scatters"] = plots.scatter_panels({f"{s['run']} ({s['model']})": scatter_points(run) for s, run in planar},
                                                   planar[0][1].data.classes)
    if planar:
        figures["manifolds"] = plots.side_by_side({f"{s['run']} ({s['model']})": manifold_tiles(run, grid, label)
                                                   for s, run in planar})
    for name in ("curves", "scatters", "samples", "manifolds"):
        (out / f"{name}.png").unlink(missing_ok=True)
    for name, fig in figures.items():
        fig.savefig(out / f"{name}.png", dpi=100, bbox_inches="tight")
    return [name for name in ("curves", "scatters", "samples", "manifolds") if name in figures]


def scatter_points(run, n: int = 5000):
    """(points [n, 2], labels, axis names) of a run's test encoder means, in its latent plane."""
    from vaelab import plots
    plane = plots.latent_plane(run.mu)
    pick = np.random.default_rng(0).permutation(len(run.mu))[:n]
    return plane.coords(run.mu[pick]), run.data.test_y.numpy()[pick], plane.names


def sample_tiles(run, n: int = 10, seed: int = 0) -> np.ndarray:
    """n×n images decoded from the same seeded z ~ N(0, I) for every run of that latent size (a
    conditional model gets the labels 0, 1, 2, ... along each row)."""
    from vaelab import plots
    from vaelab.quality import generate
    images, _ = generate(run.model, n * n, seed)
    return plots.tile(images.numpy(), n)


CAPTIONS = {
    "curves": "Test loss per epoch, every run overlaid: total, reconstruction, KL.",
    "scatters": "Each run's test encoder means (5,000 at most; a latent above 2-D in the plane of its two leading "
                "principal directions), coloured by class, with the prior N(0, I)'s 1- and 2-sigma circles dashed: "
                "a code that fills the circles evenly is one the decoder can sample from.",
    "samples": "100 images each run generates: decoder means at z ~ N(0, I), the same seeded z for runs of one "
               "latent size (conditional models: labels 0, 1, 2, ... along each row).",
}


def compare_page(summaries: list[dict], shown: list[str], grid: int, label: int, quality_samples: int) -> str:
    rows = [[_cell(s[key], key) for key, _ in COLUMNS] for s in summaries]
    captions = {**CAPTIONS, "manifolds": _manifold_note(grid, label)}
    quality = (f"Sample Fréchet is the classifier-feature Fréchet distance between {quality_samples:,} generated "
               f"images and the test images, on the features of vaelab's small convolutional classifier for the "
               f"data set (lower is better; not comparable with published FIDs); confidence is its mean top "
               f"probability on the samples, class balance the entropy of its predicted classes over log K (1: even). "
               if quality_samples else "Sample quality was not measured (--quality-samples 0). ")
    body = (f"<h1>vaelab comparison of {len(summaries)} runs</h1>"
            f"{table([title for _, title in COLUMNS], rows)}"
            f"<p>Final epoch of each run; losses in nats per image; seconds per epoch are the mean over "
            f"epochs, on each run's own device (last column), so compare them only on one device. "
            f"q(z) MMD to prior is the squared MMD between {MMD_POINTS:,} sampled test codes and as many N(0, I) "
            f"draws (0 when the codes follow the prior); a unit is active when its encoder mean varies by more "
            f"than 0.01 over the test set. {html.escape(quality)}</p>")
    body += "".join(f"<figure><img src=\"{name}.png\" alt={name}><figcaption>{html.escape(captions[name])}"
                    f"</figcaption></figure>" for name in shown)
    return page("vaelab comparison", body)


def _manifold_note(grid: int, label: int) -> str:
    return (f"Each run's {grid}×{grid} manifold grid over the min/max of its own test encoder means "
            f"(a latent above 2-D in the plane of its two leading principal directions; a conditional "
            f"model decoded with label {label}).")


def sample_count(text: str) -> int:
    if not text.strip().isdigit() or 0 < int(text) < 100:
        raise argparse.ArgumentTypeError(f"expected 0 (skip) or a whole number of at least 100 images, got {text!r}")
    return int(text)


def add_compare_parser(subparsers):
    p = subparsers.add_parser("compare", help="compare runs: a table with sample quality, test curves, latent scatters, samples and manifold grids side by side")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders")
    p.add_argument("--out", help="folder for compare.html and its figures (default: runs/compare-TIMESTAMP)")
    p.add_argument("--grid", type=grid_size, default=15, help="images per side of each manifold grid, 2 to 64 (default: 15)")
    p.add_argument("--label", type=int, default=4, help="class decoded by conditional models' grids (default: 4)")
    p.add_argument("--quality-samples", type=sample_count, default=10_000,
                   help="images generated per run for sample quality; 0 skips it (default: 10000)")
    p.set_defaults(handler=cmd_compare)
    return p


def cmd_compare(args) -> None:
    out = Path(args.out or f"runs/compare-{datetime.now():%Y%m%d-%H%M%S}")
    path = compare_runs(args.runs, out, args.grid, args.label, args.quality_samples)
    print((out / "compare.md").read_text(), end="")
    print(f"wrote {path}")
