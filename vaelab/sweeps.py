"""`vaelab sweep --latent-dim 2,4,8,16,32 [train options]`: one run per value of one setting.

    SWEEP/<setting>-<value>/   a complete run folder per value (a sweep that stopped carries on:
                               finished runs are kept, unfinished ones resumed)
    SWEEP/sweep.md|csv|json    one row per value: the last epoch's test reconstruction, KL and
                               ELBO, active units, optionally the bound L_K, parameters, time
    SWEEP/sweep.png            reconstruction, KL and -ELBO against the swept value

On the command line every numeric flag of `vaelab train` (its own and the model options) takes a
comma-separated list; exactly one of them may hold several values (vaelab/cli/).
"""

import csv
import io
import time
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from pathlib import Path

from vaelab import runs
from vaelab.config import TrainConfig
from vaelab.errors import VaelabError
from vaelab.files import atomic_write, write_json
from vaelab.options import check, opt

COLUMNS = (
    "value",
    "test_recon",
    "test_kl",
    "test_elbo",
    "active_units",
    "iw_bound",
    "params",
    "epochs",
    "seconds_per_epoch",
    "run",
)


@dataclass(frozen=True)
class SweepSettings:
    """What a sweep measures besides training; `vaelab sweep`'s own flags are these fields."""

    iw_samples: int = opt(0, "also estimate L_K with this many importance samples per image (0: skip)", min=0)
    iw_images: int | None = opt(None, "test images for L_K, a seeded random subset (None: all)", min=1)

    def __post_init__(self):
        check(self)


MAX_RUNS = 100  # values of one sweep: each is a run folder, trained one after another


def check_values(name: str, values) -> None:
    """A sweep's values: a list of 1 to MAX_RUNS different values (two equal ones would share a folder)."""
    if not isinstance(values, tuple | list):
        raise VaelabError(f"a sweep of {name} takes a list of values, such as (2, 8, 32), got {values!r}")
    if not 1 <= len(values) <= MAX_RUNS:
        count = f"more than {MAX_RUNS}" if values else "none"
        raise VaelabError(f"a sweep of {name} takes a list of 1 to {MAX_RUNS} values (one run each), got {count}")
    names = [run_name(name, v) for v in values]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise VaelabError(f"a sweep of {name} gives {twice[0]} twice: each value is one run folder; list it once")


# ---- runs --------------------------------------------------------------------------------------


def with_value(cfg: TrainConfig, options: dict, name: str, value):
    """(train config, model options) with setting `name` set to `value`."""
    if name in {f.name for f in fields(TrainConfig)}:
        return replace(cfg, **{name: value}), options
    return cfg, {**options, name: value}


def run_name(name: str, value) -> str:
    return f"{name}-{value:g}" if isinstance(value, float) else f"{name}-{value}"


def train_or_reuse(cfg: TrainConfig, options: dict, run_dir: Path, overwrite: bool) -> Path:
    """Train the run, keep it if it is already finished with these settings, or resume it."""
    from vaelab.training import resume, train

    if overwrite or not (run_dir / runs.CONFIG).is_file():
        return train(cfg, options, out=str(run_dir), overwrite=overwrite, progress=False)
    saved = runs.read_config(run_dir)
    given = {k: v for k, v in options.items() if v is not None}
    if saved["train"] != asdict(cfg) or any(saved["model_config"].get(k) != v for k, v in given.items()):
        raise VaelabError(
            f"{run_dir} holds a run with other settings; pass --overwrite to train it again, or pick another --out"
        )
    rows = runs.read_metrics(run_dir)
    if rows and rows[-1]["epoch"] >= cfg.epochs:
        print(f"{run_dir} is finished; keeping it")
        return run_dir
    return resume(run_dir, progress=False)


def sweep_row(run_dir: Path, value, iw_samples: int = 0, iw_images: int | None = None) -> dict:
    """The table row of one finished run: its last epoch's test scores, active units and L_K."""
    from vaelab.evaluation import EvalConfig, elbo_section, iw_section, open_scoring

    scoring = open_scoring(run_dir, EvalConfig(iw_samples=max(iw_samples, 1), iw_images=iw_images, quality_samples=0))
    run = scoring.run
    _, latent = elbo_section(scoring)
    last = run.rows[-1]
    return {
        "value": value,
        "test_recon": last["test_recon"],
        "test_kl": last["test_kl"],
        "test_elbo": last["test_elbo"],
        "active_units": latent["active_units"],
        "iw_bound": iw_section(scoring)["bound"] if iw_samples else None,
        "params": sum(run.config["params"].values()),
        "epochs": last["epoch"],
        "seconds_per_epoch": run.seconds_per_epoch,
        "run": run.dir.name,
    }


