"""Jobs on an EC2 instance: the core's remote-job layer (:class:`~runctl_core.remote.jobs.JobHost`) over the SSM + S3
transport (:class:`~runctl_aws.transport.SsmTransport`), with the laptop's memory of each instance
(:class:`~runctl_core.remote.hostcache.HostCache`), plus what only AWS does:

* **staging while the instance boots** (``stage``): right after RunInstances the bundle the first ``sync`` will send
  (runctl's tools and the whole project) is uploaded to S3; that sync's SSM command then fetches it instead of
  uploading it after the SSM agent came online;
* **work that survives the instance**: when a job ends, ``agent.py push`` (the supervisor's ``--after``) uploads its
  checkpoints, log and final record to ``s3://BUCKET/PREFIX/JOB/`` through a presigned POST limited to that prefix
  (the instance needs no S3 rights); ``logs``, ``status``, ``list_checkpoints`` and ``collect`` read S3 once the
  instance is gone;
* **spot**: the supervisor asks IMDS for an interruption notice (``--interrupt-check agent.py spot-notice``);
* a detached job ends its instance (``--shutdown-after``; ``InstanceInitiatedShutdownBehavior=terminate``).

Round trips: ``sync`` makes none when nothing changed and one SSM command otherwise; ``train`` one SSM command (and an
S3 upload when the job has env, setup commands or resume checkpoints); ``status``, ``logs`` and ``cancel`` one each.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from runctl_aws.common import (
    JOB_ID_RE,
    S3_PUT_LIMIT,
    bucket_of,
    client_for,
    describe,
    job_prefix,
    region_of,
    require_running,
    settings_of,
    staging_prefix,
)
from runctl_core.errors import NotFoundError, ProviderError, RunctlError, TransientError, UsageError
from runctl_core.models import (
    Checkpoint,
    Collected,
    Instance,
    JobSpec,
    JobStatus,
    LogChunk,
    Project,
    ProviderContext,
    SyncResult,
)
from runctl_core.remote.hostcache import HostCache
from runctl_core.remote.records import decode_log_chunk
from runctl_core.timestamps import parse_time

if TYPE_CHECKING:
    from runctl_aws.client import AwsClient
    from runctl_aws.transport import SsmTransport
    from runctl_core.remote.jobs import JobHost

T = TypeVar("T")
# the supervisor runs --after/--interrupt-check in the project directory (ROOT/project): the agent is ROOT/bin's
AGENT = "python3 ../bin/agent.py"
LOG_S3_CHUNK = 1 << 20


@cache
def agent_tools() -> dict[str, bytes]:
    """The AWS helper installed beside runctl's tools (``ROOT/bin/agent.py``)."""
    return {"agent.py": Path(__file__).with_name("remote").joinpath("agent.py").read_bytes()}


def memory(ctx: ProviderContext, instance_id: str) -> HostCache:
    """What this laptop installed and synced on the instance (tools version, project manifest)."""
    return HostCache.for_instance(ctx.state_dir, instance_id)


def host(ctx: ProviderContext, instance: Instance, client: AwsClient | None = None) -> JobHost:
    from runctl_aws.transport import SsmTransport
    from runctl_core.remote.jobs import JobHost

    settings = settings_of(ctx)
    client = client or client_for(ctx, region_of(instance, ctx))
    staging = staging_prefix(settings, instance.id)
    transport = SsmTransport(client, instance.id, bucket_of(settings), staging, timeout=settings.command_timeout)
    return JobHost(
        transport, settings.remote_dir, cache=memory(ctx, instance.id), extra_tools=agent_tools(), python="python3"
    )


def _explained(ctx: ProviderContext, instance: Instance, call: Callable[[], T]) -> T:
    """``call()``; when SSM cannot reach the instance, EC2 is asked why (terminated, stopped...) for the error."""
    try:
        return call()
    except NotFoundError:
        require_running(ctx, instance)
        raise


def _check_size(project: Project) -> None:
    if project.total_bytes > S3_PUT_LIMIT:
        raise UsageError(
            f"the project is {project.total_bytes / 1024**3:.1f} GiB; runctl syncs at most 5 GiB",
            "add large data to .runctlignore and read it from S3 in the script",
        )


def stage(ctx: ProviderContext, instance: Instance, project: Project) -> None:
    """Upload what the first ``sync`` of the just-created instance will send, while it boots (S3 only)."""
    _check_size(project)
    jobs = host(ctx, instance)
    data = jobs.sync_payload(project)
    if data:
        ctx.report(f"uploading the project for {instance.id} to S3 while it starts")
        transport: SsmTransport = jobs.transport  # type: ignore[assignment]
        transport.prestage(data)


