"""Commands that look: status, logs, checkpoint list|info."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from runctl_core.cli.common import common, emit, examples, money, refuse_id_output, session_of, table

if TYPE_CHECKING:
    from runctl_core.session import Session
    from runctl_core.state import JobRow


def load_job(session: Session, job_id: str) -> JobRow:
    from runctl_core.errors import UsageError

    row = session.store.job(job_id)
    if row is None:
        raise UsageError(f"runctl has no job {job_id!r}", "list jobs with: runctl status --all")
    return row


def job_context(session: Session, row: JobRow) -> tuple[Any, Any, Any]:
    """(provider, instance record, last job status) for a job runctl knows."""
    from runctl_core.errors import UsageError
    from runctl_core.models import JobStatus

    if row.instance_id is None:
        raise UsageError(
            f"job {row.id} never started on an instance ({row.state.value}: {row.message})",
            "start a new run: runctl run SCRIPT",
        )
    instance_row = session.store.instance(row.instance_id, row.provider)
    if instance_row is None:
        raise UsageError(f"runctl lost the record of instance {row.instance_id}", "runctl resources list")
    status = row.status or JobStatus(job_id=row.id, state=row.state, exit_code=row.exit_code)
    return session.provider(row.provider), instance_row.instance, status


def refresh_job(session: Session, row: JobRow) -> dict[str, Any]:
    """Ask the provider for the job's state now; finish a detached run whose job has ended."""
    from runctl_core.cost import job_cost
    from runctl_core.workflow import collect_outputs, job_document, outputs_dir_for, terminate_instance

    provider, instance, status = job_context(session, row)
    report = provider.status(instance, status)
    session.store.save_instance(report.instance)
    if report.job is not None:
        session.store.update_job(row.id, status=report.job)
        if report.job.state.terminal and not row.keep and row.outputs_dir is None:
            dest = outputs_dir_for(session, row.id, None)
            if report.instance.state.alive:
                collect_outputs(session, provider, report.instance, report.job, dest)
                terminate_instance(session, provider, report.instance)
    inst = session.store.instance(instance.id, row.provider)
    cost = job_cost(inst, report.job)
    if cost is not None:
        session.store.update_job(row.id, cost=cost)
    doc = job_document(session.store, row.id)
    doc["instance"] = inst.instance.model_dump(mode="json") if inst else None
    doc["cost"] = cost
    return doc


@click.command(
    "status",
    epilog=examples(
        "runctl status                 # 3 instances running, $4.12/h, 2 jobs active",
        "runctl status job-7f3a9c --output json",
        "runctl status i-0abc123",
    ),
)
@click.argument("ident", metavar="[ID]", required=False)
@click.option("--all", "show_all", is_flag=True, help="With no ID: list every instance and job, not only live ones.")
@common
@click.pass_context
def status_cmd(ctx: click.Context, ident: str | None, show_all: bool) -> None:
    """The state of one job or instance (asking its provider), or with no ID a one-line summary of everything
    runctl is running, across providers, from its records."""
    session = session_of(ctx)
    store = session.store
    if ident is None:
        _summary(session, show_all)
        return
    if store.job(ident) is not None:
        doc = refresh_job(session, load_job(session, ident))
        text = (
            f"job {doc['job_id']}: {doc['state']}"
            + (f" (exit code {doc['exit_code']})" if doc["exit_code"] is not None else "")
            + f" on {doc['provider']} instance {doc['instance_id']}"
            + (f" [{doc['instance']['state']}]" if doc.get("instance") else "")
            + (f", cost {money(doc['cost'])}" if doc.get("cost") is not None else "")
            + (f"\n{doc['message']}" if doc["message"] else "")
        )
        emit(session, doc, text, doc["job_id"])
        return
    from runctl_core.cli.cmd_work import resolve_instance

    provider, instance = resolve_instance(session, ident, or_job=True)
    report = provider.status(instance, None)
    store.save_instance(report.instance)
    row = store.instance(instance.id, provider.name)
    doc = {**report.instance.model_dump(mode="json"), "cost": row.cost() if row else None}
    emit(
        session,
        doc,
        f"{instance.id} ({provider.name}): {report.instance.state.value}"
        + (f" - {report.instance.message}" if report.instance.message else "")
        + (f", {money(report.instance.hourly_price)}/h" if report.instance.hourly_price else ""),
        instance.id,
    )


