"""Jobs on an instance through SSM + S3: sync, train, cancel, logs, checkpoints and collect."""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runctl_aws import scripts
from runctl_aws.client import AwsClient
from runctl_aws.common import (
    JOB_ID_RE,
    LOG_S3_CHUNK,
    LOG_SSM_CHUNK,
    S3_PUT_LIMIT,
    bucket_of,
    client_for,
    command_failed,
    describe,
    job_prefix,
    job_status,
    parse_time,
    read_state,
    region_of,
    run_command,
    run_first,
    settings_of,
    staging_prefix,
    state_file,
    utf8_cut,
)
from runctl_aws.compute import status
from runctl_core.errors import (
    NotFoundError,
    RunctlError,
    UsageError,
)
from runctl_core.models import (
    Checkpoint,
    Collected,
    Instance,
    JobSpec,
    JobState,
    JobStatus,
    LogChunk,
    Project,
    ProviderContext,
    SyncResult,
)


def sync(ctx: ProviderContext, instance: Instance, project: Project) -> SyncResult:
    from runctl_core.files import changed_files, pack_tar

    settings = settings_of(ctx)
    bucket = bucket_of(settings)
    if project.total_bytes > S3_PUT_LIMIT:
        raise UsageError(
            f"the project is {project.total_bytes / 1024**3:.1f} GiB; runctl syncs at most 5 GiB",
            "add large data to .runctlignore and read it from S3 in the script",
        )
    client = client_for(ctx, region_of(instance, ctx))
    staging = staging_prefix(settings, instance.id)
    previous = remote_manifest(ctx, client, instance)
    send, delete = changed_files(project, previous)
    remote_path = settings.remote_dir + "/project"
    if not send and not delete:
        return SyncResult(remote_path=remote_path, files_total=len(project.files), files_sent=0, bytes_sent=0)
    ctx.report(f"syncing {len(send)} file(s) to {instance.id} through S3")
    stamp = f"{time.time_ns()}"
    tar_key, meta_key = staging + f"sync-{stamp}.tar.gz", staging + f"sync-{stamp}.json"
    tar_url = ""
    if send:
        client.put_bytes(bucket, tar_key, pack_tar(project, send))
        tar_url = client.presign_get(bucket, tar_key)
    client.put_bytes(bucket, meta_key, json.dumps({"delete": delete, "manifest": project.manifest()}).encode())
    meta_url = client.presign_get(bucket, meta_key)
    # the staging objects stay until terminate deletes the instance's staging prefix (no round trips here)
    result = run_first(ctx, client, instance, scripts.sync(settings.remote_dir, tar_url, meta_url), "sync")
    if not result.ok:
        raise command_failed(client, instance.id, "sync", result)
    write_manifest(ctx, instance.id, project.manifest())
    return SyncResult(
        remote_path=remote_path,
        files_total=len(project.files),
        files_sent=len(send),
        bytes_sent=sum(f.size for f in send),
        files_deleted=len(delete),
    )


def manifest_file(ctx: ProviderContext, instance_id: str) -> Path:
    return state_file(ctx, instance_id).with_suffix(".manifest.json")


def write_manifest(ctx: ProviderContext, instance_id: str, manifest: dict[str, str]) -> None:
    path = manifest_file(ctx, instance_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(manifest))
    os.replace(tmp, path)


def remote_manifest(ctx: ProviderContext, client: AwsClient, instance: Instance) -> dict[str, str]:
    """What the instance's project holds (path -> hash): this laptop's record of its last sync there; for an
    instance it created and never synced, nothing; otherwise (another laptop synced it) read from the instance."""
    try:
        data: dict[str, str] = json.loads(manifest_file(ctx, instance.id).read_text())
        return data
    except (OSError, ValueError):
        pass
    if "created" in read_state(ctx, instance.id) and "tools" not in read_state(ctx, instance.id):
        return {}
    result = run_first(ctx, client, instance, scripts.read_manifest(settings_of(ctx).remote_dir), "manifest")
    try:
        found: dict[str, str] = json.loads(result.stdout.strip().splitlines()[-1]) if result.ok else {}
    except (ValueError, IndexError):
        found = {}
    return found


