"""Jobs as Lyceum executions: staging the project, building the start request (the dry run uses the same
builders), starting it, and mapping Lyceum's status onto runctl's (the README has the table)."""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runctl_core.errors import NotFoundError, UsageError
from runctl_core.models import Instance, JobSpec, JobState, JobStatus, Project, SyncResult
from runctl_core.timestamps import parse_time
from runctl_lyceum import logcache
from runctl_lyceum.compute import (
    CANCELLED_STATES,
    PENDING_STATES,
    SYSTEM_FAILURES,
    USER_FAILURES,
    Context,
    now,
)
from runctl_lyceum.models import ExecutionRecord, ExecutionRef, Reservation
from runctl_lyceum.packaging import (
    BLOBS_FILE,
    BOOTSTRAP_NAME,
    MARKER_FILE,
    NO_STORAGE_RC,
    bootstrap_code,
    bundle_files,
    check_size,
    marker,
    requirements_for,
)
from runctl_lyceum.settings import IMAGE_CODE_LIMIT, PYTHON_TIMEOUT_MAX, LyceumSettings


@dataclass(frozen=True)
class Shape:
    """How a job runs at Lyceum: a Python execution (``image`` None) or an image execution, and its timeout."""

    image: str | None
    timeout: int
    long_job: bool  # runs as an image execution only because it is longer than Python executions allow


def execution_shape(
    settings: LyceumSettings, image: str | None, job_timeout: float | None, max_runtime: float | None
) -> Shape:
    """The one decision of what kind of execution a job needs; refuses (before anything is spent) a job that is
    longer than Lyceum's Python executions allow when no image is configured for long jobs."""
    seconds = job_timeout or float(settings.default_timeout)
    if max_runtime:
        seconds = min(seconds, max_runtime)
    timeout = max(1, math.ceil(seconds))
    if image:
        return Shape(image, timeout, False)
    if timeout <= PYTHON_TIMEOUT_MAX:
        return Shape(None, timeout, False)
    if settings.long_job_image:
        return Shape(settings.long_job_image, timeout, True)
    raise UsageError(
        f"this job asks for {timeout} s (--timeout), but Lyceum ends Python executions after at most "
        f"{PYTHON_TIMEOUT_MAX} s and providers.lyceum.long_job_image is empty, so nothing was started",
        f"pass --timeout {PYTHON_TIMEOUT_MAX} or less (chain longer training with --resume-from), or set "
        "providers.lyceum.long_job_image to a Docker image with python3 (e.g. python:3.12-slim) to run it as an "
        "image execution",
    )


def format_errors(errors: Any) -> str:
    """``system_errors``/``errors`` as Lyceum sends them: strings, objects (``{"message": ...}``) or a mix."""
    if not errors:
        return ""
    items = errors if isinstance(errors, list) else [errors]
    parts = []
    for item in items:
        if isinstance(item, dict):
            text = item.get("message") or item.get("detail") or item.get("error") or item.get("msg")
            code = item.get("code") or item.get("type")
            parts.append(f"{code}: {text}" if code and text else str(text or code or item))
        else:
            parts.append(str(item))
    return "; ".join(p for p in parts if p)


