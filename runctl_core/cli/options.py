"""Options shared by commands (global ones accepted after the command too, instance and env options) and
the session a command works with."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from runctl_core.run_models import InstanceRequest
    from runctl_core.session import Session


F = TypeVar("F", bound=Callable[..., Any])

OUTPUT_CHOICES = ("text", "json", "id")


def _set_provider(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value:
        ctx.find_object(Holder).options.provider = value  # type: ignore[union-attr]
    return value


def _set_output(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value:
        ctx.find_object(Holder).options.output = value  # type: ignore[union-attr]
    return value


def handle_sigterm() -> None:
    """Make SIGTERM behave like Ctrl-C (clean up, exit 130); main() already does this for every command."""
    from runctl_core import signals

    signals.install()


class Holder:
    """ctx.obj: the options, and the session made from them on first use."""

    def __init__(self, options: Any) -> None:
        self.options = options
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        if self._session is None:
            from runctl_core.session import Session

            self._session = Session(self.options)
        return self._session


def provider_option(f: F) -> F:
    return click.option(
        "--provider",
        "-p",
        "provider_",
        metavar="NAME",
        expose_value=False,
        callback=_set_provider,
        help="Provider to use (local, aws, runpod, lyceum, slurm, or a third party's). Also accepted before the "
        "command. Default: $RUNCTL_PROVIDER, then the config's default_provider, then local.",
    )(f)


def output_option(f: F) -> F:
    return click.option(
        "--output",
        "-o",
        "output_",
        type=click.Choice(OUTPUT_CHOICES),
        expose_value=False,
        callback=_set_output,
        help="text for people, json for scripts (one JSON document on stdout), id for just the id produced.",
    )(f)


def common(f: F) -> F:
    """--provider and --output, accepted after the command name too."""
    return provider_option(output_option(f))


def session_of(ctx: click.Context, *, load_config: bool = True) -> Session:
    """The command's session; the configuration is read and validated first, so a bad file always shows."""
    session = ctx.find_object(Holder).session  # type: ignore[union-attr]
    if load_config:
        session.loaded  # noqa: B018 - validates the configuration now
    return session


def refuse_id_output(session: Session) -> None:
    """For commands that change something and produce no id: refuse `--output id` before acting, not after."""
    if session.options.output == "id":
        raise click.UsageError("this command produces no id; use --output text or --output json")


class FinitePrice(click.FloatRange):
    """A positive, finite price in USD (``nan``, ``inf`` and ``1e400`` are refused, not matched to nothing)."""

    def __init__(self) -> None:
        super().__init__(min=0, min_open=True, max=1e6)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        import math

        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a price; give USD per hour, e.g. 0.5", param, ctx)
        return float(number)


