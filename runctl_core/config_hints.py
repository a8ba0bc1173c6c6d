"""What a configuration key accepts, in words, with an example: for the errors of ``.runctl.toml`` and
``runctl config set`` (the core's ``[run]`` keys and every provider's settings schema alike)."""

from __future__ import annotations

import shlex
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

BOUNDS = (("ge", True, False), ("gt", True, True), ("le", False, False), ("lt", False, True))
DURATION_HELP = "a duration: seconds (90) or 90s, 15m, 2h, 1d, 1h30m"


@dataclass
class KeyHelp:
    """One key's accepted values in words and an example value written as ``config set`` takes it."""

    accepted: str
    example: str


def _is_duration(model: type[BaseModel], name: str) -> bool:
    from runctl_core.config import DURATION_KEYS, RunSettings

    extra = model.model_fields[name].json_schema_extra
    marked = isinstance(extra, dict) and extra.get("format") == "duration"
    return (model is RunSettings and name in DURATION_KEYS) or marked


def _bounds(metadata: list[Any]) -> tuple[Any, Any, bool, bool]:
    low = high = None
    low_open = high_open = False
    for item in metadata:
        for attr, is_low, is_open in BOUNDS:
            value = getattr(item, attr, None)
            if value is not None:
                if is_low:
                    low, low_open = value, is_open
                else:
                    high, high_open = value, is_open
    return low, high, low_open, high_open


def _number(kind: str, metadata: list[Any]) -> str:
    low, high, low_open, high_open = _bounds(metadata)
    if low is not None and high is not None and not low_open and not high_open:
        return f"{kind} from {low:g} to {high:g}"
    parts = []
    if low is not None:
        parts.append(f"{'above' if low_open else 'of at least'} {low:g}")
    if high is not None:
        parts.append(f"{'below' if high_open else 'at most'} {high:g}")
    return f"{kind} " + " and ".join(parts) if parts else kind


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else annotation), True
    return annotation, False


def _example_number(default: Any, metadata: list[Any]) -> str:
    low = _bounds(metadata)[0]
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        return f"{default:g}"
    return f"{low:g}" if low is not None else "1"


def field_help(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[str, KeyHelp] | None:
    """The dotted key (within ``model``) and what it accepts, following nested models along ``loc``; None when
    ``loc`` does not name a field (e.g. an unknown key)."""
    current: type[BaseModel] = model
    names: list[str] = []
    for part in loc:
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        names.append(str(part))
        annotation, _ = _strip_optional(field.annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            current = annotation
            continue
        return ".".join(names), describe(current, str(part))
    return None


def describe(model: type[BaseModel], name: str) -> KeyHelp:
    """What ``model.name`` accepts, and an example value."""
    from runctl_core.durations import format_duration

    field = model.model_fields[name]
    annotation, optional = _strip_optional(field.annotation)
    default = field.get_default(call_default_factory=True)
    none = ' ("" for none)' if optional else ""
    if _is_duration(model, name):
        example = format_duration(default) if isinstance(default, (int, float)) else "2h"
        return KeyHelp(DURATION_HELP + none, example)
    if annotation is bool:
        return KeyHelp("true or false", "true")
    if typing.get_origin(annotation) is Literal:
        options = [str(o) for o in typing.get_args(annotation)]
        words = repr(options[-1])
        if len(options) > 1:
            words = ", ".join(repr(o) for o in options[:-1]) + f" or {words}"
        return KeyHelp(words, str(default) if default in options else options[0])
    if annotation is int:
        return KeyHelp(_number("an integer", field.metadata) + none, _example_number(default, field.metadata))
    if annotation is float:
        return KeyHelp(_number("a number", field.metadata) + none, _example_number(default, field.metadata))
    if typing.get_origin(annotation) is list:
        return KeyHelp('a list of strings, e.g. [".env"]', '[".env"]')
    if typing.get_origin(annotation) is dict:
        return KeyHelp("a table", "{}")
    if annotation is str:
        given = [str(e) for e in field.examples or []] or ([default] if isinstance(default, str) and default else [])
        return KeyHelp("text" + none, given[0] if given else "VALUE")
    return KeyHelp(str(annotation), "VALUE")


def example_command(key: str, help: KeyHelp) -> str:
    return f"runctl config set {key} {shlex.quote(help.example)}"


def table_of(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The nested model at ``loc`` (``()``: ``model`` itself), or None when ``loc`` is not a table of models."""
    current = model
    for part in loc:
        field = current.model_fields.get(str(part))
        annotation = _strip_optional(field.annotation)[0] if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        current = annotation
    return current


def keys_of(model: type[BaseModel], prefix: str) -> str:
    """The keys of ``model`` as dotted names under ``prefix`` (for an unknown key's message); a nested table is
    shown as ``[name]``."""
    names = []
    for name, field in model.model_fields.items():
        table = table_of(model, (name,)) is not None or typing.get_origin(_strip_optional(field.annotation)[0]) is dict
        names.append(f"[{prefix}{name}]" if table else prefix + name)
    return ", ".join(names)
