"""The subcommands that read: data, summary, and those that read a run folder (sample, report,
compare, evaluate, export, serve). Each `add_NAME_parser` declares its flags, each `cmd_NAME` calls
one library function and prints what it returns."""

import math
from dataclasses import asdict
from pathlib import Path

from vaelab.cli import flags
from vaelab.cli.help import HELP
from vaelab.options import MAX_SEED

# ---- data, summary -------------------------------------------------------------------------------


def add_data_parser(sub) -> None:
    p = sub.add_parser("data", help=HELP["data"])
    p.add_argument("--data-dir", help="also look in this folder")
    p.set_defaults(handler=flags.command(cmd_data))


def cmd_data(args) -> None:
    from vaelab.data import format_data_table

    print(format_data_table(args.data_dir))


def add_summary_parser(sub) -> None:
    from vaelab.models import MODELS

    p = sub.add_parser("summary", help=HELP["summary"])
    p.add_argument("model", choices=tuple(MODELS))
    p.add_argument(
        "--image-shape", type=flags.image_shape, default=(1, 28, 28), help="C,H,W of the input (default: 1,28,28)"
    )
    p.add_argument(
        "--num-classes", type=flags.positive_int, default=10, help="classes, for conditional models (default: 10)"
    )
    flags.add_model_options(p)
    p.set_defaults(handler=flags.command(cmd_summary))


def cmd_summary(args) -> None:
    from vaelab.models import build_model, make_config
    from vaelab.models.summary import format_summary

    config = make_config(args.model, args.image_shape, args.num_classes, **flags.model_options(args))
    print(format_summary(args.model, build_model(args.model, config)))


# ---- sample --------------------------------------------------------------------------------------


def add_sample_parser(sub) -> None:
    from vaelab.report import MAX_SAMPLES

    p = sub.add_parser("sample", help=HELP["sample"])
    p.add_argument("run", help="run folder")
    p.add_argument(
        "-n",
        type=flags.bounded(1, MAX_SAMPLES, "the most one grid holds"),
        default=16,
        help=f"number of images, 1 to {MAX_SAMPLES:,} (default: 16)",
    )
    p.add_argument("--label", type=int, help="class to generate, for conditional models")
    p.add_argument(
        "--seed", type=flags.bounded(0, MAX_SEED, "the seeds torch takes"), default=0, help="seed of z (default: 0)"
    )
    p.add_argument("--out", help="PNG file (default: RUN/samples.png)")
    flags.add_trust_code(p)
    p.set_defaults(handler=flags.command(cmd_sample))


def cmd_sample(args) -> None:
    from vaelab import runs
    from vaelab.images import image_grid, save_png
    from vaelab.latent import samples

    model, _ = runs.load_model(args.run, trust_code=args.trust_code)
    images = samples(model, args.n, args.seed, args.label)
    out = Path(args.out or runs.samples_path(args.run))
    save_png(out, image_grid(images, ncol=math.ceil(math.sqrt(args.n))))
    print(f"wrote {out}")


# ---- report, compare, evaluate -------------------------------------------------------------------


def add_report_parser(sub) -> None:
    from vaelab.report import ReportSettings

    p = sub.add_parser("report", help=HELP["report"])
    p.add_argument("run", help="run folder")
    flags.add_fields(p, ReportSettings)
    flags.add_trust_code(p)
    p.set_defaults(handler=flags.command(cmd_report), report_parser=p)


def cmd_report(args) -> None:
    from vaelab import runs
    from vaelab.report import ReportSettings, fitted, make_report, settings_problem

    run = runs.Run.open(args.run, trust_code=args.trust_code)
    settings = fitted(flags.from_args(ReportSettings, args), run.classes)  # defaults kept to the data's classes
    problem = settings_problem(settings, run.classes)
    if problem:
        args.report_parser.error(problem)  # usage line + message, exit status 2, like any bad flag
    print(f"wrote {make_report(run, settings)}")


def add_compare_parser(sub) -> None:
    from vaelab.comparison import CompareSettings

    p = sub.add_parser("compare", help=HELP["compare"])
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders")
    p.add_argument("--out", help="folder for compare.html and its figures (default: runs/compare-TIMESTAMP)")
    flags.add_fields(p, CompareSettings, skip=("classifier_epochs",))
    flags.add_trust_code(p)
    p.set_defaults(handler=flags.command(cmd_compare))


def cmd_compare(args) -> None:
    from vaelab import runs
    from vaelab.comparison import CompareSettings, compare_runs

    out = Path(args.out or runs.default_folder("compare"))
    path = compare_runs(args.runs, out, flags.from_args(CompareSettings, args), trust_code=args.trust_code)
    print((out / "compare.md").read_text(), end="")
    print(f"wrote {path}")


def add_evaluate_parser(sub) -> None:
    from vaelab.evaluation import EvalConfig

    p = sub.add_parser("evaluate", help=HELP["evaluate"])
    p.add_argument("run", help="run folder")
    flags.add_fields(p, EvalConfig)
    p.add_argument(
        "--retrain-classifier",
        action="store_true",
        help="train the sample-quality classifier again even if one is cached",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    flags.add_trust_code(p)
    p.set_defaults(handler=flags.command(cmd_evaluate))


def cmd_evaluate(args) -> None:
    from vaelab import runs
    from vaelab.evaluation import EvalConfig, evaluate_run, format_result

    cfg = flags.from_args(EvalConfig, args)
    result = evaluate_run(
        args.run, progress=not args.no_progress, retrain_classifier=args.retrain_classifier, **asdict(cfg)
    )
    print(format_result(result))
    print(f"wrote {Path(args.run) / runs.EVAL}")


# ---- export, serve -------------------------------------------------------------------------------


def add_export_parser(sub) -> None:
    from vaelab.exports import FORMATS, PARTS

    p = sub.add_parser("export", help=HELP["export"])
    p.add_argument("run", help="run folder")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="onnx",
        help="onnx (onnxruntime, browsers) or torchscript (torch.jit.load) (default: onnx)",
    )
    p.add_argument("--part", choices=PARTS, default="both", help="which half (default: both)")
    p.add_argument("--out", help="folder for the files (default: RUN/export)")
    flags.add_trust_code(p)
    p.set_defaults(handler=flags.command(cmd_export))


def cmd_export(args) -> None:
    from vaelab.exports import export_run

    for path in export_run(args.run, args.format, args.part, args.out, trust_code=args.trust_code):
        print(f"wrote {path}")


def add_serve_parser(sub) -> None:
    p = sub.add_parser("serve", help=HELP["serve"])
    p.add_argument(
        "runs", nargs="+", metavar="RUN", help="run folders; the page has a run picker when there are several"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=flags.port_number, default=8000, help="TCP port (default: 8000; 0 picks a free one)")
    flags.add_trust_code(p)
    p.set_defaults(handler=flags.command(cmd_serve))


def cmd_serve(args) -> None:
    from vaelab.explorer import serve

    serve(args.runs, args.host, args.port, trust_code=args.trust_code)