def _summary(session: Session, show_all: bool) -> None:
    store = session.store
    instances = store.instances(alive_only=not show_all)
    jobs = store.jobs(active_only=not show_all)
    alive = [r for r in instances if r.ended_at is None]
    rate = sum(r.instance.hourly_price or 0.0 for r in alive)
    active = [j for j in jobs if not j.state.terminal]
    line = (
        f"{len(alive)} instance{'s' if len(alive) != 1 else ''} running, ${rate:.2f}/h, "
        f"{len(active)} job{'s' if len(active) != 1 else ''} active"
    )
    doc = {
        "summary": {"instances_running": len(alive), "hourly_cost": rate, "jobs_active": len(active)},
        "instances": [{**r.instance.model_dump(mode="json"), "cost": r.cost(), "job_id": r.job_id} for r in instances],
        "jobs": [
            {
                "job_id": j.id,
                "provider": j.provider,
                "instance_id": j.instance_id,
                "state": j.state.value,
                "exit_code": j.exit_code,
                "script": j.spec.script,
                "created_at": j.created_at.isoformat(),
            }
            for j in jobs
        ],
    }

    def text() -> None:
        click.echo(line)
        if show_all or session.options.verbose:
            table(
                "jobs",
                ["JOB", "PROVIDER", "INSTANCE", "STATE", "EXIT", "SCRIPT", "CREATED"],
                [
                    [
                        j.id,
                        j.provider,
                        j.instance_id,
                        j.state.value,
                        j.exit_code,
                        j.spec.script,
                        j.created_at.strftime("%Y-%m-%d %H:%M"),
                    ]
                    for j in jobs
                ],
            )()

    emit(session, doc, text)


@click.command(
    "logs",
    epilog=examples(
        "runctl logs job-7f3a9c",
        "runctl logs job-7f3a9c --follow",
        "runctl logs job-7f3a9c --follow --output json   # JSON Lines",
    ),
)
@click.argument("job_id", metavar="JOB")
@click.option(
    "--follow", "-f", is_flag=True, help="Keep printing new output until the job ends (exit code = the job's)."
)
@common
@click.pass_context
def logs_cmd(ctx: click.Context, job_id: str, follow: bool) -> None:
    """Print the log (stdout and stderr) of JOB, or follow it to the end."""
    from runctl_core.errors import CapabilityError, JobFailed
    from runctl_core.redact import redact
    from runctl_core.workflow import read_logs, wait_job

    session = session_of(ctx)
    refuse_id_output(session)
    row = load_job(session, job_id)
    provider, instance, status = job_context(session, row)
    as_json = session.options.output == "json"
    if not provider.has("logs"):
        raise CapabilityError(f"provider {provider.name} cannot show logs", f"check it with: runctl status {job_id}")
    if not follow:
        parts: list[str] = []
        read = read_logs(provider, instance, status, 0, parts.append, until_complete=True)
        log = "".join(parts)
        if as_json:
            emit(session, {"job_id": job_id, "log": log, "bytes": read.offset, "complete": read.complete})
        else:
            sys.stdout.write(redact(log))
            sys.stdout.flush()
        return

    def sink(text: str) -> None:
        if as_json:
            sys.stdout.write(json.dumps({"job_id": job_id, "data": redact(text)}) + "\n")
        else:
            sys.stdout.write(redact(text))
        sys.stdout.flush()

    try:
        final, offset = wait_job(session, provider, instance, status, sink=sink)
    except KeyboardInterrupt:
        from runctl_core.errors import Interrupted

        raise Interrupted(
            f"stopped following job {job_id}; it keeps running", f"stop it with: runctl terminate {job_id} --yes"
        ) from None
    refresh_job(session, session.store.job(job_id) or row)
    if as_json:
        sys.stdout.write(
            json.dumps(
                {
                    "job_id": job_id,
                    "state": final.state.value,
                    "exit_code": final.exit_code,
                    "bytes": offset,
                    "complete": True,
                }
            )
            + "\n"
        )
    if final.state.value != "succeeded":
        raise JobFailed(
            f"job {job_id} {final.state.value}"
            + (f" (exit code {final.exit_code})" if final.exit_code is not None else ""),
            f"see its state: runctl status {job_id}",
        )


