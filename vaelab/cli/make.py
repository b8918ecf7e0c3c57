"""The subcommands that make runs: train, demo and sweep. Each `add_NAME_parser` declares its
flags, each `cmd_NAME` calls one library function and prints what it returns."""

from dataclasses import fields
from pathlib import Path

from vaelab.cli import flags
from vaelab.cli.help import HELP
from vaelab.errors import VaelabError

# the flags a --resume takes besides the settings it may change
RESUME_KEEPS = ("resume", "no_progress", "no_report", "nproc", "tensorboard", "trust_code", "quiet", "verbose")


# ---- train ---------------------------------------------------------------------------------------


def add_train_parser(sub) -> None:
    from vaelab.config import RESUME_OVERRIDES, TrainConfig

    p = sub.add_parser("train", help=HELP["train"])
    flags.record_given(p)  # args.given: the flags a --resume would otherwise ignore
    flags.add_fields(p, TrainConfig)
    flags.add_model_options(p)
    may_change = ", ".join(flags.flag_name(k) for k in RESUME_OVERRIDES)
    p.add_argument(
        "--config",
        metavar="RUN/config.json",
        help="repeat a run: its model and every training setting from its config.json; flags given here override them",
    )
    p.add_argument("--out", help="run folder (default: runs/MODEL-DATASET-TIMESTAMP)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument(
        "--resume",
        metavar="RUN",
        help=f"continue RUN from its last checkpoint with its saved settings; {may_change} may change",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch still)")
    flags.add_trust_code(p)
    p.add_argument("--no-report", action="store_true", help="skip the figures and report.html at the end")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log to RUN/tensorboard/: scalars per step and "
        "epoch, reconstructions, and the test codes in the embedding projector (pip install tensorboard)",
    )
    p.add_argument(
        "--nproc",
        type=flags.positive_int,
        help="train with N processes on this machine via "
        "torch.distributed (same as torchrun --nproc-per-node N -m vaelab train ...; --batch-size stays "
        "the global batch)",
    )
    p.set_defaults(handler=flags.command(cmd_train))


def cmd_train(args) -> int | None:
    from vaelab import training
    from vaelab.config import RESUME_OVERRIDES, TrainConfig

    if args.resume:
        check_resume_flags(args.given)
    if args.nproc and not training.launched():
        return training.launch(args.nproc, flags.without_flag(args.argv, "--nproc"))
    try:
        callbacks = [training.TensorBoard()] if args.tensorboard else []
        if args.resume:
            given = {k: getattr(args, k) for k in RESUME_OVERRIDES if k in args.given}
            run_dir = training.resume(
                args.resume, progress=not args.no_progress, callbacks=callbacks, trust_code=args.trust_code, **given
            )
        else:
            if args.config:
                take_saved_settings(args, args.config)
            cfg = flags.from_args(TrainConfig, args)
            run_dir = training.train(
                cfg,
                flags.model_options(args),
                out=args.out,
                overwrite=args.overwrite,
                progress=not args.no_progress,
                command=["vaelab", *args.argv],
                callbacks=callbacks,
            )
    finally:
        training.teardown()
    if training.env_rank() != 0:
        return None
    print(f"run folder: {run_dir}")
    if not args.no_report:
        from vaelab.report import make_report

        print(f"report: {make_report(run_dir, trust_code=args.trust_code)}")  # defaults fitted to its classes
    return None


def take_saved_settings(args, path: str) -> None:
    """Fill every training setting and model option not given as a flag from a run's config.json."""
    from vaelab import runs
    from vaelab.config import TrainConfig
    from vaelab.models import MODELS, get_preset, option_fields

    saved = runs.read_config_file(Path(path) / runs.CONFIG if Path(path).is_dir() else Path(path))
    if saved["model"] not in MODELS:
        raise VaelabError(f"{path} is a run of your own model; repeat it from Python with vaelab.train(model=...)")
    for f in fields(TrainConfig):
        if f.name not in args.given and f.name in saved["train"]:
            setattr(args, f.name, saved["train"][f.name])
    for f in option_fields(get_preset(args.model).family):
        if f.name not in args.given and f.name in saved["model_config"]:
            value = saved["model_config"][f.name]
            setattr(args, f.name, tuple(value) if isinstance(value, list) else value)


