"""Command-line flags derived from settings dataclasses (vaelab/options.py): one flag per field,
with the field's default, help and checks, so no default or range is written twice.

Only the CLI (vaelab/cli.py) imports this module; the library never sees argparse.
"""
import argparse
import types
import typing
from dataclasses import MISSING, fields

from vaelab.models import FAMILIES, option_fields
from vaelab.options import flag_name, problem


# ---- argument types of the flags that are not settings --------------------------------------------------------------------------

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


def bounded(low: int, high: int, what: str):
    """A flag type for a whole number from `low` to `high`; `what` says why the bound is there."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a number from {low} to {high:,} ({what}), got {text!r}")
        return value
    return parse


def port_number(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}")
    return int(text)


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


def int_tuple(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"expected comma-separated integers such as 32,64, got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"expected positive integers such as 32,64, got {text!r}")
    return values


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
        message = problem(f.name, value, {k: v for k, v in meta.items() if k != "choices"})  # argparse names a bad choice
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
        kwargs = {"default": None if defaults_none or f.default is MISSING else f.default,
                  "help": f"{f.metadata.get('help', '')} (default: {show(shown)})", "type": value_parser(f)}
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
    return sorted({f.name for family in FAMILIES for f in option_fields(family)})


def add_model_options(parser: argparse.ArgumentParser, lists: bool = False) -> None:
    """--latent-dim, --hidden-dim, ...: absent means the model's own default."""
    group = parser.add_argument_group("model options (each applies to the models that have it)")
    seen = set()
    for family, (config_cls, *_) in FAMILIES.items():
        add_fields(group, config_cls, skip=seen | {"input_shape", "num_classes"}, defaults_none=True, lists=lists)
        seen |= {f.name for f in option_fields(family)}


def model_options(args) -> dict:
    return {name: getattr(args, name) for name in model_option_names()}


def numeric_names(*classes) -> list[str]:
    """Names of the int and float settings of `classes` and of every model family."""
    classes = [*classes, *(config_cls for config_cls, *_ in FAMILIES.values())]
    return sorted({f.name for cls in classes for f in fields(cls) if is_numeric(f)})
