"""`runctl config init|show|set|validate`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from runctl_core.cli.options import (
    output_option,
    refuse_id_output,
    session_of,
)
from runctl_core.cli.output import emit, examples

if TYPE_CHECKING:
    from runctl_core.session import Session


@click.group(
    "config",
    epilog=examples(
        "runctl config init",
        "runctl config show",
        "runctl config set run.spot true",
        "runctl config set providers.aws.region eu-west-1",
        "runctl config validate",
    ),
)
def config_group() -> None:
    """Read, write and check runctl's configuration (.runctl.toml, then the user config file)."""


@config_group.command("init", epilog=examples("runctl config init", "runctl config init --user"))
@click.option("--user", is_flag=True, help="Write the user config file instead of ./.runctl.toml.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@output_option
@click.pass_context
def config_init(ctx: click.Context, user: bool, force: bool) -> None:
    """Write a commented starting configuration."""
    from runctl_core.config import PROJECT_FILE, TEMPLATE, user_config_path
    from runctl_core.errors import UsageError

    session = session_of(ctx, load_config=False)
    path = user_config_path() if user else Path.cwd() / PROJECT_FILE
    if path.exists() and not force:
        raise UsageError(f"{path} already exists", "edit it, use `runctl config set`, or pass --force")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TEMPLATE)
    emit(session, {"path": str(path)}, f"wrote {path}", str(path))


@config_group.command("show", epilog=examples("runctl config show", "runctl config show --defaults -o json"))
@click.option("--defaults", is_flag=True, help="Show every key with its default value instead.")
@output_option
@click.pass_context
def config_show(ctx: click.Context, defaults: bool) -> None:
    """The effective configuration and the files it came from; durations as written (e.g. "6h"). With
    --defaults: every key with its default, unset ones commented."""
    import tomlkit

    from runctl_core.config import DURATION_KEYS, Config, raw_run_values
    from runctl_core.durations import format_duration

    session = session_of(ctx)
    if defaults:
        config = Config()
        sources: list[str] = []
        raw: dict[str, Any] = {}
    else:
        config = session.loaded.config
        sources = [str(p) for p in session.loaded.sources]
        raw = raw_run_values(session.loaded.sources)
    numbers = config.model_dump(mode="json", exclude_none=False)
    doc = {"sources": sources, "config": numbers}  # JSON: durations in seconds, for scripts
    tables = {"run": DURATION_KEYS, "resources": ("prune_job_files_after",)}
    data = {**numbers, **{name: dict(numbers[name]) for name in tables}}
    for name, keys in tables.items():
        written = raw if name == "run" else ({} if defaults else raw_run_values(session.loaded.sources, name))
        for key in keys:  # text: as written in the file, else the default in the same form
            if key in written:
                data[name][key] = written[key]
            elif data[name].get(key) is not None:
                data[name][key] = format_duration(data[name][key])
    out = tomlkit.document()
    out.add(tomlkit.comment("from: " + (", ".join(sources) if sources else "defaults only")))
    for key, value in data.items():
        if key not in ("providers", *tables) and value is not None:
            out[key] = value
    for name in tables:
        table = tomlkit.table()
        for key, value in data[name].items():
            if value is None:
                if defaults:
                    table.add(tomlkit.comment(f"{key} = (not set)"))
            else:
                table[key] = value
        out[name] = table
    if data["providers"]:
        out["providers"] = data["providers"]
    emit(session, doc, tomlkit.dumps(out))


