"""`runctl completion SHELL`: the shell's completion script (click's own), to source from the shell's rc file."""

from __future__ import annotations

import click

from runctl_core.cli.options import output_option, session_of
from runctl_core.cli.output import emit, examples

_INSTALL = {
    "bash": 'eval "$(runctl completion bash)"   # in ~/.bashrc',
    "zsh": 'eval "$(runctl completion zsh)"    # in ~/.zshrc',
    "fish": "runctl completion fish > ~/.config/fish/completions/runctl.fish",
}


@click.command(
    "completion",
    epilog=examples(*_INSTALL.values()),
)
@click.argument("shell", metavar="SHELL", type=click.Choice(sorted(_INSTALL)))
@output_option
@click.pass_context
def completion_cmd(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish): commands, options and their choices."""
    from click.shell_completion import get_completion_class

    from runctl_core.cli.main import cli

    cls = get_completion_class(shell)
    assert cls is not None
    source = cls(cli, {}, "runctl", "_RUNCTL_COMPLETE").source()
    emit(session_of(ctx, load_config=False), {"shell": shell, "script": source}, lambda: click.echo(source))
