"""Command-line flags derived from settings dataclasses (vaelab/options.py): one flag per field,
with the field's default, help and checks, so no default or range is written twice.

Only the CLI imports this module; the library never sees argparse.
"""

import argparse
import functools
import types
import typing
from dataclasses import MISSING, fields

from vaelab import options
from vaelab.options import flag_name, int_tuple, problem, whole_number

# ---- argument types of the flags that are not settings -------------------------------------------


def argument_type(parse, name: str):
    """`parse` (text -> value, or ValueError saying what was expected) as an argparse type, whose
    message argparse then prints after the flag's name."""

    def convert(text: str):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = name
    return convert


positive_int = argument_type(whole_number, "positive_int")
image_shape = argument_type(options.image_shape, "image_shape")
port_number = argument_type(options.port_number, "port_number")


def bounded(low: int, high: int, why: str):
    """A flag type for a whole number from `low` to `high`; `why` says why the bound is there."""
    return argument_type(lambda text: whole_number(text, low, high, why), "bounded")


def add_trust_code(parser) -> None:
    """--trust-code: a run of your own model may import the module its classes come from."""
    parser.add_argument(
        "--trust-code",
        action="store_true",
        help="a run of your own model: import the module "
        "its config.json names for its classes (that runs its code; only for run folders you trust)",
    )


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


class Store(argparse.Action):
    """argparse's "store", also noting the destination in `args.given`."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.given = getattr(namespace, "given", set()) | {self.dest}


class StoreTrue(Store):
    """argparse's "store_true", also noting the destination in `args.given`."""

    def __init__(self, option_strings, dest, default=False, required=False, help=None):
        super().__init__(option_strings, dest, nargs=0, const=True, default=default, required=required, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, True, option_string)


def record_given(parser: argparse.ArgumentParser) -> None:
    """Make every option later added to `parser` note in `args.given` that the command line gave
    it, whatever its value and however abbreviated (--lat 4 gives latent_dim)."""
    for name in (None, "store"):
        parser.register("action", name, Store)
    parser.register("action", "store_true", StoreTrue)


def base_type(tp):
    """The type a flag converts to: int for `int | None`, etc."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def value_parser(f):
    """text -> the field's value, or argparse.ArgumentTypeError saying what was expected."""
    meta, tp, flag = f.metadata, base_type(f.type), flag_name(f.name, f.metadata)

    def convert(text: str):
        if "parse" in meta:
            return meta["parse"](text)
        if typing.get_origin(tp) is tuple:
            return int_tuple(text)
        if tp in (int, float):
            try:
                return tp(text)
            except ValueError:
                raise ValueError(f"{flag} must be a{'n' if tp is int else ''} {tp.__name__}, got {text!r}") from None
        return text

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        with options.caller("cli"):  # a flag's value: its problem names the flag
            message = problem(
                f.name, value, {k: v for k, v in meta.items() if k != "choices"}
            )  # argparse names a bad choice
        if message:
            raise argparse.ArgumentTypeError(message)
        return value

    return parse


def many(parse):
    """A flag type for "2,4,8": each part parsed (and checked) by `parse`."""

    def parse_list(text: str) -> tuple:
        values = tuple(parse(part.strip()) for part in text.split(","))
        if len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"{text!r} repeats a value; give each value once")
        return values

    return parse_list


def is_numeric(f) -> bool:
    return base_type(f.type) in (int, float) and "parse" not in f.metadata


def show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(":".join(map(str, v)) if isinstance(v, tuple) else str(v) for v in value)
    return str(value)


def add_fields(parser, cls, *, skip=(), defaults_none: bool = False, lists: bool = False) -> None:
    """One --flag per field of the settings class `cls`. With defaults_none an absent flag gives
    None; with lists every numeric flag takes a comma-separated list of values."""
    for f in fields(cls):
        if f.name in skip:
            continue
        shown = f.default if f.default is not MISSING else None
        kwargs = {
            "default": None if defaults_none or f.default is MISSING else f.default,
            "help": f"{f.metadata.get('help', '')} (default: {show(shown)})",
            "type": value_parser(f),
        }
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        if lists and is_numeric(f):
            kwargs["type"] = many(kwargs["type"])
            kwargs["help"] += "; a comma-separated list sweeps it"
        parser.add_argument(flag_name(f.name, f.metadata), dest=f.name, **kwargs)


def from_args(cls, args: argparse.Namespace, **extra):
    """An instance of `cls` from the parsed flags named after its fields."""
    values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **extra})


# ---- model options: every family's config fields, each flag applying to the models that have it --


def model_option_names() -> list[str]:
    from vaelab.models import FAMILIES, option_fields  # PyTorch: only once a subcommand's flags are built

    return sorted({f.name for family in FAMILIES for f in option_fields(family)})


def add_model_options(parser: argparse.ArgumentParser, lists: bool = False) -> None:
    """--latent-dim, --hidden-dim, ...: absent means the model's own default."""
    from vaelab.models import FAMILIES, option_fields

    group = parser.add_argument_group("model options (each applies to the models that have it)")
    seen = set()
    for family, (config_cls, *_) in FAMILIES.items():
        add_fields(group, config_cls, skip=seen | {"input_shape", "num_classes"}, defaults_none=True, lists=lists)
        seen |= {f.name for f in option_fields(family)}


def model_options(args) -> dict:
    return {name: getattr(args, name) for name in model_option_names()}


def numeric_names(*classes) -> list[str]:
    """Names of the int and float settings of `classes` and of every model family."""
    from vaelab.models import FAMILIES

    classes = [*classes, *(config_cls for config_cls, *_ in FAMILIES.values())]
    return sorted({f.name for cls in classes for f in fields(cls) if is_numeric(f)})


def command(handler):
    """A subcommand's handler, whose messages name settings as flags (`--batch-size`), however it is called."""

    @functools.wraps(handler)
    def run(args):
        with options.caller("cli"):
            return handler(args)

    return run