@config_group.command(
    "set",
    epilog=examples(
        "runctl config set run.spot true",
        "runctl config set run.max_runtime 6h",
        "runctl config set run.timeout ''          # unset: no timeout",
        "runctl config set providers.aws.bucket my-bucket --user",
    ),
    context_settings={"ignore_unknown_options": True},  # VALUE may be negative (-1): refused by range, not as an option
)
@click.argument("key", metavar="KEY")
@click.argument("value", metavar="VALUE")
@click.option("--user", is_flag=True, help="Write the user config file instead of the project's .runctl.toml.")
@output_option
@click.pass_context
def config_set(ctx: click.Context, key: str, value: str, user: bool) -> None:
    """Set KEY (dotted, e.g. run.spot) to VALUE (TOML syntax: true, 3, "text"; bare words are strings). A refused
    value names the key, what it accepts and an example, and leaves the file unchanged; all keys: runctl config
    show --defaults."""
    from runctl_core.config import PROJECT_FILE, find_project_config, parse_value, set_key, user_config_path

    session = session_of(ctx, load_config=False)
    refuse_id_output(session)
    path = user_config_path() if user else (find_project_config() or Path.cwd() / PROJECT_FILE)
    import tomlkit

    from runctl_core.errors import ConfigError

    parsed = parse_value(value)
    if key == "default_provider":
        _check_default_provider(path, parsed)
    before = path.read_bytes() if path.is_file() else None

    def write(candidate: Any) -> None:
        set_key(path, key, candidate)
        if key.startswith("providers."):
            try:
                _validate_providers(session, only=key.split(".")[1])
            except Exception:  # the provider refused the value: leave the file as it was
                if before is None:
                    path.unlink(missing_ok=True)
                else:
                    path.write_bytes(before)
                raise

    try:
        try:
            write(parsed)
        except ConfigError as refused:
            if isinstance(parsed, str):
                raise
            try:  # a text key given 3.11 or 2024 (TOML made it a number): the text as written
                write(value)
            except ConfigError:
                raise refused from None
            parsed = value
    except ConfigError as exc:  # the file is as it was: say so, rather than "fix it in FILE"
        exc.hint = f"nothing was written to {path}; " + exc.hint.removeprefix(f"fix it in {path}; ")
        raise
    shown = tomlkit.item(parsed).as_string()
    emit(session, {"path": str(path), "key": key, "value": parsed}, f"{key} = {shown} in {path}")


@config_group.command("validate", epilog=examples("runctl config validate", "runctl config validate --config ci.toml"))
@output_option
@click.pass_context
def config_validate(ctx: click.Context) -> None:
    """Check the configuration files and every configured provider's settings; exit 3 on a problem."""
    session = session_of(ctx)
    checked = _validate_providers(session)
    sources = [str(p) for p in session.loaded.sources]
    emit(
        session,
        {"valid": True, "sources": sources, "providers_checked": checked},
        f"configuration is valid ({', '.join(sources) or 'defaults only'}); providers checked: "
        f"{', '.join(checked) or 'none configured'}",
    )


def _check_default_provider(path: Path, value: object) -> None:
    """default_provider names an installed provider: another name would break every later run (auto too: it is
    for `run --provider auto` only; create and train need one provider)."""
    from runctl_core.errors import ConfigError
    from runctl_core.plugins import installed_providers

    names = sorted(info.name for info in installed_providers() if not info.blocked)
    if value in names:
        return
    raise ConfigError(
        f"{path}: default_provider = {value!r} is not accepted: an installed provider ({', '.join(names)})",
        f"nothing was written to {path}; e.g. runctl config set default_provider local (to add a provider, "
        f"install its package first: pip install runctl-{value})",
        details={"file": str(path), "key": "default_provider", "accepted": ", ".join(names)},
    )


def _validate_providers(session: Session, only: str | None = None) -> list[str]:
    from runctl_core.errors import ConfigError, PluginError

    session.__dict__.pop("loaded", None)  # re-read what was just written
    names = [only] if only else sorted(session.loaded.config.providers)
    for name in names:
        try:
            session.provider(name)  # loads the plugin and validates [providers.NAME] against its schema
        except PluginError as exc:  # [providers.NAME] for a provider that is not installed: say where
            from runctl_core.plugins import installed_providers

            if any(info.name == name for info in installed_providers()):
                raise  # installed but broken: not the configuration's fault
            source = session.loaded.provider_sources.get(name, "the configuration")
            raise ConfigError(f"{source}: [providers.{name}]: {exc.message}", exc.hint) from None
    return names
