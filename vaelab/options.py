"""Settings as typed, frozen dataclasses whose fields carry their own help and checks.

    field = opt(default, "help text with units", min=1)   # also: above=, choices=, parse=

A settings class calls `check(self)` in `__post_init__`, so a bad value is refused with the same
message wherever it comes from: a flag, a notebook call or a hand-edited config.json. The CLI
(vaelab/flags.py) builds its flags from the same fields: the default and the help live here once.
`parse`, when given, turns a flag's text into the value (raising ValueError with what it expected).
"""
import math
from dataclasses import MISSING, field, fields

from vaelab.errors import VaelabError


def opt(default, help: str, **checks):
    """A dataclass field with its help and checks (min, max: inclusive; above: exclusive; choices).
    `flag` names the flag when the field's name cannot (range_ -> --range)."""
    return field(default=default, metadata={"help": help, **checks})


def flag_name(name: str, meta=None) -> str:
    return (meta or {}).get("flag") or "--" + name.replace("_", "-")


def problem(name: str, value, meta) -> str | None:
    """What is wrong with `value` for the field `name` with metadata `meta`, or None."""
    flag = flag_name(name, meta)
    if value is None:
        return None
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
    if "above" in meta and value <= meta["above"]:
        return f"{flag} must be greater than {meta['above']}, got {value!r}"
    return None


def check(settings) -> None:
    """Raise VaelabError naming the first field of `settings` whose value fails its checks."""
    for f in fields(settings):
        message = problem(f.name, getattr(settings, f.name), f.metadata)
        if message:
            raise VaelabError(message)


def defaults(cls) -> dict:
    """{field name: default} of a settings class."""
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}
