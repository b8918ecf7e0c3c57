"""`vaelab sweep --latent-dim 2,4,8,16,32 [train options]`: one run per value of one setting.

    SWEEP/<setting>-<value>/   a complete run folder per value (a sweep that stopped carries on:
                               finished runs are kept, unfinished ones resumed)
    SWEEP/sweep.md|csv|json    one row per value: the last epoch's test reconstruction, KL and
                               ELBO, active units, optionally the bound L_K, parameters, time
    SWEEP/sweep.png            reconstruction, KL and -ELBO against the swept value

On the command line every numeric flag of `vaelab train` (its own and the model options) takes a
comma-separated list; exactly one of them may hold several values (vaelab/cli/).

Runs whose models have one shape and that share what a batch shares (vaelab/training/batched.py:
a sweep over seeds, β, the MMD weight, the learning rate or a warm-up) train as one batched model,
each still writing its own run folder; the others train one after another (`--batched`). A run
whose loss becomes non-finite stops alone: the others go on, and the sweep ends with an error
that names it.
"""

import csv
import io
import logging
import time
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from pathlib import Path

from vaelab import runs
from vaelab.config import TrainConfig
from vaelab.errors import VaelabError
from vaelab.files import atomic_write, write_json
from vaelab.options import check, opt

log = logging.getLogger(__name__)
BATCHED = ("auto", "on", "off")

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
    batched: str = opt(
        "auto",
        "train runs of one model shape as one batched model: auto (on a CUDA GPU, where two or more share a "
        "shape; on a CPU it does not pay), on (every run that can, refusing those that cannot), off (one by one)",
        choices=BATCHED,
    )

    def __post_init__(self):
        check(self)


MAX_RUNS = 100  # values of one sweep: each is a run folder


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


@dataclass
class Planned:
    """One run of the sweep: its value, settings, folder, model config and what is left to do."""

    value: object
    cfg: TrainConfig
    options: dict
    run_dir: Path
    model_config: object
    state: str = "new"  # new | again (a folder with its config alone) | resume | finished


def run_state(cfg: TrainConfig, options: dict, run_dir: Path, overwrite: bool) -> str:
    """new (train it), again (train it in the folder its first try left without a checkpoint),
    finished (keep it) or resume (it stopped before its last epoch); a folder holding a run with other
    settings is refused."""
    if overwrite or not (run_dir / runs.CONFIG).is_file():
        return "new"
    saved = runs.read_config(run_dir)
    given = {k: v for k, v in options.items() if v is not None}
    if saved["train"] != asdict(cfg) or any(saved["model_config"].get(k) != v for k, v in given.items()):
        raise VaelabError(
            f"{run_dir} holds a run with other settings; pass --overwrite to train it again, or pick another --out"
        )
    if not (run_dir / runs.CHECKPOINT).is_file():
        return "again"  # it stopped before its first checkpoint: nothing to keep, train it anew
    rows = runs.read_metrics(run_dir)
    return "finished" if rows and rows[-1]["epoch"] >= cfg.epochs else "resume"


def train_or_reuse(cfg: TrainConfig, options: dict, run_dir: Path, overwrite: bool) -> Path:
    """Train the run, keep it if it is already finished with these settings, or resume it."""
    from vaelab.training import resume, train

    state = run_state(cfg, options, run_dir, overwrite)
    if state in ("new", "again"):
        return train(cfg, options, out=str(run_dir), overwrite=overwrite or state == "again", progress=False)
    if state == "finished":
        log.info(f"{run_dir} is finished; keeping it")
        return run_dir
    return resume(run_dir, progress=False)


def groups(planned: list[Planned], batched: str, device_type: str = "cuda") -> list[tuple[list[Planned], str]]:
    """The runs left to train as (runs trained together, how): "batched", or why a run trains alone.
    Runs that may share a batch (equal batch_key; resumed ones standing at one position) form a group.
    `auto` batches on a CUDA GPU only: on a CPU a batched step was measured no faster than the runs'
    steps one after another (bench/README.md, bench/sweep.py), and on Apple's GPU it is unmeasured."""
    from vaelab.training import batch_key, saved_position

    if batched == "auto" and device_type != "cuda":
        return [
            ([p], f"--batched auto batches on a CUDA GPU only, not on {device_type}")
            for p in planned
            if p.state != "finished"
        ]
    keyed = {}
    for p in (p for p in planned if p.state != "finished"):
        key = None if batched == "off" else batch_key(p.cfg, p.model_config)
        if key is None and batched == "on":
            raise VaelabError(
                f"--batched on: {p.run_dir.name} cannot train in a batch (fp16, --speed compile and your own "
                f"model train alone); use --batched auto"
            )
        if key is None:
            keyed[id(p)] = ([p], "--batched off" if batched == "off" else "fp16, compile or your own model")
            continue
        key = (key, p.state == "resume", saved_position(p.run_dir) if p.state == "resume" else None)
        keyed.setdefault(key, ([], "batched"))[0].append(p)
    alone = batched == "auto"  # a group of one trains as it always did
    return [
        (m, "no other run of its shape" if alone and len(m) == 1 and how == "batched" else how)
        for m, how in keyed.values()
    ]


