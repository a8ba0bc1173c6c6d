"""`runctl run`: a script on a new instance, from create to terminate."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from runctl_core.cli.options import (
    absolute_path,
    build_instance_request,
    common,
    duration_option,
    environment_options,
    handle_sigterm,
    instance_options,
    multi_node_options,
    parse_env,
    session_of,
)
from runctl_core.cli.output import emit, environment_line, examples, log_sink, money, print_plan
from runctl_core.jobs import newest_resumable

if TYPE_CHECKING:
    from runctl_core.session import Session


@click.command(
    "run",
    context_settings={"ignore_unknown_options": False},
    epilog=examples(
        "runctl run examples/train.py -- --epochs 5",
        "runctl --provider aws run train.py --gpu T4 --spot --max-runtime 4h",
        "runctl run train.py --output json | jq .checkpoints",
        "JOB=$(runctl run train.py --detach --output id); runctl logs $JOB --follow",
        "runctl run train.py --dry-run --provider runpod --gpu 'RTX 4090'",
        "runctl --provider slurm run --nodes 2 examples/ddp_train.py -- --steps 50",
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
@multi_node_options
@click.option("--timeout", metavar="DURATION", callback=duration_option, help="Kill the job after this (e.g. 2h, 30m).")
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
    "--env",
    "env_pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="Environment for the script (repeatable), e.g. --env WANDB_API_KEY=$WANDB_API_KEY. Values are never"
    " stored; secret-looking ones (*_KEY, *TOKEN*, *SECRET*) are masked in output; RUNCTL_* names are reserved.",
)
@environment_options
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
    setup_commands: tuple[str, ...],
    python_version: str | None,
    dry_run: bool,
    nodes: int,
    launcher: str,
    **instance_kw: Any,
) -> None:
    """Run SCRIPT on an instance: create, sync, train, follow the log, collect checkpoints, terminate.

    ARGS after `--` go to the script. The exit code is the job's: 0 when the script succeeded,
    1 when it failed (the end of its log is shown). Ctrl-C terminates what the run created (exit 130).
    """
    from runctl_core.files import default_project_root
    from runctl_core.workflow import (
        RunRequest,
        check_nodes,
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
    env = parse_env(env_pairs)
    request = RunRequest(
        script=script,
        args=list(script_args),
        project_root=project or default_project_root(),
        instance=build_instance_request(session, instance_kw),
        timeout=timeout or config.run.timeout,
        keep=keep or config.run.keep,
        detach=detach,
        recover=config.run.recover if recover is None else recover,
        max_restarts=config.run.max_restarts if max_restarts is None else max_restarts,
        outputs_dir=absolute_path(outputs_dir or (Path(config.run.outputs_dir) if config.run.outputs_dir else None)),
        resume_from=resume_from,
        env=env,
        nodes=nodes,
        launcher=launcher,
        setup=list(setup_commands),
        python=python_version,
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
        check_nodes(provider, request.nodes, request.launcher)
        offer = estimate(provider, request.instance)
        calls = plan_run(provider, request, project_files(session, root, request.outputs_dir))
        print_plan(
            session,
            provider.name,
            calls,
            describe_estimate(offer, request.instance, provider.capabilities()),
            {"hourly_price": offer.best_price(request.instance.spot) if offer else None},
        )
        return
    result = execute_run(session, provider, request, sink=log_sink(session))
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
            if result.environment:
                lines.append(environment_line(result.environment))
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
    candidates, skipped = rank(session, request.instance, dry_run=dry_run, nodes=request.nodes)
    require_candidates(candidates, skipped, request.instance)
    choice = candidates[0]
    alternatives = [
        {"provider": c.provider, "offer": c.offer, "hourly": c.hourly, "credentials": c.credentials} for c in candidates
    ]
    if dry_run:
        pinned = request.model_copy(update={"instance": choice.request_for(request.instance), "script": rel})
        provider = session.provider(choice.provider)
        calls = plan_run(provider, pinned, project_files(session, root, request.outputs_dir))
        print_plan(
            session,
            provider.name,
            calls,
            describe_estimate(choice.offer, pinned.instance, provider.capabilities()),
            {"hourly_price": choice.hourly, "alternatives": alternatives, "skipped": [s.model_dump() for s in skipped]},
        )
        if session.options.output == "text":
            click.echo("alternatives, cheapest first:")
            for alt in candidates:
                note = "" if alt.credentials else f"  ({alt.offer.source})"
                click.echo(f"  {alt.provider:<8} {alt.offer.instance_type:<28} {money(alt.hourly)}/h{note}")
            for skip in skipped:
                click.echo(f"  {skip.provider:<8} skipped: {skip.reason}")
        return

    started = datetime.now(timezone.utc)
    last_error: CapacityError | None = None
    for number, candidate in enumerate(candidates):
        resume = newest_resumable(session, started) or request.resume_from  # a recovery that moved offers
        pinned = request.model_copy(update={"instance": candidate.request_for(request.instance), "resume_from": resume})
        provider = session.provider(candidate.provider)
        session.progress.step(
            f"auto: {candidate.provider} {candidate.offer.instance_type} at "
            f"{money(candidate.hourly)}/h (cheapest of {len(candidates) - number} left)"
        )
        try:
            result = execute_run(session, provider, pinned, sink=log_sink(session))
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
