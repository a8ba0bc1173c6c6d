"""`runctl run`: a script (or the job file runctl.yaml) on a new instance, from create to terminate."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from runctl_core.cli.options import (
    ScriptCommand,
    ask_before_paying,
    common,
    duration_option,
    environment_options,
    instance_options,
    job_env_options,
    multi_node_options,
    parse_env,
    proceed_if_paid,
    session_of,
    yes_option,
)
from runctl_core.cli.output import emit, environment_line, examples, log_sink, money, print_plan

if TYPE_CHECKING:
    from runctl_core.jobfile import Job
    from runctl_core.session import Session

# flags that are job-file keys: (flag parameter, job key)
_JOB_FLAGS = {
    "instance_type": "instance_type",
    "gpu": "gpu",
    "gpu_count": "gpu_count",
    "spot": "spot",
    "max_price": "max_price",
    "image": "image",
    "disk_gb": "disk_gb",
    "region": "region",
    "max_runtime": "max_runtime",
    "timeout": "timeout",
    "recover": "recover",
    "max_restarts": "max_restarts",
    "nodes": "nodes",
}


@click.command(
    "run",
    cls=ScriptCommand,
    context_settings={"ignore_unknown_options": False},
    epilog=examples(
        "runctl run examples/train.py -- --epochs 5",
        "runctl run                                   # the job in ./runctl.yaml",
        "runctl run -f examples/runctl.yaml --gpu T4  # a job file, one key overridden",
        "runctl --provider aws run train.py --gpu T4 --spot --max-runtime 4h",
        "runctl run train.py --output json | jq .checkpoints",
        "JOB=$(runctl run train.py --detach --output id); runctl logs $JOB --follow",
        "runctl run train.py --dry-run --provider runpod --gpu 'RTX 4090'",
        "runctl --provider slurm run --nodes 2 examples/ddp_train.py -- --steps 50",
    ),
)
@click.argument("script", type=click.Path(dir_okay=False, path_type=str), required=False)
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- ARGS...]")
@click.option(
    "--file",
    "-f",
    "job_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    metavar="FILE",
    help="Read the job from FILE (e.g. -f jobs/big.yaml); flags override its keys. "
    "Default with no SCRIPT: ./runctl.yaml.",
)
@instance_options
@click.option(
    "--project",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    metavar="DIR",
    help="The project directory to send (default: the job file's directory, else the current one). "
    "The script must be inside it.",
)
@multi_node_options
@click.option("--timeout", metavar="DURATION", callback=duration_option, help="Kill the job after this (e.g. 2h, 30m).")
@click.option("--keep", is_flag=True, help="Keep the instance after the run (default: terminate it).")
@click.option(
    "--detach",
    is_flag=True,
    help="Return the job id once the job has started; follow it with `runctl logs JOB --follow`. Its "
    "checkpoints are collected (into --outputs) when runctl next sees it ended. Remote instances end themselves "
    "when the job ends.",
)
@click.option(
    "--recover/--no-recover",
    default=None,
    help="Resume a preempted job on a new instance from its newest checkpoint (config run.recover). "
    "Not with --detach (nothing would be watching).",
)
@click.option("--max-restarts", type=click.IntRange(0, 100), help="With --recover: how many times (default 3).")
@click.option(
    "--resume-from", metavar="JOB", help="Start from the newest checkpoints of an earlier job (e.g. job-7f3a9c)."
)
@click.option(
    "--outputs",
    "outputs_dir",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Collect checkpoints into DIR/JOB_ID (default: runctl's state dir), with or without --detach.",
)
@job_env_options
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show the merged job, the provider calls and the cost; create nothing, need no credentials.",
)
@environment_options
@yes_option
@common
@click.pass_context
def run_cmd(
    ctx: click.Context,
    script: str | None,
    script_args: tuple[str, ...],
    job_file: Path | None,
    project: Path | None,
    keep: bool,
    detach: bool,
    resume_from: str | None,
    outputs_dir: Path | None,
    env_pairs: tuple[str, ...],
    env_file: Path | None,
    dry_run: bool,
    yes: bool,
    **flags: Any,
) -> None:
    """Run SCRIPT on an instance: create, sync, train, follow the log, collect checkpoints, terminate.

    With no SCRIPT, the job in ./runctl.yaml (or --file FILE) runs; flags override the file's keys.
    ARGS after `--` go to the script. The exit code is the job's: 0 when the script succeeded,
    1 when it failed (the end of its log is shown). Ctrl-C collects the job's checkpoints and terminates
    what the run created (exit 130); --resume-from JOB continues from them.
    """
    from runctl_core.errors import UsageError
    from runctl_core.requests import run_request

    if script is not None and script.startswith("-"):  # `runctl run -- --epochs 3`: args for the job file's script
        script_args = (script, *script_args)
        script = None
    session = session_of(ctx)
    job = _job(ctx, script, script_args, job_file, project, outputs_dir, env_file, flags)
    if detach and job.recover is True:  # asked for by --recover or the job file
        raise UsageError(
            "--recover cannot be honoured with --detach: nothing would watch the job to restart it",
            "drop --detach to recover from this terminal, or drop --recover (recover: false in the job file)",
        )
    provider_name, preference = _provider_choice(session, job)
    interactive = _interactive(session)
    request = run_request(
        session,
        job,
        keep=keep,
        detach=detach,
        resume_from=resume_from,
        on_demand_fallback=flags.get("on_demand_fallback"),
        wait_timeout=flags.get("wait_timeout"),
        launcher=flags.get("launcher") or "python",
        interactive=interactive,
        resolve_env=not dry_run,
    )
    if detach and request.recover:
        request.recover = False
        session.progress.warn("the config's run.recover does not apply to a detached run (nothing would watch it)")
    request.env.update(parse_env(env_pairs))
    auto = preference is not None or provider_name == "auto"
    if dry_run:
        from runctl_core.plans import auto_run_plan, run_plan

        plan = (
            auto_run_plan(session, request, preference)
            if auto
            else run_plan(session, session.provider(provider_name), request)
        )
        plan.job = job.public_view()
        print_plan(session, plan)
        return
    if auto:
        from runctl_core.auto import candidates_for, execute_auto

        first = candidates_for(session, request.instance, preference, nodes=request.nodes)[0][0]
        proceed_if_paid(session, yes, first.hourly, f"{first.provider} {first.offer.instance_type}")
        result = execute_auto(session, request, sink=log_sink(session), preference=preference)
    else:
        from runctl_core.workflow import execute_run

        provider = session.provider(provider_name)
        ask_before_paying(session, provider, request.instance, yes)
        result = execute_run(session, provider, request, sink=log_sink(session))
    _show_run_result(session, result, request)


def _interactive(session: Session) -> bool:
    import sys

    return sys.stdin.isatty() and sys.stderr.isatty() and session.options.output == "text"


def _job(
    ctx: click.Context,
    script: str | None,
    script_args: tuple[str, ...],
    job_file: Path | None,
    project: Path | None,
    outputs_dir: Path | None,
    env_file: Path | None,
    flags: dict[str, Any],
) -> Job:
    """The job file (given, or ./runctl.yaml when no SCRIPT) with the flags given on the command line on top."""
    from runctl_core.jobfile import JOB_FILE, Job

    if job_file is not None:
        base = Job.from_file(job_file)
    elif script is None:
        default = Path.cwd() / JOB_FILE
        if not default.is_file():
            raise click.UsageError(
                f"no SCRIPT given and no {JOB_FILE} here: runctl run SCRIPT, runctl run -f FILE, "
                f"or write a {JOB_FILE} (runctl init)"
            )
        base = Job.from_file(default)
    else:
        base = Job()
    overrides: dict[str, Any] = {}
    for param, key in _JOB_FLAGS.items():
        if ctx.get_parameter_source(param) is click.core.ParameterSource.COMMANDLINE:
            overrides[key] = flags.get(param)
    if script is not None:
        # given here, it is relative to the current directory (a job file's own script, to its project)
        overrides["script"] = script if base.source is None else str(Path(script).resolve())
        overrides["args"] = list(script_args)
        if base.command:
            overrides["command"] = None
    elif script_args:
        overrides["args"] = list(script_args)
    if project is not None:
        overrides["project"] = str(project.resolve())
    if flags.get("setup_commands"):
        overrides["setup"] = list(flags["setup_commands"])
    if flags.get("python_version"):
        overrides["python"] = flags["python_version"]
    if outputs_dir is not None:
        overrides["outputs"] = str(outputs_dir.expanduser().resolve())
    if env_file is not None:
        overrides["env_file"] = str(env_file.resolve())
    return base.merged(overrides)


def _provider_choice(session: Session, job: Job) -> tuple[str, list[str] | None]:
    """--provider (or $RUNCTL_PROVIDER) over the job file's provider over the config's default."""
    import os

    if session.options.provider or os.environ.get("RUNCTL_PROVIDER"):
        return session.provider_name(), None
    if isinstance(job.provider, str):
        return job.provider, None
    if job.provider:
        return "auto", job.preference()
    return session.provider_name(), None


def _show_run_result(session: Session, result: Any, request: Any) -> None:
    job = result.job

    def text() -> None:
        lines = []
        if request.detach:
            lines.append(f"job {job.job_id} started on {job.instance_id}")
            lines.append(f"follow it: runctl logs {job.job_id} --follow    stop it: runctl terminate {job.job_id}")
        else:
            lines.append(f"job {job.job_id} {job.state} (exit code {job.exit_code})")
            if result.environment:
                lines.append(environment_line(result.environment))
            if result.outputs_dir:
                lines.append(f"checkpoints: {result.outputs_dir} ({len(result.checkpoints)} files)")
            if result.cost is not None:
                lines.append(f"cost: {money(result.cost)}")
            if request.keep and result.instance:
                lines.append(f"instance {result.instance['id']} kept: runctl terminate {result.instance['id']}")
        click.echo("\n".join(lines))

    emit(session, result, text, job.job_id)
