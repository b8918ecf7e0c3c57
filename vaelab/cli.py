"""The `vaelab` command: one subcommand per job.

Every subcommand follows one convention: `add_NAME_parser` declares its flags (those of settings
come from the settings dataclasses, through vaelab/flags.py), and `cmd_NAME` calls one library
function and prints what it returns. The library never parses a flag or prints a result.
Library modules (and with them PyTorch) are imported inside the commands, and only the chosen
subcommand's flags are built, so `vaelab --help` answers at once.
"""
import argparse
import math
import os
import sys
from datetime import datetime
from pathlib import Path

from vaelab.errors import VaelabError
from vaelab.options import MAX_SEED

MAX_SAMPLES = 10_000  # images of one `vaelab sample` grid: 10,000 28x28 digits are a 5,600-pixel square PNG

HELP = {  # one line per subcommand: all `vaelab --help` needs, so it imports nothing heavy
    "data": "list the data sets, where each was found or why not",
    "summary": "print a model's layers, output shapes and parameter counts",
    "train": "train a model and write a run folder",
    "sample": "write a PNG grid of images generated from z ~ N(0, I)",
    "demo": "train the conv VAE on MNIST (or the bundled sample offline) in one command",
    "report": "write RUN/figures/*.png and RUN/report.html",
    "compare": "compare runs: a table with sample quality, test curves, latent scatters, samples and manifolds",
    "evaluate": "score a run: ELBO, importance-weighted bound, latent classifiers, sample quality; writes RUN/eval.json",
    "sweep": "train one run per value of one setting (e.g. --latent-dim 2,4,8,16,32); table and figure",
    "export": "write a run's decoder and encoder as ONNX or TorchScript files that run without vaelab",
    "serve": "open the latent-space explorer (a web page) for one or more runs",
}


# ---- data, summary -------------------------------------------------------------------------------

def add_data_parser(sub) -> None:
    p = sub.add_parser("data", help=HELP["data"])
    p.add_argument("--data-dir", help="also look in this folder")
    p.set_defaults(handler=cmd_data)


def cmd_data(args) -> None:
    from vaelab.data import format_data_table
    print(format_data_table(args.data_dir))


def add_summary_parser(sub) -> None:
    from vaelab import flags
    from vaelab.models import MODELS
    p = sub.add_parser("summary", help=HELP["summary"])
    p.add_argument("model", choices=tuple(MODELS))
    p.add_argument("--image-shape", type=flags.image_shape, default=(1, 28, 28), help="C,H,W of the input (default: 1,28,28)")
    p.add_argument("--num-classes", type=flags.positive_int, default=10, help="classes, for conditional models (default: 10)")
    flags.add_model_options(p)
    p.set_defaults(handler=cmd_summary)


def cmd_summary(args) -> None:
    from vaelab import flags
    from vaelab.models import build_model, make_config
    from vaelab.summary import format_summary
    config = make_config(args.model, args.image_shape, args.num_classes, **flags.model_options(args))
    print(format_summary(args.model, build_model(args.model, config)))


# ---- train, sample, demo -------------------------------------------------------------------------

def add_train_parser(sub) -> None:
    from vaelab import flags
    from vaelab.config import RESUME_OVERRIDES, TrainConfig
    p = sub.add_parser("train", help=HELP["train"])
    flags.record_given(p)  # args.given: the flags a --resume would otherwise ignore
    flags.add_fields(p, TrainConfig)
    flags.add_model_options(p)
    may_change = ", ".join(flags.flag_name(k) for k in RESUME_OVERRIDES)
    p.add_argument("--config", metavar="RUN/config.json", help="repeat a run: its model and every training setting "
                                                                "from its config.json; flags given here override them")
    p.add_argument("--out", help="run folder (default: runs/MODEL-DATASET-TIMESTAMP)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--resume", metavar="RUN", help=f"continue RUN from its last checkpoint with its saved settings; "
                                                   f"{may_change} may change")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch still)")
    p.add_argument("--no-report", action="store_true", help="skip the figures and report.html at the end")
    p.add_argument("--tensorboard", action="store_true", help="also log to RUN/tensorboard/: scalars per step and "
                   "epoch, reconstructions, and the test codes in the embedding projector (pip install tensorboard)")
    p.add_argument("--nproc", type=flags.positive_int, help="train with N processes on this machine via torch.distributed "
                   "(same as torchrun --nproc-per-node N -m vaelab train ...; --batch-size stays the global batch)")
    p.set_defaults(handler=cmd_train)


