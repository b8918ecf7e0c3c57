"""`vaelab sweep --latent-dim 2,4,8,16,32 [train options]`: one run per value of one setting.

    SWEEP/<setting>-<value>/   a complete run folder per value (a sweep that stopped carries on:
                               finished runs are kept, unfinished ones resumed)
    SWEEP/sweep.md|csv|json    one row per value: the last epoch's test reconstruction, KL and
                               ELBO, active units, optionally the bound L_K, parameters, time
    SWEEP/sweep.png            reconstruction, KL and -ELBO against the swept value

Every numeric flag of `vaelab train` (its own and the model options) takes a comma-separated list
here; exactly one of them may hold several values.
"""
import argparse
import csv
import io
import time
from dataclasses import asdict, fields, replace
from datetime import datetime
from pathlib import Path

from vaelab.config import TrainConfig, _base_type, add_fields, from_args
from vaelab.errors import VaelabError

COLUMNS = ("value", "test_recon", "test_kl", "test_elbo", "active_units", "iw_bound", "params", "epochs",
           "seconds_per_epoch", "run")


# ---- flags -------------------------------------------------------------------------------------

def numeric_fields() -> set[str]:
    """Names of the int and float settings of training and of every model family."""
    from vaelab.models import FAMILIES
    classes = [TrainConfig, *(config_cls for config_cls, _ in FAMILIES.values())]
    return {f.name for cls in classes for f in fields(cls) if _base_type(f.type) in (int, float)}


def list_of(convert):
    """A flag type for "2,4,8": each part converted (and range-checked) by `convert`."""
    def parse(text: str) -> tuple:
        values = tuple(convert(part.strip()) for part in text.split(","))
        if len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"{text!r} repeats a value; give each value once")
        return values
    return parse


def swept_setting(args, names) -> tuple[str, tuple]:
    """(name, values) of the one flag given several values; the others become single values."""
    multi = [n for n in names if isinstance(getattr(args, n, None), tuple) and len(getattr(args, n)) > 1]
    flags = ", ".join("--" + n.replace("_", "-") for n in multi)
    if len(multi) != 1:
        raise VaelabError(f"a sweep varies one setting, but {flags} have several values; keep one of them a single value"
                          if multi else "give one setting several comma-separated values, e.g. --latent-dim 2,4,8,16,32 or --beta 0.5,1,4")
    values = getattr(args, multi[0])
    for n in names:
        if isinstance(getattr(args, n, None), tuple):
            setattr(args, n, getattr(args, n)[0])
    return multi[0], values


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
    from vaelab.runs import read_json, read_metrics
    from vaelab.train import resume, train
    if overwrite or not (run_dir / "config.json").is_file():
        return train(cfg, options, out=str(run_dir), overwrite=overwrite, progress=False)
    saved = read_json(run_dir / "config.json")
    given = {k: v for k, v in options.items() if v is not None}
    if saved["train"] != asdict(cfg) or any(saved["model_config"].get(k) != v for k, v in given.items()):
        raise VaelabError(f"{run_dir} holds a run with other settings; pass --overwrite to train it again, or pick another --out")
    rows = read_metrics(run_dir)
    if rows and rows[-1]["epoch"] >= cfg.epochs:
        print(f"{run_dir} is finished; keeping it")
        return run_dir
    return resume(run_dir, progress=False)


def sweep_row(run_dir: Path, value, iw_samples: int = 0, iw_images: int | None = None) -> dict:
    """The table row of one finished run: its last epoch's test scores, active units and L_K."""
    from vaelab.evaluate import EvalConfig, elbo_section, iw_section, open_job
    from vaelab.runs import read_json, read_metrics
    rows, config = read_metrics(run_dir), read_json(run_dir / "config.json")
    job = open_job(run_dir, EvalConfig(iw_samples=max(iw_samples, 1), iw_images=iw_images, quality_samples=0))
    _, latent = elbo_section(job)
    last = rows[-1]
    return {"value": value, "test_recon": last["test_recon"], "test_kl": last["test_kl"],
            "test_elbo": last["test_elbo"], "active_units": latent["active_units"],
            "iw_bound": iw_section(job)["bound"] if iw_samples else None,
            "params": sum(config["params"].values()), "epochs": last["epoch"],
            "seconds_per_epoch": sum(r["seconds"] for r in rows) / len(rows), "run": run_dir.name}