def map_status(
    raw: str, ref: ExecutionRef, record: ExecutionRecord | None, meta: dict[str, Any], errors: Any = None
) -> JobStatus:
    """Lyceum's execution status onto runctl's JobState (the README has the table)."""
    status = raw.lower()
    rc = record.return_code if record is not None else None
    if rc is None and isinstance(meta.get("return_code"), int):
        rc = meta["return_code"]
    problems = format_errors(record.system_errors if record else None) or format_errors(errors)
    problems = problems or format_errors(meta.get("error"))
    detail = f": {problems}" if problems else ""
    base: dict[str, Any] = {
        "job_id": ref.job_id,
        "started_at": parse_time(record.job_start) if record else None,
        "ended_at": parse_time(record.job_end) if record else None,
        "cost": record.billed if record is not None else None,  # USD, as the Lyceum CLI shows it
    }
    if status in PENDING_STATES:
        return JobStatus(state=JobState.PENDING, message=f"Lyceum execution {ref.execution_id} {status}", **base)
    if status == "running":
        return JobStatus(state=JobState.RUNNING, message=f"Lyceum execution {ref.execution_id}", **base)
    base["ended_at"] = base["ended_at"] or now()
    if rc == NO_STORAGE_RC and status in USER_FAILURES | {"completed"}:
        return JobStatus(
            state=JobState.FAILED,
            exit_code=rc,
            message="the script's checkpoints could not leave the execution: Lyceum storage was not mounted in it "
            "(undocumented for Python executions); nothing was collected. Run with --image (image executions "
            "mount storage) or see the README's limits",
            **base,
        )
    if status == "completed":
        if ref.cancel_requested and rc is None:
            return JobStatus(state=JobState.CANCELLED, message="stopped on request", **base)
        if rc not in (None, 0):
            return JobStatus(state=JobState.FAILED, exit_code=rc, message=f"script exited with code {rc}", **base)
        return JobStatus(state=JobState.SUCCEEDED, exit_code=0, **base)
    if status in USER_FAILURES:
        message = f"script exited with code {rc}" if rc is not None else f"Lyceum: {status}{detail}"
        return JobStatus(state=JobState.FAILED, exit_code=rc, message=message, **base)
    if status == "timeout":
        limit = f" of {ref.timeout} s" if ref.timeout else ""
        return JobStatus(
            state=JobState.FAILED,
            exit_code=rc,
            message=f"Lyceum ended the execution at its timeout{limit} (runctl sends --timeout, or "
            f"providers.lyceum.default_timeout); checkpoints mirrored so far are in storage",
            **base,
        )
    if status in CANCELLED_STATES:
        return JobStatus(state=JobState.CANCELLED, exit_code=rc, message=f"Lyceum execution {status}", **base)
    if status in SYSTEM_FAILURES:
        return JobStatus(
            state=JobState.LOST,
            message=f"Lyceum system failure{detail}; checkpoints mirrored so far "
            "are in storage (runctl run --resume-from the job)",
            **base,
        )
    return JobStatus(state=JobState.RUNNING, message=f"Lyceum status {raw!r}", **{**base, "ended_at": None})


# ------------------------------------------------------------------------------------------------ sync


def sync(c: Context, instance: Instance, project: Project) -> SyncResult:
    rec = c.reservation(instance)
    bundle = bundle_files(project.root, [(f.path, f.mode) for f in project.files])
    limit = c.settings.max_request_bytes
    if rec.image:
        limit = min(limit, IMAGE_CODE_LIMIT)
    check_size(bundle, limit)
    previous = c.store.manifest(rec.id)
    staged = c.store.project_dir(rec.id)
    send = [f for f in project.files if previous.get(f.path, {}).get("sha256") != f.sha256]
    delete = sorted(set(previous) - {f.path for f in project.files})
    for item in send:
        target = staged / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((project.root / item.path).read_bytes())
    for rel in delete:
        (staged / rel).unlink(missing_ok=True)
    c.store.save_manifest(rec.id, {f.path: {"sha256": f.sha256, "mode": f.mode, "size": f.size} for f in project.files})
    return SyncResult.of_changes(
        "the execution's working directory (files go with each execution request)", project, send, delete
    )


# ------------------------------------------------------------------------------------------------ start request


def labels_for(rec: Reservation, job_id: str, owner: str) -> tuple[list[str], dict[str, str]]:
    metadata = {k: v for k, v in rec.tags.items() if k.startswith("runctl:")}
    metadata.update(
        {"runctl:job": job_id, "runctl:owner": rec.tags.get("runctl:owner", owner), "runctl:instance": rec.id}
    )
    labels = ["runctl"] + [f"{k}={v}" for k, v in sorted(metadata.items()) if k != "runctl:created"]
    return labels, metadata


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def start_request(c: Context, rec: Reservation, job: JobSpec, shape: Shape) -> dict[str, Any]:
    staged = c.store.project_dir(rec.id)
    manifest = c.store.manifest(rec.id)
    if job.script not in manifest:
        raise UsageError(
            f"{job.script} is not in the project synced to {rec.id}",
            f"sync first (runctl sync {rec.id}) or check the script path",
        )
    bundle = bundle_files(staged, [(path, int(meta.get("mode", 0o644))) for path, meta in sorted(manifest.items())])
    requirements = requirements_for(staged, job.script, c.settings.requirements)
    config: dict[str, Any] = {
        "script": job.script,
        "args": list(job.args),
        "env": dict(job.env),
        "job_id": job.job_id,
        "storage_mount": c.settings.storage_mount,
        "storage_path": c.storage_path(job.job_id),
        "sync_interval": c.settings.checkpoint_sync_interval,
        "grace": c.settings.grace_period,
        "modes": bundle.modes,
        "blobs_file": BLOBS_FILE,
        "marker_file": MARKER_FILE,
        "no_storage_rc": NO_STORAGE_RC,
        "expect_resume": job.resume_dir is not None,
    }
    labels, metadata = labels_for(rec, job.job_id, c.ctx.owner)
    common: dict[str, Any] = {
        "execution_type": rec.hardware_profile,
        "timeout": shape.timeout,
        "run_name": f"runctl {job.job_id} ({metadata['runctl:owner']})",
        "labels": labels,
        "metadata": metadata,
    }
    if shape.image:
        # image executions take no requirements_content: the bootstrap installs them with the image's pip
        config["requirements"] = requirements.splitlines() if requirements else []
        config["inline_files"] = {**bundle.binary, **{k: _b64(v) for k, v in bundle.text.items()}}
        code = bootstrap_code(config)
        if len(code) > IMAGE_CODE_LIMIT:
            why = " (jobs longer than 600 s run as image executions)" if shape.long_job else ""
            raise UsageError(
                f"the project is too large to pass to an image execution{why}: {len(code)} bytes, the limit is "
                f"{IMAGE_CODE_LIMIT}; nothing was started",
                "bake the code into the image (--image), shrink the project with .runctlignore, or keep --timeout "
                f"at {PYTHON_TIMEOUT_MAX} s or less",
            )
        return {
            "docker_image_ref": shape.image,
            "docker_run_cmd": ["python3", "-c", code],
            "docker_run_env": "PYTHONUNBUFFERED=1",
            "file_name": job.script,
            "enable_s3_mount": True,
            "s3_mount_path": c.settings.storage_mount,
            "graceful_timeout": math.ceil(c.settings.grace_period),
            **common,
        }
    files = dict(bundle.text)
    files[MARKER_FILE] = marker(job.job_id)
    if bundle.binary:
        files[BLOBS_FILE] = bundle.blobs_json()
    body: dict[str, Any] = {
        "code": bootstrap_code(config),
        "nbcode": 0,
        "file_name": BOOTSTRAP_NAME,
        "import_files": json.dumps(files, sort_keys=True),
        **common,
    }
    if requirements:
        body["requirements_content"] = requirements
    check_size(bundle, c.settings.max_request_bytes)
    return body


