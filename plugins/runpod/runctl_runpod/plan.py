"""The dry run: every call a command would make, built from the same request builders as ``create``
(:func:`runctl_runpod.compute.deploy_request`, then the API's own body builder), so plan and reality cannot
drift. Needs no credentials and calls nothing."""

from __future__ import annotations

import os
from typing import Any

from runctl_core.models import PlannedCall, PlanRequest, ProviderContext
from runctl_runpod.compute import deploy_request, gpu_name, placement, settings
from runctl_runpod.offers import clouds_for
from runctl_runpod.settings import API_BASE_ENV, DEFAULT_API_BASE

KEY = "<public key of a key pair generated for this pod>"


def plan(ctx: ProviderContext, request: PlanRequest) -> list[PlannedCall]:
    s = settings(ctx)
    base = (s.api_url or os.environ.get(API_BASE_ENV) or DEFAULT_API_BASE).rstrip("/")
    rest = s.api == "rest"
    api = base if rest else f"{base}/graphql"
    remote, target = s.remote_dir, request.instance_id or "<pod>"
    calls: list[PlannedCall] = []

    def add(
        step: str, operation: str, params: dict[str, Any] | None = None, *, paid: bool = False, via: str | None = None
    ) -> None:
        calls.append(PlannedCall(step=step, api=via or api, operation=operation, params=params or {}, paid=paid))

    for step in request.steps:
        if step == "create" and request.instance is not None:
            spec = request.instance
            forced, name = gpu_name(spec)  # no --gpu/--instance-type: the usage error create would raise
            where = placement(s, spec)
            clouds = clouds_for(s, forced)
            dreq = deploy_request(
                s, spec, f"<id of {name!r}: cheapest in stock>", clouds[0], KEY, [where] if where else []
            )
            add(step, "GET /v2/pods" if rest else "myself.pods", {"find": f"RUNCTL_INTENT={spec.intent_id}"})
            add(step, "GET /v2/catalog/gpus" if rest else "gpuTypes", {"resolve": name})
            if where and rest and where.isupper() and "-" not in where:
                add(step, "GET /v2/catalog/datacenters", {"regions": where})
            stock = dreq.stock_filter().model_dump(exclude_none=True)
            if rest:
                add(
                    step,
                    "GET /v2/catalog/gpus",
                    {"include": "AVAILABILITY", "product": "POD", "cloud": clouds, **stock},
                )
                from runctl_runpod.rest import create_body

                try:
                    body: dict[str, Any] = create_body(dreq)
                except Exception as exc:  # the real create would refuse it the same way: show why
                    body = {"refused": getattr(exc, "message", str(exc))}
                add(step, "POST /v2/pods", {**body, "candidates": "in catalogue order; 400/403 -> next"}, paid=True)
            else:
                from runctl_runpod.graphql import deploy_input

                add(step, "gpuTypes.lowestPrice", {"clouds": clouds, **stock})
                params = deploy_input(dreq, None)
                params["cloudType"] = str(params["cloudType"])
                operation = "podFindAndDeployOnDemand"
                if spec.spot:
                    operation = "podRentInterruptable"
                    params["bidPerGpu"] = s.spot_bid or (
                        spec.max_price / spec.gpu_count if spec.max_price else "<minimumBidPrice>"
                    )
                add(step, operation, params, paid=True)
        elif step == "create":
            add(step, "POST /v2/pods" if rest else "podFindAndDeployOnDemand", paid=True)
        elif step == "wait":
            add(step, f"GET /v2/pods/{target}" if rest else "pod", {"podId": target})
            contact = "first contact: mkdir remote_dir and learn its absolute path"
            if request.instance is not None and request.instance.max_runtime:
                contact += "; install end_pod.py and start the max_runtime timer"
            add(step, contact, {"command": "sh", "user": s.ssh_user, "remote_dir": remote}, via="ssh")
        elif step == "sync":
            # the core's JobHost.sync: the diff against the manifest this laptop remembers (HostCache, nothing read
            # from the pod); the changed files, and runctl's tools on a new pod, travel with ONE command
            add(
                step,
                "runner.py apply-sync with the changed files (and runctl's tools on a new pod) sent in the same "
                "command; nothing changed since the last sync: no command",
                {
                    "command": "apply-sync",
                    "to": f"{remote}/project",
                    "files": request.project_files,
                    "bytes": request.project_bytes,
                    "diff_against": "the manifest of the last sync, kept on this machine (HostCache)",
                },
                via="ssh",
            )
        elif step == "train" and request.job is not None:
            job = request.job
            add(
                step,
                "runner.py launch (pending record, environment step, supervisor)",
                {
                    "command": "launch",
                    "job_dir": f"{remote}/jobs/{job.job_id}",
                    "script": job.script,
                    "args": job.args,
                    "timeout": job.timeout,
                    "uv": s.use_uv,
                    "setup": job.setup,
                    "python": job.python,
                },
                via="ssh",
            )
        elif step == "collect":
            add(step, "download checkpoints", {"from": f"{remote}/jobs/<job>/checkpoints"}, via="ssh")
        elif step == "terminate":
            add(step, f"DELETE /v2/pods/{target}" if rest else "podTerminate", {"podId": target})
        else:
            add(step, step)
    return calls