def sweep(cfg: TrainConfig, options: dict, name: str, values, out, *, overwrite: bool = False,
          iw_samples: int = 0, iw_images: int | None = None) -> Path:
    """Train one run per value of setting `name` under `out`; write the table and figure there."""
    from vaelab.data import load_dataset
    from vaelab.models import make_config
    out = Path(out)
    data = load_dataset(cfg.dataset, cfg.data_dir)
    configs = [make_config(c.model, data.image_shape, data.num_classes, **o)  # a bad value is refused
               for c, o in (with_value(cfg, options, name, v) for v in values)]  # before hours of training
    if notice := bottleneck_notice(configs):
        print(notice, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    started, rows = time.perf_counter(), []
    for i, value in enumerate(values):
        print(f"[{i + 1}/{len(values)}] {name} = {value}", flush=True)
        run_dir = train_or_reuse(*with_value(cfg, options, name, value), out / run_name(name, value), overwrite)
        rows.append(sweep_row(run_dir, value, iw_samples, iw_images))
        write_tables(out, name, rows, {"train": asdict(cfg), "model_options": options,
                                       "seconds": time.perf_counter() - started})
    write_figure(out, name, rows, f"{cfg.model} on {cfg.dataset}, {cfg.epochs} epoch{'s' * (cfg.epochs > 1)} per run, "
                                  f"test split after the last epoch (z sampled)")
    return out


def bottleneck_notice(configs) -> str | None:
    """A latent wider than the conv encoder's Dense layer cannot use its extra dimensions."""
    narrow = [c for c in configs if getattr(c, "dense_dim", None) and c.latent_dim > c.dense_dim]
    if not narrow:
        return None
    widest = max(c.latent_dim for c in narrow)
    return (f"note: the encoder's Dense layer has {narrow[0].dense_dim} units, fewer than latent size {widest}, so "
            f"the extra dimensions get no more information than {narrow[0].dense_dim} units carry and the sweep "
            f"flattens out there; to compare latent sizes, give --dense-dim {max(64, widest)} (or sweep --model mlp)")


# ---- table and figure --------------------------------------------------------------------------

def markdown(name: str, rows: list[dict]) -> str:
    titles = {"value": name, "test_recon": "test recon", "test_kl": "test KL", "test_elbo": "test ELBO",
              "active_units": "active units", "iw_bound": "L_K", "params": "parameters",
              "seconds_per_epoch": "s / epoch"}
    cell = lambda v: f"{v:,.2f}" if isinstance(v, float) else ("-" if v is None else f"{v:,}" if isinstance(v, int) else str(v))
    lines = ["| " + " | ".join(titles.get(c, c) for c in COLUMNS) + " |", "|" + "---:|" * (len(COLUMNS) - 1) + "---|"]
    return "\n".join(lines + ["| " + " | ".join(cell(r[c]) for c in COLUMNS) + " |" for r in rows]) + "\n"


def write_tables(out: Path, name: str, rows: list[dict], about: dict) -> None:
    from vaelab.runs import atomic_write, write_json
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out / "sweep.csv", buffer.getvalue().encode())
    atomic_write(out / "sweep.md", markdown(name, rows).encode())
    write_json(out / "sweep.json", {"setting": name, "rows": rows, **about,
                                    "created": datetime.now().isoformat(timespec="seconds")})


def write_figure(out: Path, name: str, rows: list[dict], title: str = "") -> None:
    """Test reconstruction, KL and -ELBO (and -L_K when measured) against the swept value."""
    from matplotlib.figure import Figure
    x = [r["value"] for r in rows]
    panels = [("test reconstruction (nats)", "test_recon"), ("test KL (nats)", "test_kl"), ("-ELBO (nats)", "test_elbo")]
    fig = Figure(figsize=(4 * len(panels), 3.4), dpi=100, layout="constrained")
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
    fig.savefig(out / "sweep.png", dpi=100)


# ---- the command -------------------------------------------------------------------------------

def add_sweep_parser(subparsers) -> argparse.ArgumentParser:
    from vaelab.cli import add_model_options
    p = subparsers.add_parser("sweep", help="train one run per value of one setting (e.g. --latent-dim 2,4,8,16,32); table and figure")
    add_fields(p, TrainConfig)
    add_model_options(p)
    numeric = numeric_fields()
    for action in p._actions:  # every numeric flag takes a list; argparse keeps no public handle on them
        if action.dest in numeric:
            action.type = list_of(action.type)
            action.help += "; a comma-separated list sweeps it"
    p.add_argument("--out", help="sweep folder (default: runs/sweep-SETTING-TIMESTAMP)")
    p.add_argument("--overwrite", action="store_true", help="train every run again, even those already in the sweep folder")
    p.add_argument("--iw-samples", type=int, default=0, help="also estimate L_K with this many importance samples per image (default: 0, skip)")
    p.add_argument("--iw-images", type=int, help="test images for L_K, a seeded random subset (default: all)")
    p.set_defaults(handler=cmd_sweep, numeric=sorted(numeric))
    return p


def cmd_sweep(args) -> None:
    from vaelab.cli import model_options
    name, values = swept_setting(args, args.numeric)
    if args.iw_samples < 0 or (args.iw_images is not None and args.iw_images < 1):
        raise VaelabError("--iw-samples must be 0 (skip) or more, and --iw-images at least 1")
    out = args.out or f"runs/sweep-{name.replace('_', '-')}-{datetime.now():%Y%m%d-%H%M%S}"
    folder = sweep(from_args(TrainConfig, args), model_options(args), name, values, out,
                   overwrite=args.overwrite, iw_samples=args.iw_samples, iw_images=args.iw_images)
    print((folder / "sweep.md").read_text(), end="")
    print(f"wrote {folder / 'sweep.md'}, sweep.csv, sweep.json and sweep.png")