# ----------------------------------------------------------------------------------------------- checkpoints


@click.group("checkpoint", epilog=examples("runctl checkpoint list job-7f3a9c", "runctl checkpoint info job-7f3a9c"))
def checkpoint_group() -> None:
    """Checkpoints of a job: on the instance or in provider storage, and those runctl collected locally."""


def _checkpoints(session: Session, job_id: str) -> tuple[list[dict[str, Any]], str | None]:
    from runctl_core.models import JobStatus
    from runctl_core.workflow import outputs_dir_for

    row = load_job(session, job_id)
    found: list[dict[str, Any]] = []
    local_dir = Path(row.outputs_dir) if row.outputs_dir else outputs_dir_for(session, row.id, None)
    if local_dir.is_dir():
        for path in sorted(local_dir.rglob("*")):
            if path.is_file():
                st = path.stat()
                found.append(
                    {
                        "name": path.relative_to(local_dir).as_posix(),
                        "size": st.st_size,
                        "modified_at": datetime.fromtimestamp(st.st_mtime, timezone.utc).isoformat(),
                        "location": str(path),
                        "where": "local",
                    }
                )
    if row.instance_id:
        inst = session.store.instance(row.instance_id, row.provider)
        if inst is not None:
            provider = session.provider(row.provider)
            status = row.status or JobStatus(job_id=row.id, state=row.state, exit_code=row.exit_code)
            remote = provider.list_checkpoints(inst.instance, status) or []
            known = {c["name"] for c in found}
            for ckpt in remote:
                if ckpt.name not in known:
                    found.append({**ckpt.model_dump(mode="json"), "where": row.provider})
    return found, str(local_dir) if local_dir.is_dir() else None


@checkpoint_group.command("list", epilog=examples("runctl checkpoint list job-7f3a9c --output json"))
@click.argument("job_id", metavar="JOB")
@common
@click.pass_context
def checkpoint_list(ctx: click.Context, job_id: str) -> None:
    """Every checkpoint file of JOB, local and remote."""
    session = session_of(ctx)
    found, local_dir = _checkpoints(session, job_id)
    doc = {"job_id": job_id, "local_dir": local_dir, "checkpoints": found}
    emit(
        session,
        doc,
        table(
            None,
            ["NAME", "SIZE", "MODIFIED", "WHERE", "LOCATION"],
            [[c["name"], c["size"], (c.get("modified_at") or "")[:19], c["where"], c["location"]] for c in found],
        )
        if found
        else f"no checkpoints for {job_id}",
    )


@checkpoint_group.command("info", epilog=examples("runctl checkpoint info job-7f3a9c"))
@click.argument("job_id", metavar="JOB")
@common
@click.pass_context
def checkpoint_info(ctx: click.Context, job_id: str) -> None:
    """The newest checkpoint of JOB and where the job's checkpoints are."""
    session = session_of(ctx)
    found, local_dir = _checkpoints(session, job_id)
    newest = max(found, key=lambda c: (c.get("modified_at") or "", c["name"])) if found else None
    doc = {
        "job_id": job_id,
        "count": len(found),
        "total_bytes": sum(c["size"] for c in found),
        "newest": newest,
        "local_dir": local_dir,
    }
    text = (
        f"{job_id}: {len(found)} files, {doc['total_bytes']} bytes"
        + (f"\nnewest file: {newest['name']} ({newest['where']}: {newest['location']})" if newest else "")
        + (f"\ncollected in: {local_dir}" if local_dir else "")
    )
    emit(session, doc, text)
