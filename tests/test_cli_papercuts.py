"""Daily papercuts (issue 10, item 8) and the question before spending (item 6), through the CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from runctl_core.testing.cli import runctl_executable


def test_forgotten_double_dash_gets_the_corrected_command(cli, project: Path) -> None:
    result = cli("run", "examples/train.py", "--epochs", "3")
    assert result.code == 2
    assert "did you mean: runctl run examples/train.py -- --epochs 3" in result.err
    train = cli("train", "local-x", "examples/train.py", "--lr", "0.1")
    assert "did you mean: runctl train local-x examples/train.py -- --lr 0.1" in train.err


def test_did_you_mean_for_commands_and_config_keys(cli, project: Path) -> None:
    result = cli("stauts")
    assert result.code == 2 and "Did you mean: status?" in result.err
    bad = cli("config", "set", "run.max_runtim", "6h")
    assert bad.code == 3 and "did you mean 'run.max_runtime'?" in bad.err


def test_status_with_an_unknown_provider_fails_like_other_commands(cli, project: Path) -> None:
    status = cli("--provider", "nope", "status")
    price = cli("--provider", "nope", "price")
    assert status.code == price.code != 0
    assert "no provider named 'nope'" in status.err and "no provider named 'nope'" in price.err


def test_config_set_keeps_comments_and_show_prints_durations_as_written(cli, project: Path) -> None:
    config = project / ".runctl.toml"
    config.write_text('# my settings\n[run]\n# six hours is enough\nmax_runtime = "6h"  # inline\n')
    assert cli("config", "set", "run.spot", "true").code == 0
    text = config.read_text()
    assert "# my settings" in text and "# six hours is enough" in text and '"6h"  # inline' in text
    assert "spot = true" in text
    shown = cli("config", "show")
    assert 'max_runtime = "6h"' in shown.out
    defaults = cli("config", "show", "--defaults")
    assert 'max_runtime = "24h"' in defaults.out
    for key in ("timeout", "wait_timeout", "outputs_dir", "keep", "recover", "max_restarts", "on_demand_fallback"):
        assert key in defaults.out, key


def test_env_file(cli, project: Path) -> None:
    (project / "show.py").write_text("import os\nprint('A=' + os.environ['A'], 'B=' + os.environ['B'])\n")
    (project / "vars.env").write_text("# comment\nA=from-file\nB=from-file\n")
    result = cli("run", "show.py", "--env-file", "vars.env", "--env", "B=from-flag", "--output", "json")
    assert result.code == 0, result.err
    log = cli("logs", result.json()["job"]["job_id"]).out
    assert "A=from-file B=from-flag" in log
    bad = project / "bad.env"
    bad.write_text("not a pair\n")
    refused = cli("run", "show.py", "--env-file", "bad.env")
    assert refused.code == 2 and "bad.env:1: expected NAME=VALUE" in refused.err


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(cli, shell: str) -> None:
    result = cli("completion", shell)
    assert result.code == 0 and "_RUNCTL_COMPLETE" in result.out


def test_completion_completes_commands(home: Path) -> None:
    import os

    env = {**os.environ, "_RUNCTL_COMPLETE": "bash_complete", "COMP_WORDS": "runctl sta", "COMP_CWORD": "1"}
    out = subprocess.run([runctl_executable()], env=env, capture_output=True, text=True, timeout=60).stdout
    assert "status" in out


def test_paid_offer_asks_before_spending_on_a_terminal_only(cli, project: Path) -> None:
    """Without a terminal (this test), run and create go ahead as scripts expect; the question's wording is
    checked through the function that asks."""
    import click
    from click.testing import CliRunner

    from runctl_core.cli.options import proceed_if_paid
    from runctl_core.errors import Interrupted
    from runctl_core.session import Options, Session

    session = Session(Options())
    proceed_if_paid(session, False, 2.5, "aws g5.xlarge")  # no terminal: no question, no error

    @click.command()
    def ask() -> None:
        import sys

        sys.stdin.isatty = lambda: True  # type: ignore[method-assign]
        sys.stderr.isatty = lambda: True  # type: ignore[method-assign]
        try:
            proceed_if_paid(session, False, 2.5, "aws g5.xlarge")
            click.echo("went ahead")
        except Interrupted as exc:
            click.echo(f"stopped: {exc.message}")

    no = CliRunner().invoke(ask, input="n\n")
    assert "aws g5.xlarge costs $2.5000/h. Proceed? [Y/n]" in no.output and "stopped: nothing was created" in no.output
    yes = CliRunner().invoke(ask, input="\n")
    assert "went ahead" in yes.output