def cmd_train(args) -> int | None:
    from vaelab import flags
    from vaelab.config import RESUME_OVERRIDES, TrainConfig
    from vaelab import distributed
    from vaelab.callbacks import TensorBoard
    from vaelab.training import resume, train
    if args.resume:
        check_resume_flags(args.given)
    if args.nproc and not distributed.launched():
        return distributed.launch(args.nproc, flags.without_flag(args.argv, "--nproc"))
    try:
        callbacks = [TensorBoard()] if args.tensorboard else []
        if args.resume:
            given = {k: getattr(args, k) for k in RESUME_OVERRIDES if k in args.given}
            run_dir = resume(args.resume, progress=not args.no_progress, callbacks=callbacks, **given)
        else:
            if args.config:
                take_saved_settings(args, args.config)
            cfg = flags.from_args(TrainConfig, args)
            run_dir = train(cfg, flags.model_options(args), out=args.out, overwrite=args.overwrite,
                            progress=not args.no_progress, command=["vaelab", *args.argv], callbacks=callbacks)
    finally:
        distributed.teardown()
    if os.environ.get("RANK", "0") != "0":
        return None
    print(f"run folder: {run_dir}")
    if not args.no_report:
        from vaelab.report import make_report
        print(f"report: {make_report(run_dir)}")  # its defaults fitted to the data's classes
    return None


def take_saved_settings(args, path: str) -> None:
    """Fill every training setting and model option not given as a flag from a run's config.json."""
    from vaelab.config import TrainConfig
    from dataclasses import fields
    from vaelab.files import read_json
    from vaelab.models import MODELS, get_preset, option_fields
    saved = read_json(Path(path) / "config.json" if Path(path).is_dir() else Path(path))
    if "train" not in saved or "model_config" not in saved:
        raise VaelabError(f"{path} is not a vaelab run's config.json (it has no 'train' and 'model_config')")
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
    from vaelab import flags
    from vaelab.config import RESUME_OVERRIDES
    ignored = sorted(given - {"resume", "no_progress", "no_report", "nproc", "tensorboard", *RESUME_OVERRIDES})
    if ignored:
        may = ", ".join(flags.flag_name(k) for k in RESUME_OVERRIDES)
        raise VaelabError(f"--resume continues a run with the settings saved in it, so "
                          f"{', '.join(flags.flag_name(k) for k in ignored)} would be ignored: drop "
                          f"{'it' if len(ignored) == 1 else 'them'} (only {may} may change), or train a new run "
                          f"with --out")


def add_sample_parser(sub) -> None:
    from vaelab import flags
    p = sub.add_parser("sample", help=HELP["sample"])
    p.add_argument("run", help="run folder")
    p.add_argument("-n", type=flags.bounded(1, MAX_SAMPLES, "the most one grid holds"), default=16,
                   help=f"number of images, 1 to {MAX_SAMPLES:,} (default: 16)")
    p.add_argument("--label", type=int, help="class to generate, for conditional models")
    p.add_argument("--seed", type=flags.bounded(0, MAX_SEED, "the seeds torch takes"), default=0, help="seed of z (default: 0)")
    p.add_argument("--out", help="PNG file (default: RUN/samples.png)")
    p.set_defaults(handler=cmd_sample)


def cmd_sample(args) -> None:
    from vaelab import runs
    from vaelab.images import image_grid, save_png
    from vaelab.latent import samples
    model, _ = runs.load_model(args.run)
    images = samples(model, args.n, args.seed, args.label)
    out = Path(args.out or runs.samples_path(args.run))
    save_png(out, image_grid(images, ncol=math.ceil(math.sqrt(args.n))))
    print(f"wrote {out}")


def add_demo_parser(sub) -> None:
    from vaelab import flags
    p = sub.add_parser("demo", help=HELP["demo"])
    p.add_argument("--epochs", type=flags.positive_int, help="epochs (default: 3 on MNIST, 10 on the sample)")
    p.add_argument("--out", help="run folder (default: runs/demo-DATASET-TIMESTAMP)")
    p.set_defaults(handler=cmd_demo)


def cmd_demo(args) -> None:
    from vaelab.demo import demo
    demo(out=args.out, epochs=args.epochs)


