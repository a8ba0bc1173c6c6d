"""The dry run: every call a command would make at Lyceum, built from the same decisions as the real calls
(``jobs.execution_shape`` picks the execution kind and timeout for both), with no key and no network."""

from __future__ import annotations

from typing import Any

from runctl_core.models import PlannedCall, PlanRequest, ProviderContext
from runctl_lyceum.jobs import execution_shape
from runctl_lyceum.packaging import BOOTSTRAP_NAME
from runctl_lyceum.settings import PYTHON_TIMEOUT_MAX, LyceumSettings


def plan(ctx: ProviderContext, request: PlanRequest) -> list[PlannedCall]:
    settings = LyceumSettings.model_validate(ctx.settings)
    api = settings.resolved_base_url()
    spec = request.instance
    profile = (
        spec.instance_type or (f"<cheapest profile with a {spec.gpu}>" if spec.gpu else None) if spec else None
    ) or settings.default_instance_type
    image = spec.image if spec else None
    job = request.job
    calls: list[PlannedCall] = []
    for step in request.steps:
        if step == "create":
            calls.append(PlannedCall(step=step, api=api, operation="GET /machine-types", params={"validate": profile}))
            calls.append(
                PlannedCall(
                    step=step,
                    api="local",
                    operation="record reservation lyc-<id>",
                    params={"hardware_profile": profile, "billed": "only while executions run"},
                )
            )
        elif step == "sync":
            calls.append(
                PlannedCall(
                    step=step,
                    api="local",
                    operation="stage project for import_files",
                    params={
                        "files": request.project_files,
                        "bytes": request.project_bytes,
                        "limit_bytes": settings.max_request_bytes,
                    },
                )
            )
        elif step == "train" and job is not None:
            shape = execution_shape(settings, image, job.timeout, spec.max_runtime if spec else None)
            timeout = shape.timeout
            if job.resume_dir:
                calls.append(PlannedCall(step=step, api=api, operation="POST /storage/credentials"))
                calls.append(
                    PlannedCall(
                        step=step,
                        api="s3",
                        operation="PutObject",
                        params={"from": str(job.resume_dir), "to": f"{settings.storage_prefix}/{job.job_id}/"},
                    )
                )
            params: dict[str, Any] = {
                "execution_type": profile,
                "timeout": timeout,
                "script": job.script,
                "args": job.args,
                "run_name": f"runctl {job.job_id}",
                "labels": ["runctl", f"runctl:job={job.job_id}"],
                "checkpoint_dir": f"{settings.storage_mount}/{settings.storage_prefix}/{job.job_id} (mirrored)",
            }
            if shape.image:
                if shape.long_job:
                    params["why_image"] = f"--timeout over the {PYTHON_TIMEOUT_MAX}s limit of Python executions"
                calls.append(
                    PlannedCall(
                        step=step,
                        api=api,
                        operation="POST /execution/image/start",
                        params={"docker_image_ref": shape.image, **params},
                        paid=True,
                    )
                )
            else:
                calls.append(
                    PlannedCall(
                        step=step,
                        api=api,
                        operation="POST /execution/streaming/start",
                        params={"file_name": BOOTSTRAP_NAME, "import_files": "<project files>", **params},
                        paid=True,
                    )
                )
        elif step == "wait":
            calls.append(PlannedCall(step=step, api=api, operation="GET /execution/streaming/{id}/status"))
            calls.append(PlannedCall(step=step, api=api, operation="POST {streaming_url} (server-sent events)"))
        elif step == "collect":
            calls.append(PlannedCall(step=step, api=api, operation="POST /storage/credentials"))
            calls.append(
                PlannedCall(
                    step=step,
                    api="s3",
                    operation="ListObjectsV2 + GetObject",
                    params={"prefix": f"{settings.storage_prefix}/{job.job_id if job else '<job>'}/"},
                )
            )
        elif step == "terminate":
            calls.append(
                PlannedCall(
                    step=step,
                    api=api,
                    operation="POST /workloads/abort/{id}",
                    params={"then_if_refused": "POST /workloads/stop/{id}"},
                )
            )
        else:
            calls.append(PlannedCall(step=step, api=api, operation=step))
    return calls