def sync(ctx: ProviderContext, instance: Instance, project: Project) -> SyncResult:
    _check_size(project)
    return _explained(ctx, instance, lambda: host(ctx, instance).sync(project))


def _upload_policy(ctx: ProviderContext, client: AwsClient, job_id: str) -> str:
    """A presigned POST for ``s3://BUCKET/PREFIX/JOB/`` only, base64 (shell-safe) for ``agent.py push --upload``."""
    settings = settings_of(ctx)
    policy = client.presign_post(bucket_of(settings), job_prefix(settings, job_id), settings.upload_url_expiry)
    return base64.b64encode(json.dumps(policy).encode()).decode()


def train(ctx: ProviderContext, instance: Instance, job: JobSpec) -> JobStatus:
    settings = settings_of(ctx)
    if not JOB_ID_RE.match(job.job_id):
        raise UsageError(f"job id {job.job_id!r} has characters runctl cannot use on AWS", "use letters, digits, -_.")
    client = client_for(ctx, region_of(instance, ctx))
    push = f"{AGENT} push --final --job-dir ../jobs/{job.job_id} --upload {_upload_policy(ctx, client, job.job_id)}"
    extra = ["--after", push]
    if instance.spot:
        extra += [
            "--interrupt-check",
            f"{AGENT} spot-notice",
            "--interrupt-every",
            f"{settings.interrupt_check_every:g}",
        ]
    if job.terminate_on_exit:
        extra += ["--shutdown-after", "--shutdown-cmd", "shutdown -h now"]
    jobs = host(ctx, instance, client)
    return _explained(
        ctx, instance, lambda: jobs.launch(job, grace=settings.grace_period, use_uv=settings.use_uv, extra=extra)
    )


def job_on_instance(ctx: ProviderContext, client: AwsClient, instance: Instance, job: JobStatus) -> JobStatus:
    """The job's record read on the running instance (one SSM command); the last known status with a message when
    SSM cannot reach it or the record cannot be read."""
    jobs = host(ctx, instance, client)
    try:
        try:
            return jobs.status(job.job_id)
        except ProviderError:
            if jobs.cache is not None and jobs.cache.tools == jobs.tools_version:
                raise
            jobs.install_tools()  # runctl never started a job there (this laptop's memory says): ask properly
            return jobs.status(job.job_id)
    except NotFoundError:  # SSM does not reach it (any more)
        return job.model_copy(update={"message": "SSM cannot reach the instance"})
    except TransientError:
        raise
    except RunctlError:
        return job.model_copy(update={"message": "could not read the job state"})


def cancel(ctx: ProviderContext, instance: Instance, job: JobStatus) -> JobStatus:
    from runctl_aws.compute import status

    client, ec2 = describe(ctx, instance)
    if ec2 is None or ec2.state != "running":
        return job if job.state.terminal else status(ctx, instance, job).job or job
    grace = settings_of(ctx).grace_period
    try:
        return host(ctx, instance, client).stop(job.job_id, grace)
    except NotFoundError:
        return job
    except (ProviderError, TransientError):
        ended = _ended_by_its_shutdown(ctx, client, instance, job, wait=15.0)
        if ended is None:
            raise
        return ended


def _ended_by_its_shutdown(
    ctx: ProviderContext, client: AwsClient, instance: Instance, job: JobStatus, wait: float
) -> JobStatus | None:
    """The job's end when the stop command was cut by the shutdown the stop itself caused: a detached job's
    supervisor runs ``shutdown -h now`` (``--shutdown-after``) once the job has ended and pushed its record, which
    kills the SSM command still waiting for it. SSM then reports the command as failed or, when the agent dies with
    the instance, leaves it running until its timeout (the statuses are listed in "Understanding command statuses",
    https://docs.aws.amazon.com/systems-manager/latest/userguide/monitor-commands.html; what SSM says about an
    instance that shuts down mid-command is not documented). Not an error when the record the job pushed to S3 says
    it ended, or when the instance is ending; None (the failure stands) otherwise, after at most ``wait`` seconds."""
    import time

    from runctl_aws.compute import job_from_s3
    from runctl_core.models import JobState

    deadline = time.monotonic() + wait
    while True:
        recorded = job_from_s3(ctx, client, job.job_id)
        if recorded is not None and recorded.state.terminal:
            return recorded
        ec2 = client.describe_instance(instance.id)
        if ec2 is None or ec2.state not in ("pending", "running"):
            state = ec2.state if ec2 is not None else "gone"
            return job.model_copy(
                update={"state": JobState.CANCELLED, "message": f"stopped; its instance is {state} (it shut down)"}
            )
        if time.monotonic() > deadline:
            return None
        time.sleep(0.5)


