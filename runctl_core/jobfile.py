"""The job file ``runctl.yaml``: a run written down, reviewed and rerun (as SkyPilot's task YAML and dstack's
``.dstack.yml``). Validated by pydantic; an error names the file, the line and the key. Flags and Python keyword
arguments override the file's keys (``Job.merged``). Values of ``secrets`` are read from the local environment
at run time and are never written to the file, the state store or any output."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from runctl_core.durations import parse_duration
from runctl_core.errors import ConfigError, UsageError

JOB_FILE = "runctl.yaml"
RESOURCE_KEYS = ("gpu", "gpu_count", "instance_type", "spot", "max_price", "disk_gb", "image", "region", "nodes")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Resources(BaseModel):
    """The machine: by GPU name or by the provider's machine type."""

    model_config = ConfigDict(extra="forbid")

    gpu: str | None = Field(default=None, description="a GPU by name: A100, H100, L4, T4, 'RTX 4090'")
    gpu_count: int = Field(default=1, ge=1, le=64, description="how many GPUs (with gpu)")
    instance_type: str | None = Field(default=None, description="the provider's machine type, e.g. g5.xlarge")
    spot: bool | None = Field(default=None, description="interruptible and cheaper (default: the config's run.spot)")
    max_price: float | None = Field(
        default=None, gt=0, le=1_000_000, allow_inf_nan=False, description="highest $/h for the whole instance"
    )
    disk_gb: int | None = Field(default=None, ge=1, description="disk size in GB")
    image: str | None = Field(default=None, description="machine or container image instead of the provider's")
    region: str | None = Field(default=None, description="region or zone, where the provider has them")
    nodes: int = Field(default=1, ge=1, le=64, description="machines for a multi-node job")


