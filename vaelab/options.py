"""Settings as typed, frozen dataclasses whose fields carry their own help and checks.

    field = opt(default, "help text with units", min=1)   # also: above=, choices=, parse=

A settings class calls `check(self)` in `__post_init__`, so a bad value is refused with the same
message wherever it comes from: a flag, a notebook call or a hand-edited config.json. The CLI
(vaelab/cli/flags.py) builds its flags from the same fields: the default and the help live here once.
`parse`, when given, turns a flag's text into the value (raising ValueError with what it expected);
the parsers of every flag's text are at the end of this module.
"""

import contextlib
import contextvars
import math
import types
import typing
from dataclasses import MISSING, field, fields

from vaelab.errors import VaelabError

MAX_CLASSES = 1000  # classes of a data set or a conditional model: class names and one-hot rows stay small
MAX_SEED = 2**63 - 1  # torch and numpy take seeds from 0 up to here
MAX_EPOCHS = 100_000  # of one run (the bundled sample's are a third of a second: about 9 hours)
MAX_STEPS = 10**9  # optimisation steps of a warm-up


CALLER = contextvars.ContextVar("vaelab_caller", default="python")  # "cli" while a `vaelab` command runs


@contextlib.contextmanager
def caller(kind: str):
    """`with caller("cli"):` advice inside names settings as flags (`--lr 0.0001`), else as keywords."""
    token = CALLER.set(kind)
    try:
        yield
    finally:
        CALLER.reset(token)


def as_given(name: str, value) -> str:
    """A setting as the caller writes it: `--lr 0.0001` on the command line, `lr=0.0001` in Python."""
    if CALLER.get() == "cli":
        return flag_name(name) + ("" if value is True else f" {value:g}" if isinstance(value, float) else f" {value}")
    return f"{name}={value:g}" if isinstance(value, float) else f"{name}={value!r}"


def opt(default, help: str, **checks):
    """A dataclass field with its help and checks (min, max: inclusive; above: exclusive; choices;
    cap: the largest value vaelab accepts because of what it costs; items: the most values a list holds).
    `flag` names the flag when the field's name cannot (range_ -> --range)."""
    return field(default=default, metadata={"help": help, **checks})


KEYWORDS = contextvars.ContextVar("vaelab_keywords", default=())  # (setting, keyword) pairs a Python call used


@contextlib.contextmanager
def keywords(**names: str):
    """`with keywords(samples="n"):` a problem with the setting `samples` names the keyword `n`
    that the Python caller gave it (the notebook API's `run.samples(n=...)`)."""
    token = KEYWORDS.set((*KEYWORDS.get(), *names.items()))
    try:
        yield
    finally:
        KEYWORDS.reset(token)


def flag_name(name: str, meta=None) -> str:
    return (meta or {}).get("flag") or "--" + name.replace("_", "-")


def named(name: str, meta=None) -> str:
    """A setting as its caller names it: its flag on the command line (`--batch-size`), its keyword
    in Python (`batch_size`; `n` where the call took it so)."""
    return flag_name(name, meta) if CALLER.get() == "cli" else dict(KEYWORDS.get()).get(name, name.rstrip("_"))


def problem(name: str, value, meta) -> str | None:
    """What is wrong with `value` for the field `name` with metadata `meta`, or None."""
    flag = named(name, meta)
    if value is None:
        return None
    if isinstance(value, tuple) and len(value) > meta.get("items", len(value)):  # what it costs grows with them
        return f"{flag} takes at most {meta['items']} values, got {len(value)}"
    if isinstance(value, tuple) and "choices" not in meta:  # e.g. --channels 32,64: each value
        return next((p for v in value if (p := problem(name, v, meta))), None)
    if "valid" in meta and (wrong := meta["valid"](value)):  # a check no range or list of choices says
        return f"{flag} {wrong}"
    if "choices" in meta and value not in meta["choices"]:
        return f"{flag} must be one of {', '.join(map(str, meta['choices']))}, got {value!r}"
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{flag} must be a finite number, got {value!r}"
    if "min" in meta and "max" in meta and not meta["min"] <= value <= meta["max"]:
        return f"{flag} must be from {meta['min']} to {meta['max']}, got {value!r}"
    if "min" in meta and value < meta["min"]:
        return f"{flag} must be at least {meta['min']}, got {value!r}"
    if "max" in meta and value > meta["max"]:
        return f"{flag} must be at most {meta['max']}, got {value!r}"
    if "cap" in meta and value > meta["cap"]:  # a bound on what a value may cost, not on its meaning
        return f"{flag} must be at most {meta['cap']} (vaelab's limit), got {value!r}"
    if "above" in meta and value <= meta["above"]:
        return f"{flag} must be greater than {meta['above']}, got {value!r}"
    return None