def _upload_resume(c: Context, job: JobSpec) -> int:
    if job.resume_dir is None:
        return 0
    files = [p for p in sorted(Path(job.resume_dir).rglob("*")) if p.is_file()]
    if not files:
        return 0
    storage = c.storage()
    prefix = c.storage_path(job.job_id)
    for path in files:
        storage.upload(path, f"{prefix}/{path.relative_to(job.resume_dir).as_posix()}")
    return len(files)


def train(c: Context, instance: Instance, job: JobSpec) -> JobStatus:
    c.require_key()
    rec = c.reservation(instance)
    if job.job_id in rec.executions:
        raise UsageError(f"job {job.job_id} already ran on {rec.id}", "start a new job")
    shape = execution_shape(c.settings, rec.image, job.timeout, rec.max_runtime)
    body = start_request(c, rec, job, shape)
    uploaded = _upload_resume(c, job)
    if uploaded:
        c.ctx.report(f"uploaded {uploaded} resume file(s) to Lyceum storage")
    if shape.long_job:
        c.ctx.report(
            f"--timeout {shape.timeout}s is over the {PYTHON_TIMEOUT_MAX}s limit of Lyceum's Python executions: "
            f"running as an image execution of {shape.image}"
        )
    elif shape.timeout == PYTHON_TIMEOUT_MAX and not job.timeout:
        c.ctx.report(f"Lyceum ends this execution after {shape.timeout}s (pass --timeout to run longer)")
    started = c.client.start_image(body) if shape.image else c.client.start_python(body)
    c.store.save_stream_url(started.execution_id, started.streaming_url)
    rec.executions[job.job_id] = ExecutionRef(
        execution_id=started.execution_id,
        job_id=job.job_id,
        script=job.script,
        submitted_at=now().isoformat(),
        storage_path=c.storage_path(job.job_id),
        timeout=shape.timeout,
        image=shape.image,
    )
    c.store.save(rec)
    return JobStatus(
        job_id=job.job_id, state=JobState.PENDING, message=f"Lyceum execution {started.execution_id} ({started.status})"
    )


def query(c: Context, ref: ExecutionRef) -> JobStatus:
    meta = logcache.LogCache(c.store.execution_dir(ref.execution_id)).meta()
    try:
        current = c.client.execution_status(ref.execution_id)
    except NotFoundError:
        return JobStatus(
            job_id=ref.job_id,
            state=JobState.LOST,
            ended_at=now(),
            message=f"Lyceum no longer knows execution {ref.execution_id}",
        )
    raw = current.status.lower()
    record = None
    if raw not in PENDING_STATES and raw != "running":
        try:
            record = c.client.execution(ref.execution_id)
        except NotFoundError:
            record = None
    return map_status(raw, ref, record, meta, current.errors)