class Job(BaseModel):
    """One run of a project: what to run, with what, where, and what to bring back."""

    model_config = ConfigDict(extra="forbid", title="runctl job file (runctl.yaml)")

    name: str | None = Field(default=None, description="a name for people; shown with the job")
    script: str | None = Field(default=None, description="the Python script to run, relative to the project")
    args: list[str] = Field(default_factory=list, description="arguments for the script")
    command: str | None = Field(default=None, description="a shell command to run instead of a Python script")
    setup: list[str] = Field(default_factory=list, description="shell lines run before the script, in order")
    python: str | None = Field(default=None, description="the Python version to run with, e.g. '3.11'")
    env: dict[str, str] = Field(default_factory=dict, description="environment; ${VAR} takes the local value")
    env_file: str | None = Field(default=None, description="a file of NAME=VALUE lines added to env")
    secrets: list[str] = Field(
        default_factory=list, description="names of local environment variables passed at run time, never stored"
    )
    resources: Resources = Field(default_factory=Resources)
    provider: str | list[str] | None = Field(
        default=None, description="one provider, or a list in order of preference (tried in turn, like auto)"
    )
    outputs: str | None = Field(default=None, description="collect checkpoints into OUTPUTS/JOB_ID")
    timeout: float | None = Field(default=None, gt=0, description="kill the job after this (e.g. 2h, 30m)")
    max_runtime: float | None = Field(default=None, gt=0, description="the instance ends itself after this")
    recover: bool | None = Field(default=None, description="resume a preempted job on a new instance")
    max_restarts: int | None = Field(default=None, ge=0, le=100, description="with recover: how many times")
    project: str | None = Field(default=None, description="the directory to send (default: the file's directory)")

    _source: Path | None = PrivateAttr(default=None)

    @field_validator("timeout", "max_runtime", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        return parse_duration(value)

    @field_validator("args", mode="before")
    @classmethod
    def _args(cls, value: Any) -> Any:
        return [str(v) for v in value] if isinstance(value, (list, tuple)) else value

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        """Numbers become their text; a boolean, None, list or mapping is refused (which text would it be?). A
        job file's values arrive here as written (``written.py``): ``1e-3`` stays ``1e-3``."""
        if isinstance(value, dict):
            for k, v in value.items():
                if v is None or isinstance(v, (bool, list, tuple, dict, set)):
                    raise ValueError(
                        f"{k}: {v!r} is not an environment value; write it as a string, e.g. {k}: {str(v)!r}"
                    )
            return {str(k): str(v) for k, v in value.items()}
        return value

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"{name!r} is not an environment variable name (list names only, no values)")
        return value

    # ------------------------------------------------------------------------------------------ reading

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Job:
        """Read and validate a job file; a mistake raises ``ConfigError`` naming the file, the line and the key."""
        import yaml

        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot read job file {file}: {exc.strerror}",
                "write one with: runctl init" if not file.exists() else "check the file's permissions",
            ) from None
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{file} is not UTF-8 text (byte {exc.start}: {exc.object[exc.start : exc.start + 1]!r})",
                "save it as UTF-8 (YAML job files must be), then rerun",
            ) from None
        try:
            node = yaml.compose(text)
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{file}:{mark.line + 1}" if mark is not None else str(file)
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"{where}: not valid YAML: {problem}", "fix the syntax (YAML: key: value)") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{file}:1: a job file is a mapping of keys (name:, script:, ...)", _SCHEMA_HINT)
        lines = _key_lines(node)
        from runctl_core.written import as_written

        data = as_written(node, data, text, file)
        try:
            job = cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, file, lines), _SCHEMA_HINT) from None
        job._source = file.resolve()
        return job

    @property
    def source(self) -> Path | None:
        """The file this job was read from (None when it was built in Python or from flags)."""
        return self._source

    @property
    def base_dir(self) -> Path:
        """Relative paths in the job (project, outputs, env_file) are relative to this."""
        return self._source.parent if self._source else Path.cwd()

    def merged(self, overrides: dict[str, Any]) -> Job:
        """This job with ``overrides`` on top (flags over the file): None values are ignored; ``resources`` keys
        may be given flat (``gpu=...``); ``env`` is merged key by key."""
        data = self.model_dump(exclude_unset=True)
        resources = dict(data.get("resources") or {})
        for key, value in overrides.items():
            if value is None:
                continue
            if key in RESOURCE_KEYS:
                resources[key] = value
            elif key == "env":
                if not isinstance(value, dict):
                    kind = type(value).__name__
                    raise UsageError(f"env is a mapping of NAME: VALUE, not a {kind}", 'e.g. env={"A": "1"}')
                data["env"] = {**data.get("env", {}), **value}
            elif key == "secrets":
                data["secrets"] = list(dict.fromkeys([*data.get("secrets", []), *value]))
            elif key not in type(self).model_fields:
                raise UsageError(f"unknown job option {key!r}", "see the keys with: runctl schema")
            else:
                data[key] = value
        data["resources"] = resources
        try:
            job = type(self).model_validate(data)
        except ValidationError as exc:
            raise UsageError(_describe(exc, None, {}), _SCHEMA_HINT) from None
        job._source = self._source
        return job

    # ------------------------------------------------------------------------------------------ at run time

    def resolved_env(self) -> dict[str, str]:
        """``env_file`` then ``env`` (with ``${VAR}`` replaced by the local value), then ``secrets`` from the local
        environment. Missing variables are errors, never silently empty."""
        env: dict[str, str] = {}
        if self.env_file:
            env.update(read_env_file(self.base_dir / self.env_file))
        for name, value in self.env.items():
            env[name] = _expand(value, name, self._source)
        for name in self.secrets:
            if name not in os.environ:
                raise UsageError(
                    f"secret {name} is not set in this environment",
                    f"export {name}=... before running (the job file lists its name only)",
                )
            env[name] = os.environ[name]
        return env

    def unset_env(self) -> list[str]:
        """What ``resolved_env`` would refuse, without reading any value: for ``--dry-run``'s warnings."""
        where = f"{self._source}: " if self._source else ""
        missing = [
            f"{where}env.{key}: ${{{name}}} is not set in this environment"
            for key, value in self.env.items()
            for name in _VAR.findall(value)
            if name not in os.environ
        ]
        unset_secrets = [name for name in self.secrets if name not in os.environ]
        return missing + [f"secret {name} is not set in this environment" for name in unset_secrets]

    def project_dir(self) -> Path:
        if self.project:
            return (self.base_dir / self.project).resolve()
        if self._source is None:
            from runctl_core.files import default_project_root

            return default_project_root()  # never the home directory or / by accident
        return self.base_dir.resolve()

    def outputs_dir(self) -> Path | None:
        return (self.base_dir / self.outputs).expanduser().resolve() if self.outputs else None

    def preference(self) -> list[str] | None:
        """The providers to try in turn when ``provider`` is a list."""
        return list(self.provider) if isinstance(self.provider, list) else None

    def public_view(self) -> dict[str, Any]:
        """The merged job as ``--dry-run`` shows it: secrets by name, never by value."""
        return self.model_dump(mode="json")


