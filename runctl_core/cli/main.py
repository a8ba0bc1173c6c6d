"""The ``runctl`` command: global options, the command groups, and the one place errors become exit codes."""

from __future__ import annotations

import os
import signal
import sys


def _startup_interrupt(_signum: int, _frame: object) -> None:
    """Ctrl-C/SIGTERM while the command line is still being loaded: nothing was created yet; exit 130 quietly
    (no traceback from the middle of an import)."""
    os.write(2, b"error: interrupted\n")
    os._exit(130)


REAL_CLI = os.path.basename(sys.argv[0]).startswith("runctl") or sys.argv[0].endswith("__main__.py")
if REAL_CLI:  # the process is runctl itself (not a test or a program importing the CLI)
    signal.signal(signal.SIGINT, _startup_interrupt)
    signal.signal(signal.SIGTERM, _startup_interrupt)
    # A command allocates ~100k objects (modules, models, a 5,000-file project's records) that live until it exits:
    # with Python's default thresholds (700, 10, 10) the collector traverses them again and again - measured 12 ms
    # of a local `run` and 45 ms of a 5,000-file re-sync. Collect young objects every 100k allocations instead
    # (still regularly during a long `run` or `logs --follow`). The Python API leaves its host process's GC alone.
    import gc

    gc.set_threshold(100_000, 10, 10)

import importlib  # noqa: E402 - after the handlers above, so an early Ctrl-C never prints a traceback
from typing import Any  # noqa: E402

import click  # noqa: E402

from runctl_core.cli.options import OUTPUT_CHOICES, Holder  # noqa: E402
from runctl_core.cli.output import examples  # noqa: E402

VERSION = "0.1.0"

# name -> (module, attribute, one-line help). Commands are imported only when used, so that `runctl --help`
# costs no more than click itself; tests check these lines against each command's own help.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("runctl_core.cli.run", "run_cmd", "Run a script: create, sync, train, follow, collect, terminate."),
    "create": ("runctl_core.cli.create", "create_cmd", "Create one instance and keep it."),
    "sync": ("runctl_core.cli.sync", "sync_cmd", "Send the project to an instance (only what changed)."),
    "train": ("runctl_core.cli.train", "train_cmd", "Start a script on an existing instance."),
    "status": ("runctl_core.cli.status", "status_cmd", "State of a job or instance, or a one-line summary."),
    "logs": ("runctl_core.cli.logs", "logs_cmd", "Print or follow a job's log."),
    "checkpoint": ("runctl_core.cli.checkpoint", "checkpoint_group", "List, inspect and pull a job's checkpoints."),
    "terminate": ("runctl_core.cli.terminate", "terminate_cmd", "Terminate an instance, or stop a job."),
    "price": ("runctl_core.cli.price", "price_cmd", "Compare prices across providers, cheapest first."),
    "providers": ("runctl_core.cli.providers", "providers_cmd", "Installed providers and their credentials."),
    "resources": ("runctl_core.cli.resources", "resources_group", "Everything runctl created: list, clean up, cost."),
    "config": ("runctl_core.cli.config", "config_group", "Show, set and validate the configuration."),
    "jobs": ("runctl_core.cli.jobs", "jobs_cmd", "List jobs, refreshed from their providers."),
    "init": ("runctl_core.cli.jobfile", "init_cmd", "Write a commented starter job file runctl.yaml."),
    "schema": ("runctl_core.cli.jobfile", "schema_cmd", "Print the JSON Schema of runctl.yaml."),
    "ssh": ("runctl_core.cli.ssh", "ssh_cmd", "Open a shell on an instance, or forward its ports."),
    "completion": ("runctl_core.cli.completion", "completion_cmd", "Print the shell completion script."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        command = getattr(importlib.import_module(entry[0]), entry[1])
        assert isinstance(command, click.Command)
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = click.utils.make_str(args[0]) if args else ""
        if args and name not in COMMANDS and not name.startswith("-"):
            import difflib

            close = difflib.get_close_matches(name, list(COMMANDS), n=2, cutoff=0.6)
            if close:
                ctx.fail(f"no such command {name!r}. Did you mean: {' or '.join(close)}?")
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, entry[2]) for name, entry in COMMANDS.items()])


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
    epilog=examples(
        "runctl run examples/train.py -- --epochs 5          # local: train, collect checkpoints",
        "runctl --provider aws run train.py --spot --gpu T4   # EC2 spot, terminated at the end",
        "runctl init && runctl run                           # a job file: runctl.yaml",
        "runctl price --gpu A100                              # compare every provider",
        "runctl resources list                                # everything runctl created",
    ),
)
@click.option(
    "--provider",
    "-p",
    metavar="NAME",
    help="Provider to use: local, aws, runpod, lyceum, slurm or a third "
    "party's (see `runctl providers`). Default: $RUNCTL_PROVIDER, then the config, then local.",
)
@click.option(
    "--output",
    "-o",
    type=click.Choice(OUTPUT_CHOICES),
    default="text",
    show_default=True,
    help="text for people; json: one JSON document on stdout (errors as JSON on stderr); id: only the id.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    metavar="PATH",
    help="Read this config file instead of .runctl.toml (searched upward) and the user config.",
)
@click.option("-v", "--verbose", count=True, help="More detail; -vv shows tracebacks of internal errors.")
@click.option("-q", "--quiet", is_flag=True, help="Only results and errors: no progress, no log streaming.")
@click.option("--no-progress", is_flag=True, help="No spinner or progress lines (they only show on a terminal).")
@click.version_option(VERSION, "--version", prog_name="runctl")
@click.pass_context
def cli(
    ctx: click.Context,
    provider: str | None,
    output: str,
    config_path: str | None,
    verbose: int,
    quiet: bool,
    no_progress: bool,
) -> None:
    """runctl: run a training script locally, on AWS EC2, RunPod, Lyceum or Slurm, and get its results back.

    It shows the cost before anything is spent, waits without guessing, streams the log, collects
    checkpoints, and terminates what it created - also on failure and Ctrl-C.
    """
    from runctl_core.session import Options

    ctx.obj = Holder(
        Options(
            provider=provider,
            output=output,
            config_path=config_path,
            verbose=verbose,
            quiet=quiet,
            no_progress=no_progress,
        )
    )