def duration_option(_ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    from runctl_core.durations import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None


def instance_options(f: F) -> F:
    options = [
        click.option(
            "--instance-type",
            "-t",
            metavar="TYPE",
            help="The provider's machine type, e.g. t3.micro, g5.xlarge, gpu.a100 (see `runctl price`).",
        ),
        click.option(
            "--gpu",
            metavar="NAME",
            help="A GPU by name (A100, H100, L4, T4, 'RTX 4090'); the provider picks a machine that has it.",
        ),
        click.option(
            "--gpu-count", type=click.IntRange(1, 64), default=1, show_default=True, help="How many GPUs (with --gpu)."
        ),
        click.option(
            "--spot/--on-demand",
            default=None,
            help="Spot (interruptible, cheaper) or on-demand. Default: the config's run.spot (off).",
        ),
        click.option(
            "--max-price",
            type=FinitePrice(),
            metavar="USD_PER_HOUR",
            help="Highest $/h to pay for the whole instance, on-demand or spot (also the spot bid): a pricier "
            "machine is refused before anything is created (exit 2), e.g. --max-price 1.50.",
        ),
        click.option(
            "--on-demand-fallback",
            type=click.Choice(["ask", "always", "never"]),
            help="When spot is refused: ask (on a terminal), always fall back, or never. "
            "Default: config run.on_demand_fallback (ask; scripts get never).",
        ),
        click.option(
            "--max-runtime",
            metavar="DURATION",
            callback=duration_option,
            help="The instance ends itself after this (e.g. 6h), even if this machine dies. "
            "Default: config run.max_runtime (24h).",
        ),
        click.option("--image", metavar="IMAGE", help="Machine or container image instead of the provider's default."),
        click.option("--disk-gb", type=click.IntRange(min=1), metavar="GB", help="Disk size in GB."),
        click.option("--region", metavar="REGION", help="Region or zone, where the provider has them."),
        click.option(
            "--wait-timeout",
            metavar="DURATION",
            callback=duration_option,
            help="How long to wait for the instance to be ready (default: the provider's).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def multi_node_options(f: F) -> F:
    """``--nodes N`` and ``--launcher``: one job on several nodes (providers with the multi_node capability)."""
    f = click.option(
        "--launcher",
        type=click.Choice(["python", "torchrun"]),
        default="python",
        show_default=True,
        help="How each node starts the script: python, or torchrun with matching --nnodes/--node-rank/"
        "--master-addr/--master-port (e.g. --launcher torchrun).",
    )(f)
    f = click.option(
        "--nodes",
        type=click.IntRange(1, 1024),
        default=1,
        show_default=True,
        help="Run the job on N nodes, one process group each, with RANK, WORLD_SIZE, LOCAL_RANK, NODE_RANK, "
        "MASTER_ADDR, MASTER_PORT and RUNCTL_NUM_NODES set (e.g. --nodes 2). Checkpoints come from rank 0.",
    )(f)
    return f


def build_instance_request(session: Session, kw: dict[str, Any]) -> InstanceRequest:
    from runctl_core.errors import UsageError
    from runctl_core.requests import instance_request

    try:
        return instance_request(
            session, kw, interactive=sys.stdin.isatty() and sys.stderr.isatty() and session.options.output == "text"
        )
    except UsageError as exc:
        raise click.UsageError(exc.message) from None


def absolute_path(path: Path | None) -> Path | None:
    return path.expanduser().resolve() if path is not None else None


def _python_version(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    import re

    if value is not None and not re.fullmatch(r"3(\.\d{1,2}){0,2}", value):
        raise click.BadParameter(f"{value!r} is not a Python 3 version; e.g. 3.11 or 3.12.4")
    return value


def job_env_options(f: F) -> F:
    """--env NAME=VALUE (repeatable) and --env-file FILE: the script's environment (run and train)."""
    f = click.option(
        "--env-file",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        metavar="FILE",
        help="NAME=VALUE lines added to the script's environment (e.g. --env-file .env); --env wins.",
    )(f)
    return click.option(
        "--env",
        "env_pairs",
        multiple=True,
        metavar="NAME=VALUE",
        help="Environment for the script (repeatable), e.g. --env WANDB_API_KEY=$WANDB_API_KEY. Values are never"
        " stored; secret-looking ones (*_KEY, *TOKEN*, *SECRET*) are masked in output; RUNCTL_* names are reserved.",
    )(f)


def environment_options(f: F) -> F:
    """--setup CMD (repeatable) and --python VERSION: the job's environment step (run and train)."""
    f = click.option(
        "--python",
        "python_version",
        metavar="VERSION",
        callback=_python_version,
        help="Python version for the job's environment, e.g. --python 3.11 (default: the machine's python3).",
    )(f)
    return click.option(
        "--setup",
        "setup_commands",
        multiple=True,
        metavar="CMD",
        help="A shell line run in the project directory before the script, once per environment (cached with "
        "it; repeatable), e.g. --setup 'apt-get install -y libsndfile1'.",
    )(f)


def parse_env(pairs: tuple[str, ...]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name or not name.replace("_", "a").isalnum():
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--env")
        env[name] = value
    from runctl_core.preflight import check_job_env
    from runctl_core.redact import declare_env

    check_job_env(env)
    declare_env(env)  # masked in everything this command prints
    return env


def confirm_or_require_yes(session: Session, yes: bool, question: str) -> None:
    from runctl_core.errors import Interrupted, UsageError

    if yes:
        return
    if not (sys.stdin.isatty() and sys.stderr.isatty()) or session.options.output != "text":
        raise UsageError(f"{question.rstrip('?')}: refusing without confirmation", "add --yes to confirm")
    if not click.confirm(question, default=False, err=True):
        raise Interrupted("nothing was done", "")


def yes_option(f: F) -> F:
    return click.option(
        "--yes",
        "-y",
        is_flag=True,
        help="Do not ask `Proceed? [Y/n]` before starting a paid instance (scripts are never asked).",
    )(f)


def proceed_if_paid(session: Session, yes: bool, hourly: float | None, what: str) -> None:
    """On a terminal, show the price of a paid offer and ask before spending; without one (scripts, --output
    json/id) or with --yes, go ahead (--max-price still caps the price)."""
    from runctl_core.errors import Interrupted

    if yes or hourly == 0 or not (sys.stdin.isatty() and sys.stderr.isatty()) or session.options.output != "text":
        return
    session.progress.pause()
    price = f"${hourly:.4f}/h" if hourly is not None else "a price runctl could not look up"
    if not click.confirm(f"{what} costs {price}. Proceed?", default=True, err=True):
        raise Interrupted("nothing was created", "rerun with --yes to skip this question")


def ask_before_paying(session: Session, provider: Any, request: InstanceRequest, yes: bool) -> None:
    """``proceed_if_paid`` for one provider's offer; nothing is asked for a free one (the local machine)."""
    from runctl_core.cost import estimate

    offer = estimate(provider, request)
    if offer is not None and offer.on_demand_hourly == 0 and not request.spot:
        return
    rate = offer.best_price(request.spot) if offer else None
    proceed_if_paid(session, yes, rate, f"{provider.name} {offer.instance_type if offer else 'instance'}")


def global_option(ctx: click.Context | None, name: str) -> bool:
    """``name`` is an option of ``runctl`` itself (before the command), not of ``ctx``'s command."""
    if ctx is None:
        return False
    root = ctx.find_root().command
    return any(name in (*p.opts, *p.secondary_opts) for p in root.params if isinstance(p, click.Option))


class HintedUsageError(click.UsageError):
    """A usage error with a separate "what to do next": shown as ``hint:`` in text, the ``hint`` field in JSON."""

    def __init__(self, message: str, hint: str, ctx: click.Context | None = None) -> None:
        super().__init__(message, ctx)
        self.hint = hint

    def format_message(self) -> str:
        return f"{self.message}\nhint: {self.hint}"


class ScriptCommand(click.Command):
    """A command taking SCRIPT [-- ARGS]: an option meant for the script but written without `--` before it
    gets a hint with the corrected command line (runctl's own options stay before `--`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        given = list(args)  # the parser consumes the list it is given
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            import shlex

            args = given
            name = exc.option_name
            if name not in args or "--" in args[: args.index(name)]:
                raise
            if global_option(ctx, name):  # runctl's own -q/-v/--config, written after the command
                raise  # main() says where it goes
            bad = args.index(name)
            if not any(not a.startswith("-") and Path(a).is_file() for a in args[:bad]):
                raise  # no script before it: a plain typo, and click's own message says so
            ours, theirs = self._split_own_options(ctx, args[bad:])
            suggestion = shlex.join(["runctl", ctx.info_name or "", *args[:bad], *ours, "--", *theirs])
            raise HintedUsageError(
                f"no such option: {name} (options for the script go after `--`)", f"did you mean: {suggestion}", ctx
            ) from None

    def _split_own_options(self, ctx: click.Context, rest: list[str]) -> tuple[list[str], list[str]]:
        """``rest`` split into this command's own options (with their values) and the script's arguments."""
        takes_value: dict[str, bool] = {}
        for param in self.get_params(ctx):
            if isinstance(param, click.Option):
                for opt in [*param.opts, *param.secondary_opts]:
                    takes_value[opt] = not (param.is_flag or param.count)
        ours: list[str] = []
        theirs: list[str] = []
        i = 0
        while i < len(rest):
            token = rest[i]
            if token == "--":
                theirs.extend(rest[i + 1 :])
                break
            if token in takes_value:
                width = 2 if takes_value[token] else 1
                ours.extend(rest[i : i + width])
                i += width
                continue
            if token.split("=", 1)[0] in takes_value and "=" in token:
                ours.append(token)
            else:
                theirs.append(token)
            i += 1
        return ours, theirs