# ---- report, compare, evaluate, sweep ------------------------------------------------------------

def add_report_parser(sub) -> None:
    from vaelab import flags
    from vaelab.report import ReportSettings
    p = sub.add_parser("report", help=HELP["report"])
    p.add_argument("run", help="run folder")
    flags.add_fields(p, ReportSettings)
    p.set_defaults(handler=cmd_report, report_parser=p)


def cmd_report(args) -> None:
    from vaelab import flags
    from vaelab import runs
    from vaelab.report import ReportSettings, fitted, make_report, settings_problem
    classes = runs.read_config(args.run)["data"]["classes"]
    settings = fitted(flags.from_args(ReportSettings, args), classes)  # defaults kept to the data's classes
    problem = settings_problem(settings, classes)
    if problem:
        args.report_parser.error(problem)  # usage line + message, exit status 2, like any bad flag
    print(f"wrote {make_report(args.run, settings)}")


def add_compare_parser(sub) -> None:
    from vaelab import flags
    from vaelab.comparison import CompareSettings
    p = sub.add_parser("compare", help=HELP["compare"])
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders")
    p.add_argument("--out", help="folder for compare.html and its figures (default: runs/compare-TIMESTAMP)")
    flags.add_fields(p, CompareSettings, skip=("classifier_epochs",))
    p.set_defaults(handler=cmd_compare)


def cmd_compare(args) -> None:
    from vaelab import flags
    from vaelab.comparison import CompareSettings, compare_runs
    out = Path(args.out or f"runs/compare-{datetime.now():%Y%m%d-%H%M%S}")
    path = compare_runs(args.runs, out, flags.from_args(CompareSettings, args))
    print((out / "compare.md").read_text(), end="")
    print(f"wrote {path}")


def add_evaluate_parser(sub) -> None:
    from vaelab import flags
    from vaelab.evaluation import EvalConfig
    p = sub.add_parser("evaluate", help=HELP["evaluate"])
    p.add_argument("run", help="run folder")
    flags.add_fields(p, EvalConfig)
    p.add_argument("--retrain-classifier", action="store_true", help="train the sample-quality classifier again even if one is cached")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_evaluate)


def cmd_evaluate(args) -> None:
    from vaelab import flags
    from dataclasses import asdict
    from vaelab import runs
    from vaelab.evaluation import EvalConfig, evaluate_run, format_result
    cfg = flags.from_args(EvalConfig, args)
    result = evaluate_run(args.run, progress=not args.no_progress, retrain_classifier=args.retrain_classifier,
                          **asdict(cfg))
    print(format_result(result))
    print(f"wrote {Path(args.run) / runs.EVAL}")


def add_sweep_parser(sub) -> None:
    from vaelab import flags
    from vaelab.config import TrainConfig
    from vaelab.sweeps import SweepSettings
    p = sub.add_parser("sweep", help=HELP["sweep"])
    flags.add_fields(p, TrainConfig, lists=True)
    flags.add_model_options(p, lists=True)
    p.add_argument("--out", help="sweep folder (default: runs/sweep-SETTING-TIMESTAMP)")
    p.add_argument("--overwrite", action="store_true", help="train every run again, even those already in the sweep folder")
    flags.add_fields(p, SweepSettings)
    p.set_defaults(handler=cmd_sweep, numeric=flags.numeric_names(TrainConfig))


def swept_setting(args, names) -> tuple[str, tuple]:
    """(name, values) of the one flag given several values; the others become single values."""
    from vaelab import flags
    multi = [n for n in names if isinstance(getattr(args, n, None), tuple) and len(getattr(args, n)) > 1]
    named = ", ".join(flags.flag_name(n) for n in multi)
    if len(multi) != 1:
        raise VaelabError(f"a sweep varies one setting, but {named} have several values; keep one of them a single value"
                          if multi else "give one setting several comma-separated values, e.g. --latent-dim 2,4,8,16,32 or --beta 0.5,1,4")
    values = getattr(args, multi[0])
    for n in names:
        if isinstance(getattr(args, n, None), tuple):
            setattr(args, n, getattr(args, n)[0])
    return multi[0], values


