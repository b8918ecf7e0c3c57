"""The `vaelab` command: one subcommand per job, flags derived from the config dataclasses."""
import argparse
import os
import math
import sys
from pathlib import Path

from vaelab.compare import add_compare_parser
from vaelab.config import TrainConfig, add_fields, from_args
from vaelab.evaluate import add_evaluate_parser
from vaelab.errors import VaelabError
from vaelab.models import FAMILIES, MODELS, option_fields
from vaelab.report import add_report_parser, make_report
from vaelab.serve import add_serve_parser
from vaelab.sweep import add_sweep_parser
from vaelab.train import RESUME_OVERRIDES


def model_option_names() -> list[str]:
    return sorted({f.name for family in FAMILIES for f in option_fields(family)})


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--latent-dim, --hidden-dim, ...: every family's options; absent means the model's default."""
    group = parser.add_argument_group("model options (each applies to the models that have it)")
    seen = set()
    for family in FAMILIES:
        config_cls = FAMILIES[family][0]
        skip = seen | {"input_shape", "num_classes"}
        add_fields(group, config_cls, skip=skip, defaults_none=True)
        seen |= {f.name for f in option_fields(family)}


def model_options(args) -> dict:
    return {name: getattr(args, name) for name in model_option_names()}


def cmd_data(args) -> None:
    from vaelab.data import format_data_table
    print(format_data_table(args.data_dir))


def cmd_summary(args) -> None:
    from vaelab.models import build_model, make_config
    from vaelab.summary import format_summary
    config = make_config(args.model, args.image_shape, args.num_classes, **model_options(args))
    print(format_summary(args.model, build_model(args.model, config)))


def cmd_train(args) -> int | None:
    from vaelab import distributed
    from vaelab.train import resume, train
    if args.nproc and not distributed.launched():
        return distributed.launch(args.nproc, without_flag(args.argv, "--nproc"))
    try:
        if args.resume:
            run_dir = resume(args.resume, progress=not args.no_progress, **args.given)
        else:
            cfg = from_args(TrainConfig, args)
            run_dir = train(cfg, model_options(args), out=args.out, overwrite=args.overwrite,
                            progress=not args.no_progress)
    finally:
        distributed.teardown()
    if os.environ.get("RANK", "0") != "0":
        return None
    print(f"run folder: {run_dir}")
    if not args.no_report:
        print(f"report: {make_report(run_dir)}")
    return None


def without_flag(argv: list[str], flag: str) -> list[str]:
    """argv less `flag VALUE` or `flag=VALUE`."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == flag:
            skip = True
        elif not a.startswith(flag + "="):
            out.append(a)
    return out


def cmd_sample(args) -> None:
    from vaelab.generate import sample_images
    from vaelab.images import image_grid, save_png
    from vaelab.runs import load_model
    model, _ = load_model(args.run)
    images = sample_images(model, args.n, args.label, args.seed)
    out = Path(args.out or Path(args.run) / "samples.png")
    save_png(out, image_grid(images, ncol=math.ceil(math.sqrt(args.n))))
    print(f"wrote {out}")


def cmd_demo(args) -> None:
    from vaelab.demo import demo
    demo(out=args.out, epochs=args.epochs)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {text!r}")
    return value


def image_shape(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 1,28,28 or 3,32,32, got {text!r}")
    return tuple(int(p) for p in parts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vaelab", description="Train, evaluate and explore VAEs on small image data sets.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("data", help="list the data sets, where each was found or why not")
    p.add_argument("--data-dir", help="also look in this folder")
    p.set_defaults(handler=cmd_data)

    p = sub.add_parser("summary", help="print a model's layers, output shapes and parameter counts")
    p.add_argument("model", choices=tuple(MODELS))
    p.add_argument("--image-shape", type=image_shape, default=(1, 28, 28), help="C,H,W of the input (default: 1,28,28)")
    p.add_argument("--num-classes", type=positive_int, default=10, help="classes, for conditional models (default: 10)")
    add_model_options(p)
    p.set_defaults(handler=cmd_summary)

    p = sub.add_parser("train", help="train a model and write a run folder")
    add_fields(p, TrainConfig)
    add_model_options(p)
    p.add_argument("--out", help="run folder (default: runs/MODEL-DATASET-TIMESTAMP)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--resume", metavar="RUN", help="continue RUN from its last checkpoint with its saved settings; --epochs, --lr and --clip-grad may change")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch still)")
    p.add_argument("--no-report", action="store_true", help="skip the figures and report.html at the end")
    p.add_argument("--nproc", type=positive_int, help="train with N processes on this machine via torch.distributed "
                   "(same as torchrun --nproc-per-node N -m vaelab train ...; --batch-size stays the global batch)")
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("sample", help="write a PNG grid of images generated from z ~ N(0, I)")
    p.add_argument("run", help="run folder")
    p.add_argument("-n", type=positive_int, default=16, help="number of images (default: 16)")
    p.add_argument("--label", type=int, help="class to generate, for conditional models")
    p.add_argument("--seed", type=int, default=0, help="seed of z (default: 0)")
    p.add_argument("--out", help="PNG file (default: RUN/samples.png)")
    p.set_defaults(handler=cmd_sample)

    add_report_parser(sub)
    add_compare_parser(sub)
    add_serve_parser(sub)
    add_evaluate_parser(sub)
    add_sweep_parser(sub)

    p = sub.add_parser("demo", help="train the conv VAE on MNIST (or the bundled sample offline) in one command")
    p.add_argument("--epochs", type=positive_int, help="epochs (default: 3 on MNIST, 10 on the sample)")
    p.add_argument("--out", help="run folder (default: runs/demo-DATASET-TIMESTAMP)")
    p.set_defaults(handler=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    flags = {a.split("=")[0] for a in argv}
    args.given = {k: getattr(args, k) for k in RESUME_OVERRIDES if "--" + k.replace("_", "-") in flags}
    args.argv = argv
    try:
        return args.handler(args) or 0
    except VaelabError as e:
        print(f"vaelab: error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except KeyboardInterrupt:  # before training began, or outside it: nothing to save
        print("vaelab: interrupted", file=sys.stderr)
        return 130