def _wants_json(argv: list[str], mode: str = "json") -> bool:
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg in ("--output", "-o") and i + 1 < len(argv):
            if argv[i + 1] == mode:
                return True
        elif arg in (f"--output={mode}", f"-o{mode}"):
            return True
    return False


def _report(error: dict[str, Any], as_json: bool, verbose_trace: str | None = None) -> None:
    """Print an error on stderr; lost (never raising) when stderr is closed: the exit code still tells."""
    try:
        _write_report(error, as_json, verbose_trace)
    except (OSError, ValueError):
        pass


def _write_report(error: dict[str, Any], as_json: bool, verbose_trace: str | None) -> None:
    import json

    if "runctl_core.progress" in sys.modules:
        sys.modules["runctl_core.progress"].close_all()

    from runctl_core.redact import redact

    if as_json:
        sys.stderr.write(redact(json.dumps(error)) + "\n")
        return
    body = error["error"]
    lines = [f"error: {body['message']}"]
    if body.get("hint"):
        lines.append(f"hint: {body['hint']}")
    text = redact("\n".join(lines))
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.markup import escape

        Console(stderr=True, highlight=False).print(
            escape(text)
            .replace("error:", "[bold red]error:[/bold red]", 1)
            .replace("\nhint:", "\n[cyan]hint:[/cyan]", 1)
        )
    else:
        sys.stderr.write(text + "\n")
    if verbose_trace:
        sys.stderr.write(redact(verbose_trace))


def _json_message(exc: click.ClickException, own_hint: str | None) -> str:
    """The error's message for JSON: a group called without its command says so (click's message is the whole
    help text)."""
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.exceptions.NoArgsIsHelpError) and ctx is not None and isinstance(ctx.command, click.Group):
        return f"missing command: one of {', '.join(sorted(ctx.command.list_commands(ctx)))}"
    return exc.message if own_hint else exc.format_message()


def _option_of_the_command(ctx: click.Context, name: str, args: list[str]) -> str | None:
    """``runctl -f x.yaml run``: an option of the command written before it - the line with it moved after."""
    group = ctx.command
    assert isinstance(group, click.Group)
    at = next((i for i, a in enumerate(args) if a == name or a.startswith(name + "=")), None)
    names = set(group.list_commands(ctx))
    where = next((i for i, a in enumerate(args) if a in names and at is not None and i > at), None)
    if at is None or where is None:
        return None
    command = group.get_command(ctx, args[where])
    option = (
        next((p for p in command.params if isinstance(p, click.Option) and name in p.opts), None) if command else None
    )
    if option is None:
        return None
    taken = 1 if option.is_flag or option.count or "=" in args[at] else 2
    rest = args[:at] + args[at + taken : where + 1] + args[at : at + taken] + args[where + 1 :]
    return f"`{name}` goes after the command: runctl {' '.join(rest)}"


