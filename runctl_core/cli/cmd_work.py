"""Commands that do work on instances: run, create, sync, train."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from runctl_core.cli.common import common, emit, examples, handle_sigterm, money, session_of

if TYPE_CHECKING:
    from runctl_core.session import Session
    from runctl_core.workflow import InstanceRequest

F = TypeVar("F", bound=Callable[..., Any])


def _duration(_ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
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
            type=click.FloatRange(min=0, min_open=True),
            metavar="USD_PER_HOUR",
            help="Highest $/h to pay for the whole instance (spot bid cap).",
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
            callback=_duration,
            help="The instance ends itself after this (e.g. 6h), even if this machine dies. "
            "Default: config run.max_runtime (24h).",
        ),
        click.option("--image", metavar="IMAGE", help="Machine or container image instead of the provider's default."),
        click.option("--disk-gb", type=click.IntRange(min=1), metavar="GB", help="Disk size in GB."),
        click.option("--region", metavar="REGION", help="Region or zone, where the provider has them."),
        click.option(
            "--wait-timeout",
            metavar="DURATION",
            callback=_duration,
            help="How long to wait for the instance to be ready (default: the provider's).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def build_instance_request(session: Session, kw: dict[str, Any]) -> InstanceRequest:
    from runctl_core.workflow import InstanceRequest

    run = session.loaded.config.run
    if (kw.get("gpu_count") or 1) != 1 and not kw.get("gpu"):
        raise click.UsageError("--gpu-count needs --gpu (or pick a multi-GPU --instance-type)")
    fallback = kw.get("on_demand_fallback") or run.on_demand_fallback
    if fallback == "ask" and not (sys.stdin.isatty() and sys.stderr.isatty()):
        fallback = "never"  # scripts are never asked: they get the safe answer
    return InstanceRequest(
        instance_type=kw.get("instance_type"),
        gpu=kw.get("gpu"),
        gpu_count=kw.get("gpu_count") or 1,
        spot=run.spot if kw.get("spot") is None else kw["spot"],
        max_price=kw.get("max_price"),
        on_demand_fallback=fallback,
        max_runtime=kw.get("max_runtime") or run.max_runtime,
        image=kw.get("image"),
        disk_gb=kw.get("disk_gb"),
        region=kw.get("region"),
        wait_timeout=kw.get("wait_timeout") or run.wait_timeout,
    )


def _log_sink(session: Session) -> Callable[[str], None] | None:
    if session.options.output != "text" or session.options.quiet:
        return None

    def write(text: str) -> None:
        from runctl_core.redact import redact

        sys.stderr.write(redact(text))
        sys.stderr.flush()

    return write


def _print_plan(
    session: Session, provider_name: str, calls: list[Any], estimate_text: str, extra: dict[str, Any]
) -> None:
    doc = {"dry_run": True, "provider": provider_name, "calls": calls, "estimate": estimate_text, **extra}

    def text() -> None:
        import json

        out = [f"dry run - nothing will be created. Provider: {provider_name}", f"cost: {estimate_text}", "calls:"]
        for i, call in enumerate(calls, 1):
            paid = "  [starts billing]" if call.paid else ""
            params = json.dumps(call.params, default=str, sort_keys=True)
            out.append(f"  {i}. [{call.step}] {call.api} {call.operation} {params}{paid}")
        click.echo("\n".join(out))

    emit(session, doc, text)


# ----------------------------------------------------------------------------------------------- run


@click.command(
    "run",
    context_settings={"ignore_unknown_options": False},
    epilog=examples(
        "runctl run examples/train.py -- --epochs 5",
        "runctl --provider aws run train.py --gpu T4 --spot --max-runtime 4h",
        "runctl run train.py --output json | jq .checkpoints",
        "JOB=$(runctl run train.py --detach --output id); runctl logs $JOB --follow",
        "runctl run train.py --dry-run --provider runpod --gpu 'RTX 4090'",
    ),
)
@click.argument("script", type=click.Path(dir_okay=False, path_type=str))
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- ARGS...]")
@instance_options
@click.option(
    "--project",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    metavar="DIR",
    help="The project directory to send (default: the current directory). The script must be inside it.",
)
@click.option("--timeout", metavar="DURATION", callback=_duration, help="Kill the job after this (e.g. 2h, 30m).")
@click.option("--keep", is_flag=True, help="Keep the instance after the run (default: terminate it).")
@click.option(
    "--detach",
    is_flag=True,
    help="Return the job id once the job has started; follow it with "
    "`runctl logs JOB --follow`. Remote instances end themselves when the job ends.",
)
@click.option(
    "--recover/--no-recover",
    default=None,
    help="Resume a preempted job on a new instance from its newest checkpoint (config run.recover).",
)
@click.option("--max-restarts", type=click.IntRange(0, 100), help="With --recover: how many times (default 3).")
@click.option("--resume-from", metavar="JOB", help="Start from the newest checkpoints of an earlier job.")
@click.option(
    "--outputs",
    "outputs_dir",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Collect checkpoints into DIR/JOB_ID (default: runctl's state dir).",
)
@click.option(
    "--env", "env_pairs", multiple=True, metavar="NAME=VALUE", help="Environment for the script (repeatable)."
)
@click.option(
    "--dry-run", is_flag=True, help="Show the provider calls and the cost; create nothing, need no credentials."
)
@common
@click.pass_context
def run_cmd(
    ctx: click.Context,
    script: str,
    script_args: tuple[str, ...],
    project: Path | None,
    timeout: float | None,
    keep: bool,
    detach: bool,
    recover: bool | None,
    max_restarts: int | None,
    resume_from: str | None,
    outputs_dir: Path | None,
    env_pairs: tuple[str, ...],
    dry_run: bool,
    **instance_kw: Any,
) -> None:
    """Run SCRIPT on an instance: create, sync, train, follow the log, collect checkpoints, terminate.

    ARGS after `--` go to the script. The exit code is the job's: 0 when the script succeeded,
    1 when it failed (the end of its log is shown). Ctrl-C terminates what the run created (exit 130).
    """
    from runctl_core.workflow import (
        RunRequest,
        check_request,
        describe_estimate,
        estimate,
        execute_run,
        plan_run,
        resolve_script,
    )

    handle_sigterm()
    session = session_of(ctx)
    config = session.loaded.config
    env = _parse_env(env_pairs)
    request = RunRequest(
        script=script,
        args=list(script_args),
        project_root=project or Path.cwd(),
        instance=build_instance_request(session, instance_kw),
        timeout=timeout or config.run.timeout,
        keep=keep or config.run.keep,
        detach=detach,
        recover=config.run.recover if recover is None else recover,
        max_restarts=config.run.max_restarts if max_restarts is None else max_restarts,
        outputs_dir=_absolute(outputs_dir or (Path(config.run.outputs_dir) if config.run.outputs_dir else None)),
        resume_from=resume_from,
        env=env,
    )
    if session.provider_name() == "auto":
        _run_auto(session, request, dry_run)
        return
    provider = session.provider(session.provider_name())
    if dry_run:
        from runctl_core.workflow import project_files

        root, rel = resolve_script(request.project_root, request.script)
        request.script = rel
        check_request(provider, request.instance)
        offer = estimate(provider, request.instance)
        calls = plan_run(provider, request, project_files(session, root, request.outputs_dir))
        _print_plan(
            session,
            provider.name,
            calls,
            describe_estimate(offer, request.instance),
            {"hourly_price": offer.best_price(request.instance.spot) if offer else None},
        )
        return
    result = execute_run(session, provider, request, sink=_log_sink(session))
    _show_run_result(session, result, request)


def _show_run_result(session: Session, result: Any, request: Any) -> None:
    job = result.job

    def text() -> None:
        lines = []
        if request.detach:
            lines.append(f"job {job['job_id']} started on {job['instance_id']}")
            lines.append(
                f"follow it: runctl logs {job['job_id']} --follow    stop it: runctl terminate {job['job_id']}"
            )
        else:
            lines.append(f"job {job['job_id']} {job['state']} (exit code {job['exit_code']})")
            if result.outputs_dir:
                lines.append(f"checkpoints: {result.outputs_dir} ({len(result.checkpoints)} files)")
            if result.cost is not None:
                lines.append(f"cost: {money(result.cost)}")
            if request.keep and result.instance:
                lines.append(f"instance {result.instance['id']} kept: runctl terminate {result.instance['id']}")
        click.echo("\n".join(lines))

    emit(session, result, text, job["job_id"])


def _run_auto(session: Session, request: Any, dry_run: bool) -> None:
    """--provider auto: the cheapest fitting offer across providers, falling over to the next on capacity."""
    from runctl_core.choose import rank, require_candidates
    from runctl_core.errors import CapacityError
    from runctl_core.workflow import describe_estimate, execute_run, plan_run, project_files, resolve_script

    root, rel = resolve_script(request.project_root, request.script)
    candidates, skipped = rank(session, request.instance)
    require_candidates(candidates, skipped, request.instance)
    choice = candidates[0]
    alternatives = [{"provider": c.provider, "offer": c.offer, "hourly": c.hourly} for c in candidates]
    if dry_run:
        pinned = request.model_copy(update={"instance": choice.request_for(request.instance), "script": rel})
        provider = session.provider(choice.provider)
        calls = plan_run(provider, pinned, project_files(session, root, request.outputs_dir))
        _print_plan(
            session,
            provider.name,
            calls,
            describe_estimate(choice.offer, pinned.instance),
            {"hourly_price": choice.hourly, "alternatives": alternatives, "skipped": [s.model_dump() for s in skipped]},
        )
        if session.options.output == "text":
            click.echo("alternatives, cheapest first:")
            for alt in candidates:
                click.echo(f"  {alt.provider:<8} {alt.offer.instance_type:<28} {money(alt.hourly)}/h")
            for skip in skipped:
                click.echo(f"  {skip.provider:<8} skipped: {skip.reason}")
        return
    from datetime import datetime, timezone

    started = datetime.now(timezone.utc)
    last_error: CapacityError | None = None
    for number, candidate in enumerate(candidates):
        resume = _newest_resumable(session, started) or request.resume_from  # a recovery that moved offers
        pinned = request.model_copy(update={"instance": candidate.request_for(request.instance), "resume_from": resume})
        provider = session.provider(candidate.provider)
        session.progress.step(
            f"auto: {candidate.provider} {candidate.offer.instance_type} at "
            f"{money(candidate.hourly)}/h (cheapest of {len(candidates) - number} left)"
        )
        try:
            result = execute_run(session, provider, pinned, sink=_log_sink(session))
        except CapacityError as exc:
            last_error = exc
            session.progress.warn(
                f"{candidate.provider} refused {candidate.offer.instance_type} for capacity "
                f"({exc.message}); trying the next offer"
            )
            continue
        _show_run_result(session, result, request)
        return
    assert last_error is not None
    raise last_error


def _absolute(path: Path | None) -> Path | None:
    return path.expanduser().resolve() if path is not None else None


def _newest_resumable(session: Session, since: Any) -> str | None:
    """The newest job of this command that was interrupted or lost with checkpoints collected, if any."""
    for job in reversed(session.store.jobs(since=since)):
        if job.state.value in ("interrupted", "lost") and job.outputs_dir:
            directory = Path(job.outputs_dir)
            if directory.is_dir() and any(directory.iterdir()):
                return job.id
    return None


def _parse_env(pairs: tuple[str, ...]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name or not name.replace("_", "a").isalnum():
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--env")
        env[name] = value
    return env


# ----------------------------------------------------------------------------------------------- create


@click.command(
    "create",
    epilog=examples(
        "ID=$(runctl --provider aws create --instance-type t3.micro --wait --output id)",
        "runctl --provider runpod create --gpu A100 --spot --dry-run",
    ),
)
@instance_options
@click.option(
    "--wait/--no-wait",
    default=False,
    show_default=True,
    help="Block until the instance is ready for sync/train (with progress and a timeout).",
)
@click.option("--dry-run", is_flag=True, help="Show the provider calls and the hourly price; create nothing.")
@common
@click.pass_context
def create_cmd(ctx: click.Context, wait: bool, dry_run: bool, **instance_kw: Any) -> None:
    """Create one instance and keep it (until `runctl terminate ID`).

    Prints its id; with --wait, returns only once it is ready. It still ends itself after
    --max-runtime on providers that support it.
    """
    from runctl_core.models import PlanRequest
    from runctl_core.workflow import (
        check_credentials,
        check_request,
        create_instance,
        describe_estimate,
        estimate,
        wait_ready,
    )

    handle_sigterm()
    session = session_of(ctx)
    provider = session.provider(session.provider_name())
    request = build_instance_request(session, instance_kw)
    check_request(provider, request)
    offer = estimate(provider, request)
    if dry_run:
        from runctl_core.models import InstanceSpec

        spec = InstanceSpec(
            intent_id="intent-<new>", owner=session.loaded.config.owner, **request.model_dump(exclude={"wait_timeout"})
        )
        steps = ["create", "wait"] if wait else ["create"]
        calls = provider.plan(PlanRequest(steps=steps, instance=spec))
        _print_plan(
            session,
            provider.name,
            calls,
            describe_estimate(offer, request),
            {"hourly_price": offer.best_price(request.spot) if offer else None},
        )
        return
    check_credentials(provider)
    session.progress.step(f"{provider.name}: {describe_estimate(offer, request)}")
    instance = create_instance(session, provider, request, job_id=None, keep=True)
    try:
        if wait:
            instance = wait_ready(session, provider, instance, request.wait_timeout)
    except KeyboardInterrupt:
        from runctl_core.errors import Interrupted
        from runctl_core.workflow import terminate_instance

        terminate_instance(session, provider, instance)
        raise Interrupted(
            f"interrupted while waiting; {instance.id} was terminated", "nothing is left running"
        ) from None
    session.progress.close()
    emit(
        session,
        instance,
        f"{instance.id} {instance.state.value}"
        f"{' ' + money(instance.hourly_price) + '/h' if instance.hourly_price else ''}\n"
        f"terminate it with: runctl terminate {instance.id}",
        instance.id,
    )


# ----------------------------------------------------------------------------------------------- sync


@click.command(
    "sync", epilog=examples("runctl sync local-1a2b3c4d", "runctl --provider aws sync i-0abc123 --project ./src")
)
@click.argument("instance_id", metavar="INSTANCE")
@click.option(
    "--project",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    metavar="DIR",
    help="The project directory to send (default: the current directory).",
)
@common
@click.pass_context
def sync_cmd(ctx: click.Context, instance_id: str, project: Path | None) -> None:
    """Send the project to INSTANCE, respecting .gitignore and .runctlignore; only changed files travel."""
    from runctl_core.workflow import project_files, sync_project

    session = session_of(ctx)
    provider, instance = resolve_instance(session, instance_id)
    result = sync_project(session, provider, instance, project_files(session, project or Path.cwd()))
    session.progress.close()
    emit(
        session,
        result,
        f"{result.files_sent} of {result.files_total} files sent ({result.bytes_sent} bytes), "
        f"{result.files_deleted} deleted -> {instance.id}:{result.remote_path}",
        instance.id,
    )


def resolve_instance(session: Session, instance_id: str, *, or_job: bool = False) -> tuple[Any, Any]:
    """The provider and the last known record of an instance runctl knows about (``or_job``: the command also
    takes a job id, and the error says so)."""
    from runctl_core.errors import UsageError

    row = session.store.instance(instance_id)
    if row is None:
        if or_job:
            raise UsageError(
                f"runctl has no job or instance {instance_id!r}",
                "list jobs with: runctl status --all; instances with: runctl resources list",
            )
        raise UsageError(
            f"runctl has no instance {instance_id!r}", "list what runctl knows with: runctl resources list"
        )
    provider = session.provider(row.instance.provider)
    return provider, row.instance


# ----------------------------------------------------------------------------------------------- train


@click.command(
    "train",
    epilog=examples(
        "runctl train local-1a2b3c4d examples/train.py --wait -- --epochs 3",
        "JOB=$(runctl train i-0abc123 train.py --output id); runctl logs $JOB --follow",
    ),
)
@click.argument("instance_id", metavar="INSTANCE")
@click.argument("script", type=click.Path(dir_okay=False, path_type=str))
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- ARGS...]")
@click.option(
    "--wait/--no-wait",
    default=False,
    show_default=True,
    help="Follow the log until the job ends; the exit code is then the job's.",
)
@click.option("--no-sync", is_flag=True, help="Do not sync the project first (it is already there).")
@click.option(
    "--project",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    metavar="DIR",
    help="The project directory (default: the current directory).",
)
@click.option("--timeout", metavar="DURATION", callback=_duration, help="Kill the job after this.")
@click.option(
    "--env", "env_pairs", multiple=True, metavar="NAME=VALUE", help="Environment for the script (repeatable)."
)
@common
@click.pass_context
def train_cmd(
    ctx: click.Context,
    instance_id: str,
    script: str,
    script_args: tuple[str, ...],
    wait: bool,
    no_sync: bool,
    project: Path | None,
    timeout: float | None,
    env_pairs: tuple[str, ...],
) -> None:
    """Start SCRIPT on an existing INSTANCE (syncing the project first). Prints the job id.

    ARGS after `--` go to the script. The job runs detached: follow it with `runctl logs JOB --follow`,
    or pass --wait to follow it here (the exit code is then the job's).
    """
    from runctl_core.errors import JobFailed
    from runctl_core.models import JobSpec
    from runctl_core.workflow import job_document, project_files, resolve_script, start_job, sync_project, wait_job

    session = session_of(ctx)
    provider, instance = resolve_instance(session, instance_id)
    root, rel = resolve_script(project or Path.cwd(), script)
    if not no_sync:
        sync_project(session, provider, instance, project_files(session, root))
    store = session.store
    job_id = store.new_job_id()
    spec = JobSpec(job_id=job_id, script=rel, args=list(script_args), env=_parse_env(env_pairs), timeout=timeout)
    store.create_job(spec, provider.name, keep=True)
    status = start_job(session, provider, instance, spec)
    if wait:
        session.progress.pause()
        try:
            status, _ = wait_job(session, provider, instance, status, sink=_log_sink(session))
        except KeyboardInterrupt:
            from runctl_core.errors import Interrupted

            raise Interrupted(
                f"stopped following job {job_id}; it keeps running on {instance.id}",
                f"follow it again: runctl logs {job_id} --follow; stop it: runctl terminate {job_id} --yes",
            ) from None
        if status.state.value != "succeeded":
            raise JobFailed(
                f"job {job_id} {status.state.value}"
                + (f" (exit code {status.exit_code})" if status.exit_code is not None else ""),
                f"see the whole log: runctl logs {job_id}",
                details={"result": job_document(store, job_id)},
            )
    session.progress.close()
    emit(
        session,
        job_document(store, job_id),
        f"job {job_id} {status.state.value} on {instance.id}"
        + ("" if wait else f"\nfollow it: runctl logs {job_id} --follow"),
        job_id,
    )