def train_group(members: list[Planned], how: str, overwrite: bool, data) -> dict[Path, str | None]:
    """Train (or resume) a group; returns {run folder: None, or the message that stopped the run}."""
    from vaelab.training import Diverged, resume_batched, train_batched

    names = ", ".join(p.run_dir.name for p in members)
    if how == "batched":
        log.info(f"{names}: {len(members)} run{'s' * (len(members) > 1)} trained as one batched model")
        if members[0].state == "resume":
            return dict(resume_batched([p.run_dir for p in members], progress=False))
        return dict(
            train_batched(
                [p.cfg for p in members],
                [p.options for p in members],
                [p.run_dir for p in members],
                overwrite=overwrite or any(p.state == "again" for p in members),
                progress=False,
                data=data,
            )
        )
    (p,) = members
    log.info(f"{names}: trained alone ({how})")
    try:
        return {train_or_reuse(p.cfg, p.options, p.run_dir, overwrite): None}
    except Diverged as e:  # the sweep goes on with its other runs
        log.error(f"{p.run_dir.name}: {e}")
        return {p.run_dir: f"{p.run_dir.name}: {e}"}


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
    batched: str = "auto",
) -> Path:
    """Train one run per value of setting `name` under `out`; write the table and figure there.
    `options` are model options (latent_dim=8, ...); `name` is a field of either. `batched`: auto,
    on or off (SweepSettings)."""
    SweepSettings(iw_samples, iw_images, batched)  # checked before any training
    check_values(name, values)
    from vaelab.data import load_dataset
    from vaelab.device import resolve_device
    from vaelab.models import make_config
    from vaelab.training import SWEEP_TIMEOUT, each_rank_alone, gather, join

    out = Path(out)
    data = load_dataset(cfg.dataset, cfg.data_dir)
    planned = []
    for value in values:
        c, o = with_value(cfg, options, name, value)
        model_config = make_config(c.model, data.image_shape, data.num_classes, **o)  # a bad value is refused
        planned.append(Planned(value, c, o, out / run_name(name, value), model_config))  # before hours of training
    if notice := bottleneck_notice([p.model_config for p in planned]):
        log.info(notice)
    out.mkdir(parents=True, exist_ok=True)
    for p in planned:
        p.state = run_state(p.cfg, p.options, p.run_dir, overwrite)
        if p.state == "finished":
            log.info(f"{p.run_dir} is finished; keeping it")
    started, problems, scored = time.perf_counter(), {}, {}
    about = {"train": asdict(cfg), "model_options": options}

    def table() -> list[dict]:  # the finished runs' rows in the order of the values, each scored once
        for p in planned:
            if p.state == "finished" and p.run_dir not in scored:
                scored[p.run_dir] = sweep_row(p.run_dir, p.value, iw_samples, iw_images)
        rows = [scored[p.run_dir] for p in planned if p.run_dir in scored]
        write_tables(out, name, rows, {**about, "seconds": time.perf_counter() - started})
        return rows

    ranks, device = join(resolve_device(cfg.device), SWEEP_TIMEOUT)  # under torchrun: each rank trains its share
    mine = [p for p in planned if p.state != "finished"][ranks.rank :: ranks.world]
    if ranks.world > 1:
        log.info(f"process {ranks.rank} of {ranks.world}: {', '.join(p.run_dir.name for p in mine) or 'no run'}")
    with each_rank_alone():
        for members, how in groups(mine, batched, device.type):
            for run_dir, problem in train_group(members, how, overwrite, data).items():
                if problem:
                    problems[str(run_dir)] = problem
                else:
                    next(p for p in planned if p.run_dir == run_dir).state = "finished"
            if ranks.world == 1:
                table()
    problems = {k: v for share in gather(problems, ranks) for k, v in share.items()}
    if not ranks.main:  # rank 0 writes the table of every rank's runs
        return out
    for p in planned:
        p.state = "finished" if str(p.run_dir) not in problems else p.state  # the other ranks' runs too
    rows = table()
    write_figure(
        out,
        name,
        rows,
        f"{cfg.model} on {cfg.dataset}, {cfg.epochs} epoch{'s' * (cfg.epochs > 1)} per run, "
        f"test split after the last epoch (z sampled)",
    )
    if problems:
        raise VaelabError(
            f"{len(problems)} of {len(planned)} runs stopped; the table in {out} holds the others.\n"
            + "\n".join(problems.values())
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


def band(rows: list[dict]) -> dict:
    """Mean and standard deviation over the runs of each score: a seed sweep's reference band."""
    import statistics

    scores = ("test_recon", "test_kl", "test_elbo", "active_units")
    return {
        k: {"mean": statistics.fmean(r[k] for r in rows), "sd": statistics.stdev(r[k] for r in rows)} for k in scores
    }


def band_line(rows: list[dict]) -> str:
    b = band(rows)
    titles = {"test_elbo": "test ELBO", "test_recon": "recon", "test_kl": "KL", "active_units": "active units"}
    parts = [f"{title} {b[k]['mean']:,.2f} ± {b[k]['sd']:,.2f}" for k, title in titles.items()]
    return f"\nOver {len(rows)} seeds (mean ± sd): " + ", ".join(parts) + "\n"


def _cell(v) -> str:
    return f"{v:,.2f}" if isinstance(v, float) else "-" if v is None else f"{v:,}" if isinstance(v, int) else str(v)


def write_tables(out: Path, name: str, rows: list[dict], about: dict) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out / "sweep.csv", buffer.getvalue().encode())
    seeds = name == "seed" and len(rows) > 1  # a band: how far runs that differ only by chance fall apart
    atomic_write(out / "sweep.md", (markdown(name, rows) + (band_line(rows) if seeds else "")).encode())
    write_json(
        out / "sweep.json",
        {
            "setting": name,
            "rows": rows,
            **({"band": band(rows)} if seeds else {}),
            **about,
            "created": datetime.now().isoformat(timespec="seconds"),
        },
    )


def write_figure(out: Path, name: str, rows: list[dict], title: str = "") -> None:
    """SWEEP/sweep.png: reconstruction, KL and -ELBO against the swept value."""
    from vaelab.images import save_figure_png
    from vaelab.report.charts import sweep_figure  # matplotlib: only when a sweep ends

    save_figure_png(out / "sweep.png", sweep_figure(name, rows, title))