def _usage_example(exc: click.ClickException, args: list[str]) -> str | None:
    """What to do next after a usage error: a bad option value gets the option's own example (from its help),
    anything else (a missing argument...) the command's first example."""
    import re

    param = getattr(exc, "param", None)
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.NoSuchOption) and ctx is not None:
        from runctl_core.cli.options import global_option

        if global_option(ctx, exc.option_name):
            line = " ".join(["runctl", exc.option_name, *(a for a in args if a != exc.option_name)])
            return f"{exc.option_name} is one of runctl's own options and goes before the command: {line}"
    if isinstance(exc, click.NoSuchOption) and ctx is not None and isinstance(ctx.command, click.Group):
        moved = _option_of_the_command(ctx, exc.option_name, args)
        if moved:
            return moved
    if ctx is not None and isinstance(ctx.command, click.Group):  # a missing or mistyped command
        return f"every command: {ctx.command_path} --help"
    named = getattr(exc, "param_hint", None)  # raised in a command's body: the option by name
    if param is None and isinstance(named, str) and ctx is not None:
        param = next((p for p in ctx.command.params if named in getattr(p, "opts", ())), None)
    if isinstance(param, click.Option) and param.help:
        found = re.search(r"\be\.g\.\s*(.+?)(?:\)|;|\.\s|\.?$)", param.help)
        if found:
            return f"{max(param.opts, key=len)}: e.g. {found.group(1).strip()}"
    epilog = ctx.command.epilog if ctx is not None else None
    if not epilog or "Examples:" not in epilog:
        return None
    lines = [line.strip() for line in epilog.split("Examples:", 1)[1].splitlines() if line.strip()]
    if not lines:
        return None
    first = re.sub(r"\s+#.*$", "", lines[0])
    return f"e.g. {first}; every option: {ctx.command_path if ctx else 'runctl'} --help"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI and turn every outcome into an exit code."""
    from runctl_core import signals
    from runctl_core.errors import EXIT_INTERRUPTED, EXIT_PROVIDER, EXIT_USAGE, RunctlError

    signals.install()
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = _wants_json(args)
    try:
        returned = cli.main(args=args, prog_name="runctl", standalone_mode=False)
        code = returned if isinstance(returned, int) else 0  # a command's click Exit(code) comes back as its value
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort:
        _report({"error": {"code": "interrupted", "message": "interrupted", "hint": ""}}, as_json)
        code = EXIT_INTERRUPTED
    except click.ClickException as exc:
        own = getattr(exc, "hint", None)  # HintedUsageError: its own "what to do next"
        example = None if own else _usage_example(exc, args)
        if as_json:
            _report(
                {
                    "error": {
                        "code": "usage",
                        "message": _json_message(exc, own),
                        "hint": own or example or "see: runctl --help, or runctl COMMAND --help",
                    }
                },
                True,
            )
        else:
            exc.show()
            if example and not example.startswith("every command:"):  # click's own "Try ... --help" says that
                sys.stderr.write(f"hint: {example}\n")
        code = EXIT_USAGE if exc.exit_code in (1, 2) else exc.exit_code
    except RunctlError as exc:
        result = exc.details.get("result") if isinstance(exc.details, dict) else None
        if as_json and result is not None:
            import json

            from runctl_core.redact import redact

            sys.stdout.write(redact(json.dumps(result, indent=2, default=str)) + "\n")  # log_tail: --env secrets
            exc.details = {k: v for k, v in exc.details.items() if k != "result"}
        elif result is not None:
            job_id = result.get("job", {}).get("job_id") if isinstance(result, dict) else None
            if job_id and _wants_json(args, "id"):  # a failed run still produced its job: scripts need its id
                sys.stdout.write(f"{job_id}\n")
            exc.details = {k: v for k, v in exc.details.items() if k != "result"}
        _report(exc.to_dict(), as_json)
        code = exc.exit_code
    except KeyboardInterrupt:
        _report({"error": {"code": "interrupted", "message": "interrupted", "hint": ""}}, as_json)
        code = EXIT_INTERRUPTED
    except BrokenPipeError:
        code = 0
        _silence_stdout()
    except Exception as exc:  # a bug in runctl: one clear line, the traceback only with -vv
        import traceback

        if signals.received():  # an interrupt surfacing as another exception (e.g. from inside a library)
            _report({"error": {"code": "interrupted", "message": "interrupted", "hint": ""}}, as_json)
            sys.stdout.flush()
            raise SystemExit(EXIT_INTERRUPTED) from None

        verbose = "-vv" in args or ("--verbose" in args and args.count("--verbose") > 1)
        _report(
            {
                "error": {
                    "code": "internal",
                    "message": f"internal error: {type(exc).__name__}: {exc}",
                    "hint": "this is a bug in runctl; rerun with -vv for the traceback and report it",
                }
            },
            as_json,
            traceback.format_exc() if verbose else None,
        )
        code = EXIT_PROVIDER
    if code == 0 and signals.received():  # a signal swallowed somewhere (e.g. in a finalizer): never exit 0
        _report({"error": {"code": "interrupted", "message": "interrupted", "hint": ""}}, as_json)
        code = EXIT_INTERRUPTED
    try:
        sys.stdout.flush()
    except (OSError, ValueError):  # stdout closed (`| head`): nothing more to say; keep the exit code
        _silence_stdout()
    if REAL_CLI and argv is None:
        _exit_now(code)
    raise SystemExit(code)


def _silence_stdout() -> None:
    try:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the interpreter's flush at exit
    except OSError:
        pass


def _exit_now(code: int) -> None:
    """End the runctl process without the interpreter's teardown: freeing every module, model and validator one
    by one (and a last full GC pass) took 25-45 ms after the command had finished - measured on a local run.
    Only once the command is over and only from the process's own entry point: the progress display is closed,
    the atexit callbacks run (logging's flush, weakref finalizers such as temporary directories), the streams
    are flushed; with any other thread alive, the normal exit (which waits for it) is kept."""
    import threading

    if threading.active_count() > 1:
        return
    if "runctl_core.progress" in sys.modules:
        sys.modules["runctl_core.progress"].close_all()
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code if isinstance(code, int) else 1)


if __name__ == "__main__":  # pragma: no cover
    main()
