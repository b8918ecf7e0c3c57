"""`vaelab compare RUN RUN ...`: runs side by side (SPEC.md, figure 9).

    OUT/compare.md     the table, also printed to the terminal
    OUT/compare.html   the table and both figures, self-contained like a run's report
    OUT/curves.png     the runs' test curves overlaid
    OUT/manifolds.png  their manifold grids side by side

The numbers are read from each run's metrics.jsonl (its last epoch); seconds per epoch is the
mean over the run's epochs, measured on the device named in its config.json.
"""
import html
from datetime import datetime
from pathlib import Path

from vaelab.errors import VaelabError
from vaelab.report import grid_size, load_run, page, table
from vaelab.runs import atomic_write, read_json, read_metrics

COLUMNS = (("run", "run"), ("model", "model"), ("dataset", "data set"), ("latent_dim", "latent"),
           ("params", "parameters"), ("epochs", "epochs"), ("train_total", "train loss"),
           ("test_total", "test loss"), ("test_recon", "test recon"), ("test_kl", "test KL"),
           ("test_elbo", "test ELBO"), ("seconds", "s / epoch"), ("device", "device"))


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


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def markdown_table(summaries: list[dict]) -> str:
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |",
             "|" + "|".join("---:" if key not in ("run", "model", "dataset", "device") else "---" for key, _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(_cell(s[key]) for key, _ in COLUMNS) + " |" for s in summaries]
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


def compare_runs(run_dirs, out_dir, grid: int = 15, label: int = 4) -> Path:
    """Write the comparison of `run_dirs` into `out_dir`; returns the HTML page's path."""
    if not run_dirs:
        raise VaelabError("give at least one run folder to compare")
    names = run_names(run_dirs)
    summaries = [run_summary(d, n) for d, n in zip(run_dirs, names)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_figures(summaries, run_dirs, out, grid, label)
    atomic_write(out / "compare.md", markdown_table(summaries).encode())
    atomic_write(out / "compare.html", compare_page(summaries, grid, label).encode())
    return out / "compare.html"


def save_figures(summaries: list[dict], run_dirs, out: Path, grid: int, label: int) -> None:
    """OUT/curves.png and OUT/manifolds.png (runs with a latent size of 1 have no grid)."""
    from vaelab import plots  # matplotlib: only when a comparison is made
    curves = plots.compare_curves({s["run"]: read_metrics(d) for s, d in zip(summaries, run_dirs)})
    curves.savefig(out / "curves.png", dpi=100, bbox_inches="tight")
    grids = {f"{s['run']} ({s['model']})": manifold_tiles(load_run(d), grid, label)
             for s, d in zip(summaries, run_dirs) if s["latent_dim"] >= 2}
    if grids:
        plots.side_by_side(grids).savefig(out / "manifolds.png", dpi=100, bbox_inches="tight")


def compare_page(summaries: list[dict], grid: int, label: int) -> str:
    rows = [[s[key] for key, _ in COLUMNS] for s in summaries]
    grids = any(s["latent_dim"] >= 2 for s in summaries)
    body = (f"<h1>vaelab comparison of {len(summaries)} runs</h1>"
            f"{table([title for _, title in COLUMNS], rows)}"
            f"<p>Final epoch of each run; losses in nats per image; seconds per epoch are the mean over "
            f"epochs, on each run's own device (last column), so compare them only on one device.</p>"
            f"<figure><img src=\"curves.png\" alt=curves><figcaption>Test loss per epoch, every run "
            f"overlaid: total, reconstruction, KL.</figcaption></figure>")
    if grids:
        body += (f"<figure><img src=\"manifolds.png\" alt=manifolds><figcaption>"
                 f"{html.escape(_manifold_note(grid, label))}</figcaption></figure>")
    return page("vaelab comparison", body)


def _manifold_note(grid: int, label: int) -> str:
    return (f"Each run's {grid}×{grid} manifold grid over the min/max of its own test encoder means "
            f"(a latent above 2-D in the plane of its two leading principal directions; a conditional "
            f"model decoded with label {label}).")


def add_compare_parser(subparsers):
    p = subparsers.add_parser("compare", help="compare runs: a table, their test curves overlaid, their manifold grids")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders")
    p.add_argument("--out", help="folder for compare.html and its figures (default: runs/compare-TIMESTAMP)")
    p.add_argument("--grid", type=grid_size, default=15, help="images per side of each manifold grid, 2 to 64 (default: 15)")
    p.add_argument("--label", type=int, default=4, help="class decoded by conditional models' grids (default: 4)")
    p.set_defaults(handler=cmd_compare)
    return p


def cmd_compare(args) -> None:
    out = Path(args.out or f"runs/compare-{datetime.now():%Y%m%d-%H%M%S}")
    path = compare_runs(args.runs, out, args.grid, args.label)
    print((out / "compare.md").read_text(), end="")
    print(f"wrote {path}")