def sweep(
    cfg: TrainConfig,
    options: dict,
    name: str,
    values,
    out,
    *,
    overwrite: bool = False,
    iw_samples: int = 0,
    iw_images: int | None = None,
) -> Path:
    """Train one run per value of setting `name` under `out`; write the table and figure there.
    `options` are model options (latent_dim=8, ...); `name` is a field of either."""
    SweepSettings(iw_samples, iw_images)  # checked before any training
    check_values(name, values)
    from vaelab.data import load_dataset
    from vaelab.models import make_config

    out = Path(out)
    data = load_dataset(cfg.dataset, cfg.data_dir)
    configs = [
        make_config(c.model, data.image_shape, data.num_classes, **o)  # a bad value is refused
        for c, o in (with_value(cfg, options, name, v) for v in values)
    ]  # before hours of training
    if notice := bottleneck_notice(configs):
        print(notice, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    started, rows = time.perf_counter(), []
    for i, value in enumerate(values):
        print(f"[{i + 1}/{len(values)}] {name} = {value}", flush=True)
        run_dir = train_or_reuse(*with_value(cfg, options, name, value), out / run_name(name, value), overwrite)
        rows.append(sweep_row(run_dir, value, iw_samples, iw_images))
        write_tables(
            out, name, rows, {"train": asdict(cfg), "model_options": options, "seconds": time.perf_counter() - started}
        )
    write_figure(
        out,
        name,
        rows,
        f"{cfg.model} on {cfg.dataset}, {cfg.epochs} epoch{'s' * (cfg.epochs > 1)} per run, "
        f"test split after the last epoch (z sampled)",
    )
    return out


def bottleneck_notice(configs) -> str | None:
    """A latent wider than the conv encoder's Dense layer cannot use its extra dimensions."""
    narrow = [c for c in configs if getattr(c, "dense_dim", None) and c.latent_dim > c.dense_dim]
    if not narrow:
        return None
    widest = max(c.latent_dim for c in narrow)
    return (
        f"note: the encoder's Dense layer has {narrow[0].dense_dim} units, fewer than latent size {widest}, so "
        f"the extra dimensions get no more information than {narrow[0].dense_dim} units carry and the sweep "
        f"flattens out there; to compare latent sizes, give --dense-dim {max(64, widest)} (or sweep --model mlp)"
    )


# ---- table and figure --------------------------------------------------------------------------


def markdown(name: str, rows: list[dict]) -> str:
    from vaelab.report.pages import markdown_table

    titles = {
        "value": name,
        "test_recon": "test recon",
        "test_kl": "test KL",
        "test_elbo": "test ELBO",
        "active_units": "active units",
        "iw_bound": "L_K",
        "params": "parameters",
        "seconds_per_epoch": "s / epoch",
    }
    return markdown_table(
        [titles.get(c, c) for c in COLUMNS],
        [[_cell(r[c]) for c in COLUMNS] for r in rows],
        [c != "run" for c in COLUMNS],
    )


def _cell(v) -> str:
    return f"{v:,.2f}" if isinstance(v, float) else "-" if v is None else f"{v:,}" if isinstance(v, int) else str(v)


def write_tables(out: Path, name: str, rows: list[dict], about: dict) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out / "sweep.csv", buffer.getvalue().encode())
    atomic_write(out / "sweep.md", markdown(name, rows).encode())
    write_json(
        out / "sweep.json",
        {"setting": name, "rows": rows, **about, "created": datetime.now().isoformat(timespec="seconds")},
    )


def write_figure(out: Path, name: str, rows: list[dict], title: str = "") -> None:
    """SWEEP/sweep.png: reconstruction, KL and -ELBO against the swept value."""
    from vaelab.images import save_figure_png
    from vaelab.report.charts import sweep_figure  # matplotlib: only when a sweep ends

    save_figure_png(out / "sweep.png", sweep_figure(name, rows, title))
