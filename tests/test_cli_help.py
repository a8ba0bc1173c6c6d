"""Every command explains itself: help text for each argument and option, and an example."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from runctl_core.cli.main import COMMANDS, LazyGroup, cli
from runctl_core.testing.cli import runctl_executable

RUNCTL = runctl_executable()


def _all_commands() -> list[tuple[str, click.Command]]:
    found = []
    ctx = click.Context(cli)
    for name in COMMANDS:
        command = LazyGroup.get_command(cli, ctx, name)  # type: ignore[arg-type]
        assert command is not None
        found.append((name, command))
        if isinstance(command, click.Group):
            for sub_name, sub in command.commands.items():
                found.append((f"{name} {sub_name}", sub))
    return found


@pytest.mark.parametrize(("name", "command"), _all_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_command_has_help_and_example(name: str, command: click.Command) -> None:
    assert command.help, f"{name} has no help"
    assert command.epilog and "Examples:" in command.epilog and "runctl " in command.epilog, f"{name}: no example"
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{name} {param.opts} has no help"
        elif isinstance(param, click.Argument):
            words = (param.metavar or param.name or "").replace("[", " ").replace("]", " ").replace(".", " ").split()
            shown = next(w for w in words if w.isalpha()).upper()
            assert shown in command.help, f"{name}: argument {shown} is not explained in the help text"


def test_lazy_command_lines_match_commands() -> None:
    for name, (_module, _attr, line) in COMMANDS.items():
        command = LazyGroup.get_command(cli, click.Context(cli), name)  # type: ignore[arg-type]
        assert command is not None and command.name == name
        assert line.endswith(".") and len(line) < 80


def test_arguments_are_explained_in_usage_or_help(invoke) -> None:  # type: ignore[no-untyped-def]
    for name in ("run", "train", "sync", "logs", "terminate", "status"):
        result = invoke(name, "--help")
        assert result.code == 0
        assert "Examples:" in result.out


def test_help_imports_no_sdk_or_pydantic() -> None:
    code = (
        "import sys; from runctl_core.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "bad = [m for m in ('boto3', 'httpx', 'pydantic', 'rich', 'sqlite3', 'stevedore') if m in sys.modules]\n"
        "print('LOADED', bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "LOADED []" in out, out


def test_version(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("--version")
    assert result.code == 0 and "runctl" in result.out


def test_console_script_exists() -> None:
    assert subprocess.run([RUNCTL, "--help"], capture_output=True).returncode == 0


def test_hook_reference_is_up_to_date() -> None:
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "docs" / "gen_hook_reference.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
