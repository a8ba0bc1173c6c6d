"""Configuration: ``.runctl.toml`` found upward from the working directory, over the user config file.

Every key has a default. Files are validated by pydantic; a bad key or value is reported with the file, the
key and the accepted values. Secrets never live here: they come from the environment or the providers' own
credential files.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any, Literal

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from runctl_core.durations import parse_duration
from runctl_core.errors import ConfigError

PROJECT_FILE = ".runctl.toml"


def _default_owner() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "runctl"


class RunSettings(BaseModel):
    """Defaults for ``runctl run`` and ``runctl create`` (each overridable by a flag)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    spot: bool = False
    on_demand_fallback: Literal["ask", "always", "never"] = "ask"
    timeout: float | None = Field(default=None, description="job timeout in seconds (or 2h, 30m)")
    max_runtime: float | None = Field(default=86400.0, description="paid instances end themselves after this")
    wait_timeout: float | None = Field(default=None, description="seconds to wait for an instance to be ready")
    keep: bool = False
    recover: bool = False
    max_restarts: int = Field(default=3, ge=0, le=100)
    outputs_dir: str | None = Field(default=None, description="where run collects checkpoints (default: state dir)")
    send_credential_files: list[str] = Field(
        default_factory=list,
        description="credential files to send although runctl never sends them by default (e.g. ['.env'])",
    )

    @field_validator("timeout", "max_runtime", "wait_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        return parse_duration(value)


class ResourceSettings(BaseModel):
    """``runctl resources cleanup``: what it removes besides instances."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    prune_job_files_after: float | None = Field(
        default=7 * 86400.0,
        description="remove what a provider keeps of an ended job (local: its log and checkpoints in the "
        "sandbox) this long after its instance ended, once its checkpoints were collected; \"\" keeps them",
        json_schema_extra={"format": "duration"},
    )

    @field_validator("prune_job_files_after", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        return parse_duration(value)


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    default_provider: str = "local"
    owner: str = Field(default_factory=_default_owner)
    run: RunSettings = Field(default_factory=RunSettings)
    resources: ResourceSettings = Field(default_factory=ResourceSettings)
    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)


class LoadedConfig(BaseModel):
    config: Config
    sources: list[Path] = Field(default_factory=list)  # files read, lowest precedence first
    provider_sources: dict[str, Path] = Field(default_factory=dict)  # which file set [providers.NAME]


def user_config_path() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("runctl")) / "config.toml"


def find_project_config(start: Path | None = None) -> Path | None:
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / PROJECT_FILE
        if candidate.is_file():
            return candidate
    return None


def config_paths(explicit: Path | None = None) -> list[Path]:
    """Files to read, lowest precedence first: the user file, then the project file (or the explicit one)."""
    chosen = explicit or (Path(os.environ["RUNCTL_CONFIG"]) if os.environ.get("RUNCTL_CONFIG") else None)
    if chosen is not None:
        if not chosen.is_file():
            raise ConfigError(f"config file {chosen} does not exist", "create it with: runctl config init")
        return [chosen]
    paths = []
    user = user_config_path()
    if user.is_file():
        paths.append(user)
    project = find_project_config()
    if project is not None and project != user:
        paths.append(project)
    return paths


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", "fix the syntax, then: runctl config validate") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {exc.start}: {exc.object[exc.start : exc.start + 1]!r})",
            "save it as UTF-8 (TOML files must be), then: runctl config validate",
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", "check the file's permissions") from None


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def describe_validation_error(
    exc: ValidationError, source: str, prefix: str = "", model: type[BaseModel] | None = None
) -> ConfigError:
    """One ConfigError naming the file, each dotted key, what it accepts (values or range) and an example.
    ``model`` is what was validated (default: :class:`Config`; a provider's settings schema under ``prefix``)."""
    from runctl_core.config_hints import describe, example_command, field_help, keys_of, table_of

    model = model or Config
    problems: list[str] = []
    examples: list[str] = []
    first: dict[str, Any] = {}
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = prefix + ".".join(str(part) for part in loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            table = table_of(model, loc[:-1])  # the table the unknown key was written in
            known = keys_of(table, prefix + "".join(f"{p}." for p in loc[:-1])) if table else ""
            suggestion = "" if prefix else _suggest_key(loc)
            problems.append(f"unknown key {key!r}{suggestion}" + (f"; accepted keys: {known}" if known else ""))
            first = first or {"key": key}
            continue
        described = field_help(model, loc)
        table = table_of(model, loc)
        if described is None and table is not None:  # a value where a table of keys belongs
            name = next(iter(table.model_fields))
            problems.append(f"{key} is a table: set one of its keys ({keys_of(table, key + '.')})")
            examples.append(example_command(f"{key}.{name}", describe(table, name)))
            continue
        if described is None:
            problems.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
            continue
        dotted, help = described
        dotted = prefix + dotted
        reason = ""
        if kind == "value_error" and "duration" not in help.accepted:  # our validators say why
            reason = f" ({str(err['msg']).removeprefix('Value error, ')})"
        problems.append(f"{dotted} = {err.get('input')!r} is not accepted: {help.accepted}{reason}")
        examples.append(example_command(dotted, help))
        first = first or {"key": dotted, "accepted": help.accepted, "example": examples[-1]}
    example = f"e.g. {examples[0]}; " if examples else ""
    return ConfigError(
        f"{source}: " + "; ".join(problems),
        f"fix it in {source}; {example}the accepted keys and their defaults: runctl config show --defaults",
        details={"file": source, "problems": problems, **first},
    )


def load_config(explicit: Path | None = None) -> LoadedConfig:
    paths = config_paths(explicit)
    merged: dict[str, Any] = {}
    provider_sources: dict[str, Path] = {}
    for path in paths:
        data = read_toml(path)
        try:
            Config.model_validate(data)
        except ValidationError as exc:
            raise describe_validation_error(exc, str(path)) from None
        for name in data.get("providers") or {}:
            provider_sources[name] = path
        merged = _merge(merged, data)
    try:
        config = Config.model_validate(merged)
    except ValidationError as exc:  # pragma: no cover - each file validated above
        raise describe_validation_error(exc, " + ".join(map(str, paths))) from None
    return LoadedConfig(config=config, sources=paths, provider_sources=provider_sources)


def validate_provider_settings(name: str, schema: Any, loaded: LoadedConfig) -> dict[str, Any]:
    """Check ``[providers.NAME]`` against the provider's schema; return the validated table as a dict."""
    table = loaded.config.providers.get(name, {})
    if schema is None:
        return table
    source = str(loaded.provider_sources.get(name, "the configuration"))
    try:
        model = schema.model_validate(table)
    except ValidationError as exc:
        raise describe_validation_error(exc, source, prefix=f"providers.{name}.", model=schema) from None
    dumped: dict[str, Any] = model.model_dump(exclude_unset=True)
    return dumped


def parse_value(text: str) -> Any:
    """A value from the command line: TOML syntax when it parses (numbers, booleans, arrays), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def set_key(path: Path, dotted: str, value: Any) -> None:
    """Set ``dotted`` (e.g. ``run.spot`` or ``providers.aws.region``) in ``path``, validating first. The file is
    edited in place (tomlkit): its comments, order and layout stay as they were."""
    import tomlkit

    try:
        doc = tomlkit.parse(path.read_text()) if path.is_file() else tomlkit.document()
    except (OSError, UnicodeDecodeError, tomlkit.exceptions.ParseError) as exc:
        raise ConfigError(f"cannot edit {path}: {exc}", "fix the file, then: runctl config validate") from None
    node: Any = doc
    parts = dotted.split(".")
    for part in parts[:-1]:
        if part not in node:
            node[part] = tomlkit.table()
        node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f"{'.'.join(parts[:-1])} in {path} is not a table", "choose another key")
    node[parts[-1]] = value
    try:
        Config.model_validate(doc.unwrap())
    except ValidationError as exc:
        raise describe_validation_error(exc, str(path)) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(tomlkit.dumps(doc))
    os.replace(tmp, path)


DURATION_KEYS = ("timeout", "max_runtime", "wait_timeout")


def raw_run_values(paths: list[Path], table: str = "run") -> dict[str, Any]:
    """The ``[run]`` (or another table's) values as written in the files (later files win): durations are shown
    as the user wrote them (``"6h"``), not as seconds."""
    raw: dict[str, Any] = {}
    for path in paths:
        raw.update(read_toml(path).get(table) or {})
    return raw


def _suggest_key(loc: tuple[Any, ...]) -> str:
    import difflib

    parent = loc[:-1]
    model: Any = RunSettings if parent == ("run",) else Config if not parent else None
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean {'.'.join([*map(str, parent), close[0]])!r}?)" if close else ""


TEMPLATE = """\
# runctl configuration (see the README, "Configuration"). Every key is optional.
# Secrets do not go here: use AWS_* / RUNPOD_API_KEY / LYCEUM_API_KEY or the providers' credential files.

# provider used when --provider and RUNCTL_PROVIDER are not given
default_provider = "local"
# owner = "your-name"            # value of the runctl:owner tag (default: your user name)

[run]
spot = false
on_demand_fallback = "ask"       # spot refused: "ask" (on a terminal), "always", "never"
# timeout = "2h"                 # kill the job after this
max_runtime = "24h"              # a paid instance ends itself after this, even if this laptop dies
keep = false                     # keep the instance after run (default: terminate)
recover = false                  # resume preempted jobs on a new instance
max_restarts = 3

# [providers.local]
# use_uv = true
"""