_SCHEMA_HINT = "see every key with: runctl schema (or runctl init for a commented example)"


def read_env_file(path: Path) -> dict[str, str]:
    """NAME=VALUE lines (``export`` allowed, ``#`` comments, optional quotes), as docker and dotenv read them."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read env file {path}: {exc.strerror}", "check the path (--env-file FILE)") from None
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"env file {path} is not UTF-8 text (byte {exc.start}: {exc.object[exc.start : exc.start + 1]!r})",
            "save it as UTF-8 NAME=VALUE lines, then rerun",
        ) from None
    env: dict[str, str] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].strip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not _NAME.match(name):
            raise UsageError(f"{path}:{number}: expected NAME=VALUE", "one variable per line; # starts a comment")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[name] = value
    return env


def _expand(value: str, key: str, source: Path | None) -> str:
    def local(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            where = f"{source}: " if source else ""
            raise UsageError(
                f"{where}env.{key}: ${{{name}}} is not set in this environment", f"export {name}=... and run again"
            )
        return os.environ[name]

    return _VAR.sub(local, value)


def _key_lines(node: Any, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """The line (1-based) of every key and list item in a composed YAML node tree, by its path."""
    import yaml

    found: dict[tuple[Any, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            here = (*path, key_node.value)
            found[here] = key_node.start_mark.line + 1
            found.update(_key_lines(value_node, here))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            here = (*path, index)
            found[here] = item.start_mark.line + 1
            found.update(_key_lines(item, here))
    return found


def _describe(exc: ValidationError, file: Path | None, lines: dict[tuple[Any, ...], int]) -> str:
    problems = []
    for error in exc.errors():
        loc = tuple(part for part in error["loc"] if not (isinstance(part, str) and part in ("str", "list[str]")))
        line = None
        for cut in range(len(loc), 0, -1):
            if loc[:cut] in lines:
                line = lines[loc[:cut]]
                break
        key = ".".join(str(p) for p in loc) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key" + _suggest(str(loc[-1]), loc[:-1])
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        problems.append(f"{where}{key}: {message}")
    return "; ".join(problems)


def _suggest(name: str, parent: tuple[Any, ...]) -> str:
    import difflib

    keys = list(Resources.model_fields) if parent == ("resources",) else list(Job.model_fields)
    close = difflib.get_close_matches(name, keys, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def job_schema() -> dict[str, Any]:
    """The job file's JSON Schema (for editor completion: yaml-language-server)."""
    return Job.model_json_schema()


STARTER = """\
# runctl job file: `runctl run` reads it (or `runctl run -f FILE`); flags override it.
# Every key: `runctl schema`. Editor completion: point yaml-language-server at that schema.
name: my-training
script: train.py            # relative to the project directory (or `command:` for a non-Python entry)
args: ["--epochs", "3"]
# setup:                    # shell lines run before the script
#   - pip install -r requirements.txt
# python: "3.11"
env:
  PYTHONUNBUFFERED: "1"      # values are text: quote yes/no/on/off/true/false/~ ("yes"); numbers stay as written
  # DATA_DIR: ${DATA_DIR}   # ${VAR} takes the value from your shell
# env_file: .env            # NAME=VALUE lines
# secrets: [WANDB_API_KEY]  # names only: values come from your shell at run time and are never stored
resources:
  # gpu: T4
  # gpu_count: 1
  # instance_type: g5.xlarge
  spot: false
  # max_price: 1.50         # $/h for the whole instance
  # disk_gb: 100
# provider: local           # or a list tried in order: [runpod, aws]
# outputs: ./outputs        # checkpoints land in outputs/JOB_ID
# timeout: 2h
# max_runtime: 6h           # the instance ends itself after this
# recover: true             # resume on a new instance after a spot preemption
# project: .                # the directory sent to the machine
"""