def train(ctx: ProviderContext, instance: Instance, job: JobSpec) -> JobStatus:
    settings = settings_of(ctx)
    if not JOB_ID_RE.match(job.job_id):
        raise UsageError(f"job id {job.job_id!r} has characters runctl cannot use on AWS", "use letters, digits, -_.")
    bucket = bucket_of(settings)
    client = client_for(ctx, region_of(instance, ctx))
    staging = staging_prefix(settings, instance.id)
    expiry = settings.upload_url_expiry
    bundle: dict[str, Any] = {
        "env": job.env,
        "upload": client.presign_post(bucket, job_prefix(settings, job.job_id), expiry),
        "setup": job.setup,
    }
    keys = [staging + f"{job.job_id}-bundle.json"]
    has_resume = bool(job.resume_dir and job.resume_dir.is_dir())
    if has_resume and job.resume_dir is not None:
        keys.append(staging + f"{job.job_id}-resume.tar.gz")
        client.put_bytes(bucket, keys[1], tar_directory(job.resume_dir))
        bundle["resume_url"] = client.presign_get(bucket, keys[1])
    if job.env or has_resume:  # env values may be secrets: through S3, never in the SSM command's text
        client.put_bytes(bucket, keys[0], json.dumps(bundle).encode())
        bundle_url = client.presign_get(bucket, keys[0])
    else:  # only the upload policy (a presigned POST, in the command like every presigned URL): inline
        keys = []
        bundle_url = "data:application/json;base64," + base64.b64encode(json.dumps(bundle).encode()).decode()
    script = scripts.train(
        settings.remote_dir,
        job,
        bundle_url,
        grace=settings.grace_period,
        use_uv=settings.use_uv,
        spot=instance.spot,
        interrupt_every=settings.interrupt_check_every,
        has_resume=has_resume,
    )
    try:
        result = run_first(ctx, client, instance, script, f"train {job.job_id}")
    finally:
        for key in keys:
            try:
                client.delete_object(bucket, key)
            except RunctlError:
                pass
    if result.exit_code == scripts.EXIT_SCRIPT_MISSING:
        raise UsageError(
            f"{job.script} is not in the synced project on {instance.id}",
            f"sync first (runctl sync {instance.id}) or check the script path",
        )
    if result.exit_code == scripts.EXIT_JOB_EXISTS:
        raise UsageError(f"a job {job.job_id} already exists on {instance.id}", "use a new job id")
    if not result.ok:
        raise command_failed(client, instance.id, f"starting job {job.job_id}", result)
    try:
        record = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        record = {"state": "pending"}
    return job_status(job.job_id, record)


def cancel(ctx: ProviderContext, instance: Instance, job: JobStatus) -> JobStatus:
    settings = settings_of(ctx)
    client, ec2 = describe(ctx, instance)
    if ec2 is None or ec2.state != "running":
        return job if job.state.terminal else status(ctx, instance, job).job or job
    try:
        result = run_first(
            ctx,
            client,
            instance,
            scripts.stop_job(settings.remote_dir, job.job_id, settings.grace_period),
            "stop",
            settings.grace_period + 60,
            explain=False,
        )
    except NotFoundError:
        return job
    if not result.ok:
        raise command_failed(client, instance.id, f"stopping job {job.job_id}", result)
    try:
        return job_status(job.job_id, json.loads(result.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        return job


def logs(ctx: ProviderContext, instance: Instance, job: JobStatus, offset: int) -> LogChunk:
    settings = settings_of(ctx)
    client, ec2 = describe(ctx, instance)
    if ec2 is not None and ec2.state == "running":
        try:
            result = run_first(
                ctx,
                client,
                instance,
                scripts.read_log(settings.remote_dir, job.job_id, offset, LOG_SSM_CHUNK),
                "logs",
                60,
                explain=False,
            )
        except NotFoundError:
            result = None
        if result is not None and result.ok:
            reply = json.loads(result.stdout.strip().splitlines()[-1])
            data = base64.b64decode(reply["data"])
            size = int(reply.get("size", 0))
            at_end = offset + len(data) >= size
            terminal = reply["record"].get("state") in {s.value for s in JobState if s.terminal}
            data = utf8_cut(data, at_end and terminal)
            return LogChunk(
                data=data.decode("utf-8", errors="replace"),
                offset=offset,
                next_offset=offset + len(data),
                complete=terminal and at_end,
            )
    # the instance is gone (or SSM cannot reach it): the log the job pushed to S3 when it ended
    if not settings.bucket:
        return LogChunk(data="", offset=offset, next_offset=offset, complete=True)
    key = job_prefix(settings, job.job_id) + "log"
    stored = client.object_size(settings.bucket, key)
    alive = ec2 is not None and ec2.state in ("pending", "running")
    if stored is None or offset >= stored:
        return LogChunk(data="", offset=offset, next_offset=offset, complete=not alive)
    data = client.get_bytes(settings.bucket, key, f"bytes={offset}-{offset + LOG_S3_CHUNK - 1}") or b""
    at_end = offset + len(data) >= stored
    data = utf8_cut(data, at_end)
    return LogChunk(
        data=data.decode("utf-8", errors="replace"),
        offset=offset,
        next_offset=offset + len(data),
        complete=at_end and not alive,
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
    settings = settings_of(ctx)
    client, ec2 = describe(ctx, instance)
    found = s3_checkpoints(ctx, client, job.job_id)
    if found or ec2 is None or ec2.state != "running" or not read_state(ctx, instance.id).get("tools"):
        return found
    try:
        result = run_command(client, instance.id, scripts.list_files(settings.remote_dir, job.job_id), "list", 60)
    except NotFoundError:
        return []
    if not result.ok:
        return []
    where = f"{settings.remote_dir}/jobs/{job.job_id}/checkpoints"
    return [
        Checkpoint(
            name=item["name"],
            size=int(item["size"]),
            modified_at=datetime.fromtimestamp(float(item["mtime"]), timezone.utc),
            location=f"{instance.id}:{where}/{item['name']}",
        )
        for item in json.loads(result.stdout.strip().splitlines()[-1])
    ]


def collect(ctx: ProviderContext, instance: Instance, job: JobStatus, dest: Path) -> Collected:
    settings = settings_of(ctx)
    client, ec2 = describe(ctx, instance)
    found = s3_checkpoints(ctx, client, job.job_id)
    if not found and ec2 is not None and ec2.state == "running" and read_state(ctx, instance.id).get("tools"):
        try:  # the job is still running (or never pushed): push what exists now
            run_command(client, instance.id, scripts.push(settings.remote_dir, job.job_id), "push", 600)
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


def tar_directory(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(directory).as_posix())
    return buffer.getvalue()