def cmd_sweep(args) -> None:
    from vaelab import flags
    from vaelab.config import TrainConfig
    from vaelab.sweeps import SweepSettings, sweep
    name, values = swept_setting(args, args.numeric)
    s = flags.from_args(SweepSettings, args)
    out = args.out or f"runs/sweep-{name.replace('_', '-')}-{datetime.now():%Y%m%d-%H%M%S}"
    folder = sweep(flags.from_args(TrainConfig, args), flags.model_options(args), name, values, out,
                   overwrite=args.overwrite, iw_samples=s.iw_samples, iw_images=s.iw_images)
    print((folder / "sweep.md").read_text(), end="")
    print(f"wrote {folder / 'sweep.md'}, sweep.csv, sweep.json and sweep.png")


# ---- export -------------------------------------------------------------------------------------

def add_export_parser(sub) -> None:
    from vaelab.export import FORMATS, PARTS
    p = sub.add_parser("export", help=HELP["export"])
    p.add_argument("run", help="run folder")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="onnx (onnxruntime, browsers) or torchscript "
                                                                     "(torch.jit.load) (default: onnx)")
    p.add_argument("--part", choices=PARTS, default="both", help="which half (default: both)")
    p.add_argument("--out", help="folder for the files (default: RUN/export)")
    p.set_defaults(handler=cmd_export)


def cmd_export(args) -> None:
    from vaelab.export import export_run
    for path in export_run(args.run, args.format, args.part, args.out):
        print(f"wrote {path}")


# ---- serve ---------------------------------------------------------------------------------------

def add_serve_parser(sub) -> None:
    from vaelab import flags
    p = sub.add_parser("serve", help=HELP["serve"])
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders; the page has a run picker when there are several")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=flags.port_number, default=8000, help="TCP port (default: 8000; 0 picks a free one)")
    p.set_defaults(handler=cmd_serve)


def cmd_serve(args) -> None:
    from vaelab.serve import serve
    serve(args.runs, args.host, args.port)


# ---- the command ---------------------------------------------------------------------------------

SUBCOMMANDS = (add_data_parser, add_summary_parser, add_train_parser, add_sample_parser, add_report_parser,
               add_compare_parser, add_serve_parser, add_evaluate_parser, add_sweep_parser, add_export_parser,
               add_demo_parser)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser with every subcommand's flags, or, given the command line, only its subcommand's
    (the others are listed with their help line): building train's flags imports PyTorch."""
    import vaelab
    parser = argparse.ArgumentParser(prog="vaelab", description="Train, evaluate and explore VAEs on small image data sets.")
    parser.add_argument("--version", action="version", version=f"vaelab {vaelab.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = None if argv is None else chosen_command(argv)
    for add in SUBCOMMANDS:
        name = add.__name__.removeprefix("add_").removesuffix("_parser")
        if argv is None or name == chosen:
            add(sub)
        else:
            sub.add_parser(name, help=HELP[name])
    return parser


def chosen_command(argv: list[str]) -> str | None:
    """The subcommand the command line names, if any (the top level takes no option with a value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser(argv).parse_args(argv)
        args.given = getattr(args, "given", set())  # flags.record_given: what the command line gave
        args.argv = argv
        code = args.handler(args) or 0
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except VaelabError as e:
        if hasattr(e, "exit_code") and os.environ.get("RANK", "0") != "0":  # a stop: rank 0 says it once
            return e.exit_code
        return fail(str(e), getattr(e, "exit_code", 2))
    except KeyboardInterrupt:  # before training began, or outside it: nothing to save
        print("vaelab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `vaelab train ... | head`: whatever reads the output has gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return fail("the output was closed before the command finished (broken pipe, as with `| head`); "
                    "send it to a file or a pager instead", 141)
    except MemoryError:
        return fail("out of memory: use smaller settings (a smaller model, --batch-size, -n or "
                    "--eval-batch-size), or a machine with more memory")
    except OSError as e:
        return fail(f"{e.filename or 'a file'}: {e.strerror or e}: check that the path exists, is "
                    f"readable or writable as needed, and that the disk has room")
    except Exception as e:  # a bug: one line instead of a traceback, which VAELAB_TRACEBACK=1 shows
        if os.environ.get("VAELAB_TRACEBACK"):
            raise
        return fail(f"internal error ({type(e).__name__}: {e}); this is a bug in vaelab: please report it "
                    f"with the command line (VAELAB_TRACEBACK=1 shows where it happened)", 70)


def fail(message: str, code: int = 2) -> int:
    print(f"vaelab: error: {message}", file=sys.stderr)
    return code