def check_resume_flags(given: set) -> None:
    """Refuse the flags a --resume would ignore: the run's own settings decide everything else."""
    from vaelab.config import RESUME_OVERRIDES

    ignored = sorted(given - {*RESUME_KEEPS, *RESUME_OVERRIDES})
    if ignored:
        may = ", ".join(flags.flag_name(k) for k in RESUME_OVERRIDES)
        raise VaelabError(
            f"--resume continues a run with the settings saved in it, so "
            f"{', '.join(flags.flag_name(k) for k in ignored)} would be ignored: drop "
            f"{'it' if len(ignored) == 1 else 'them'} (only {may} may change), or train a new run "
            f"with --out"
        )


# ---- demo ----------------------------------------------------------------------------------------


def add_demo_parser(sub) -> None:
    p = sub.add_parser("demo", help=HELP["demo"])
    p.add_argument("--epochs", type=flags.positive_int, help="epochs (default: 3 on MNIST, 10 on the sample)")
    p.add_argument("--out", help="run folder (default: runs/demo-DATASET-TIMESTAMP)")
    p.set_defaults(handler=flags.command(cmd_demo))


def cmd_demo(args) -> None:
    from vaelab.demo import demo

    demo(out=args.out, epochs=args.epochs)


# ---- sweep ---------------------------------------------------------------------------------------


def add_sweep_parser(sub) -> None:
    from vaelab.config import TrainConfig
    from vaelab.sweeps import SweepSettings

    p = sub.add_parser("sweep", help=HELP["sweep"])
    flags.add_fields(p, TrainConfig, lists=True)
    flags.add_model_options(p, lists=True)
    p.add_argument("--out", help="sweep folder (default: runs/sweep-SETTING-TIMESTAMP)")
    p.add_argument(
        "--overwrite", action="store_true", help="train every run again, even those already in the sweep folder"
    )
    flags.add_fields(p, SweepSettings)
    p.add_argument(
        "--nproc",
        type=flags.positive_int,
        help="spread the runs over N processes on this machine, each training its share (batched where it can); "
        "same as torchrun --nproc-per-node N -m vaelab sweep ...",
    )
    p.set_defaults(handler=flags.command(cmd_sweep), numeric=flags.numeric_names(TrainConfig))


def swept_setting(args, names) -> tuple[str, tuple]:
    """(name, values) of the one flag given several values; the others become single values."""
    multi = [n for n in names if isinstance(getattr(args, n, None), tuple) and len(getattr(args, n)) > 1]
    named = ", ".join(flags.flag_name(n) for n in multi)
    if len(multi) != 1:
        raise VaelabError(
            f"a sweep varies one setting, but {named} have several values; keep one of them a single value"
            if multi
            else "give one setting several comma-separated values, e.g. --latent-dim 2,4,8,16,32 or --beta 0.5,1,4"
        )
    values = getattr(args, multi[0])
    for n in names:
        if isinstance(getattr(args, n, None), tuple):
            setattr(args, n, getattr(args, n)[0])
    return multi[0], values


def cmd_sweep(args) -> int | None:
    from vaelab import runs, training
    from vaelab.config import TrainConfig
    from vaelab.sweeps import SweepSettings, sweep

    name, values = swept_setting(args, args.numeric)
    s = flags.from_args(SweepSettings, args)
    if (args.nproc or training.launched()) and not args.out:
        raise VaelabError("a sweep over several processes needs --out: every process writes into that one folder")
    if args.nproc and not training.launched():
        return training.launch(args.nproc, flags.without_flag(args.argv, "--nproc"))
    out = args.out or runs.default_folder("sweep", name.replace("_", "-"))
    try:
        folder = sweep(
            flags.from_args(TrainConfig, args),
            flags.model_options(args),
            name,
            values,
            out,
            overwrite=args.overwrite,
            iw_samples=s.iw_samples,
            iw_images=s.iw_images,
            batched=s.batched,
        )
    finally:
        training.teardown()
    if training.env_rank() != 0:
        return None
    print((folder / "sweep.md").read_text(), end="")
    print(f"wrote {folder / 'sweep.md'}, sweep.csv, sweep.json and sweep.png")
