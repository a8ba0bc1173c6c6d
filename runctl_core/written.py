"""Job-file values as the user wrote them, not as YAML typed them.

YAML (1.1, PyYAML's ``safe_load``) reads ``1e-3`` as the float 0.001, ``010`` as the integer 8, ``yes``/``on`` as
True and ``3.10`` as 3.1; passing those on as ``str(value)`` would hand a job ``0.001``, ``8``, ``True`` and
``3.1``. For the keys whose values are text for the job - ``env`` values, ``args`` items and ``python`` - a number
(or date) is taken as written in the file; a boolean, null, list or mapping is refused with the file's line, the
key and the quoted form to write instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runctl_core.errors import ConfigError

_TAG = "tag:yaml.org,2002:"
_KINDS = {f"{_TAG}bool": "a boolean", f"{_TAG}null": "null (no value)"}


def as_written(root: Any, data: dict[str, Any], text: str, file: Path) -> dict[str, Any]:
    """``data`` (from ``safe_load``) with ``env``, ``args`` and ``python`` replaced by their text as written in
    ``text``, read from ``root`` (the composed node tree of the same text)."""
    import yaml

    if not isinstance(root, yaml.MappingNode):
        return data
    data = dict(data)
    for key_node, value_node in _pairs(root):
        key = key_node.value
        if key == "env" and isinstance(value_node, yaml.MappingNode):
            env: dict[str, str] = {}
            for name_node, item in _pairs(value_node):
                if name_node.tag != f"{_TAG}str":  # on: / 1: / null: as a variable name
                    kind = _KINDS.get(name_node.tag) or "not a string"
                    fix = f'"{name_node.value}": ... (an environment variable name)'
                    raise _refused(file, name_node, text, f"env key {name_node.value!r}", kind, fix)
                name = name_node.value
                env[name] = _text(item, text, file, f"env.{name}", lambda q, n=name: f"{n}: {q}")
            data["env"] = env
        elif key == "args" and isinstance(value_node, yaml.SequenceNode):
            data["args"] = [_text(item, text, file, f"args.{i}", str) for i, item in enumerate(value_node.value)]
        elif key == "python" and isinstance(value_node, yaml.ScalarNode) and value_node.tag not in _KINDS:
            data["python"] = value_node.value  # 3.10 is "3.10", not 3.1
    return data


def _pairs(mapping: Any) -> list[tuple[Any, Any]]:
    """A mapping node's (key, value) nodes with YAML merge keys (``<<: *defaults``) expanded; later keys win, as
    in ``safe_load``."""
    import yaml

    merged: list[tuple[Any, Any]] = []
    own: list[tuple[Any, Any]] = []
    for key_node, value_node in mapping.value:
        if key_node.tag == f"{_TAG}merge":
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                merged.extend(_pairs(source))
        else:
            own.append((key_node, value_node))
    return merged + own


def _text(node: Any, text: str, file: Path, key: str, example: Any) -> str:
    """The value of a scalar meant as text: strings as YAML read them (quotes and escapes processed), numbers and
    dates as written; anything else refused."""
    import yaml

    if isinstance(node, yaml.ScalarNode) and node.tag not in _KINDS:
        return str(node.value)
    if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)):
        kind = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
    else:
        kind = _KINDS[node.tag]
    written = text[node.start_mark.index : node.end_mark.index].strip()
    quoted = '""' if node.tag == f"{_TAG}null" else '"' + written.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if "\n" in written:  # a block list or mapping: one string of the user's choosing
        quoted = '"..." (one string, e.g. comma-separated)'
    raise _refused(file, node, text, key, kind, example(quoted), written)


def _refused(
    file: Path, node: Any, text: str, key: str, kind: str, fix: str, written: str | None = None
) -> ConfigError:
    line = node.start_mark.line + 1
    shown = written if written is not None else node.value
    what = f"{shown!r} is {kind} in YAML" if shown else f"an empty value is {kind} in YAML"
    return ConfigError(
        f"{file}:{line}: {key}: {what}, not text; runctl does not guess which text you meant",
        f"quote it: {fix}" + (" (an empty value)" if kind.startswith("null") else ""),
        details={"file": str(file), "line": line, "key": key},
    )