def stop_all(ctx: ProviderContext, client: AwsClient, instance: Instance) -> None:
    """Stop every job on the instance in ONE SSM command (each uploads its checkpoints on the way out)."""
    settings = settings_of(ctx)
    jobs = host(ctx, instance, client)
    script = (
        'for d in "$1"/jobs/*/; do [ -f "$d/job.json" ] && '
        'python3 "$1/bin/runner.py" stop --job-dir "$d" --grace "$2" >/dev/null || true; done'
    )
    grace = settings.grace_period
    jobs.transport.run(["sh", "-c", script, "sh", jobs.root, f"{grace:g}"], timeout=grace + 60)


def logs(ctx: ProviderContext, instance: Instance, job: JobStatus, offset: int, rank: int = 0) -> LogChunk:
    settings = settings_of(ctx)
    client, ec2 = describe(ctx, instance)
    if ec2 is not None and ec2.state == "running":
        try:
            return host(ctx, instance, client).logs(job.job_id, offset, rank=rank)
        except TransientError:
            raise
        except RunctlError:
            pass  # SSM cannot reach it, or the record is not there: what the job pushed to S3
    if not settings.bucket:
        return LogChunk(data="", offset=offset, next_offset=offset, complete=True)
    key = job_prefix(settings, job.job_id) + "log"  # what agent.py push uploaded (AWS runs single-node jobs)
    stored = client.object_size(settings.bucket, key)
    alive = ec2 is not None and ec2.state in ("pending", "running")
    if stored is None or offset >= stored:
        return LogChunk(data="", offset=offset, next_offset=offset, complete=not alive)
    data = client.get_bytes(settings.bucket, key, f"bytes={offset}-{offset + LOG_S3_CHUNK - 1}") or b""
    at_end = offset + len(data) >= stored
    text, used = decode_log_chunk(data, final=at_end)
    return LogChunk(
        data=text, offset=offset, next_offset=offset + used, complete=at_end and used == len(data) and not alive
    )


def s3_checkpoints(ctx: ProviderContext, client: AwsClient, job_id: str) -> list[Checkpoint]:
    settings = settings_of(ctx)
    if not settings.bucket:
        return []
    prefix = job_prefix(settings, job_id) + "checkpoints/"
    return [
        Checkpoint(
            name=item["Key"][len(prefix) :],
            size=int(item.get("Size", 0)),
            modified_at=parse_time(item.get("LastModified")),
            location=f"s3://{settings.bucket}/{item['Key']}",
        )
        for item in client.list_objects(settings.bucket, prefix)
        if item["Key"] != prefix
    ]


def list_checkpoints(ctx: ProviderContext, instance: Instance, job: JobStatus) -> list[Checkpoint]:
    client, ec2 = describe(ctx, instance)
    found = s3_checkpoints(ctx, client, job.job_id)
    if found or ec2 is None or ec2.state != "running" or not memory(ctx, instance.id).tools:
        return found
    try:  # still running (nothing pushed yet): what is on the instance, one SSM command
        on_instance = host(ctx, instance, client).checkpoints(job.job_id)
    except (NotFoundError, ProviderError):
        return []
    return [c.model_copy(update={"location": f"{instance.id}:{c.location}"}) for c in on_instance]


def collect(ctx: ProviderContext, instance: Instance, job: JobStatus, dest: Path) -> Collected:
    settings = settings_of(ctx)
    client, ec2 = describe(ctx, instance)
    found = s3_checkpoints(ctx, client, job.job_id)
    if not found and ec2 is not None and ec2.state == "running" and memory(ctx, instance.id).tools:
        jobs = host(ctx, instance, client)
        push = [f"{jobs.root}/bin/agent.py", "push", "--job-dir", jobs.job_dir(job.job_id)]
        try:  # the job is still running (or never pushed): push what exists now
            jobs.transport.run(["python3", *push, "--upload", _upload_policy(ctx, client, job.job_id)], timeout=600)
        except NotFoundError:
            pass
        found = s3_checkpoints(ctx, client, job.job_id)
    written: list[Path] = []
    root = dest.resolve()
    for item in found:
        target = (dest / item.name).resolve()
        if not str(target).startswith(str(root) + os.sep):
            continue
        data = client.get_bytes(str(settings.bucket), item.location.split("/", 3)[3])
        if data is None:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written.append(target)
    return Collected(directory=dest, files=written)