def type_problem(name: str, value, tp, meta) -> str | None:
    """What is wrong with the type of `value` for a field annotated `tp` (int, float, str, bool,
    tuple[int, ...], tuple[tuple[int, int], ...], or one of them or None), or None. Other annotations
    are not checked."""
    union = isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union
    kinds = typing.get_args(tp) if union else (tp,)
    if value is None and type(None) in kinds:
        return None
    names = []
    for kind in kinds:
        if kind is type(None):
            continue
        if kind is int:
            ok, what = isinstance(value, int) and not isinstance(value, bool), "a whole number"
        elif kind is float:
            ok, what = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        elif kind in (str, bool):
            ok, what = isinstance(value, kind), ("text" if kind is str else "true or false")
        elif (
            typing.get_origin(kind) is tuple
            and typing.get_args(kind)[1:] == (Ellipsis,)
            and typing.get_args(kind)[0] is int
        ):
            ok = isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            what = "a list of whole numbers"
        elif kind == tuple[tuple[int, int], ...]:
            ok = isinstance(value, tuple) and all(
                isinstance(p, tuple) and len(p) == 2 and all(type(v) is int for v in p) for p in value
            )
            what = "a list of pairs of whole numbers, such as ((1, 7), (4, 9))"
        else:
            return None
        if ok:
            return None
        names.append(what)
    return f"{named(name, meta)} must be {' or '.join(names)}, got {value!r}"


def check(settings) -> None:
    """Raise VaelabError naming the first field of `settings` whose value fails its checks: its
    type (as annotated), then its range or choices."""
    for f in fields(settings):
        value = getattr(settings, f.name)
        message = (type_problem(f.name, value, f.type, f.metadata) if not isinstance(f.type, str) else None) or problem(
            f.name, value, f.metadata
        )
        if message:
            raise VaelabError(message)


def check_values(cls, values: dict) -> None:
    """Raise VaelabError naming the first of `values` ({field: value} of the settings class `cls`)
    that fails its field's checks, as `check` would, before a whole settings object can be made."""
    known = {f.name: f for f in fields(cls)}
    for name, value in values.items():
        f = known[name]
        message = (type_problem(name, value, f.type, f.metadata) if not isinstance(f.type, str) else None) or problem(
            name, value, f.metadata
        )
        if message:
            raise VaelabError(message)


def defaults(cls) -> dict:
    """{field name: default} of a settings class."""
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


# ---- how a flag's text reads: text -> value, or ValueError saying what was expected ---------------------


def whole_number(text: str, low: int = 1, high: int | None = None, why: str = "") -> int:
    """A whole number from `low` (to `high`); `why` says where the upper bound comes from."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None
    if high is not None and not low <= value <= high:
        raise ValueError(f"expected a number from {low} to {high:,}{f' ({why})' if why else ''}, got {text!r}")
    if value < low:
        raise ValueError(f"expected a number of at least {low}, got {text!r}")
    return value


def int_tuple(text: str) -> tuple[int, ...]:
    """32,64 -> (32, 64), each at least 1."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"expected comma-separated integers such as 32,64, got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"expected positive integers such as 32,64, got {text!r}")
    return values


def image_shape(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"expected C,H,W such as 1,28,28 or 3,32,32, got {text!r}")
    return tuple(int(p) for p in parts)


def port_number(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise ValueError(f"expected a port number from 0 to 65535, got {text!r}")
    return int(text)


def label_list(text: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() for p in parts):
        raise ValueError(f"expected class indices separated by commas, such as 4,8, got {text!r}")
    return tuple(int(p) for p in parts)


def pair_list(text: str) -> tuple[tuple[int, int], ...]:
    pairs = [p.strip().split(":") for p in text.split(",")]
    if not all(len(p) == 2 and all(x.strip().isdigit() for x in p) for p in pairs):
        raise ValueError(f"expected class pairs A:B separated by commas, such as 1:7,4:9, got {text!r}")
    return tuple((int(a), int(b)) for a, b in pairs)


def _number(text: str, ok, wanted: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")  # fails `ok` below, so the message is the same
    if not ok(value):
        raise ValueError(f"expected {wanted}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    return _number(text, lambda v: 0 < v < float("inf"), "a number above 0")


def percentile(text: str) -> float:
    return _number(text, lambda v: 0 <= v < 50, "a percentile from 0 up to (not including) 50")
