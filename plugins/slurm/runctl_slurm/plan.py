"""``--dry-run``: the calls the Slurm provider would make, with their arguments (no call is made)."""

from __future__ import annotations

from runctl_core.models import PlannedCall, PlanRequest, ProviderContext
from runctl_slurm.slurm import gres_options, time_limit
from runctl_slurm.state import settings_of


def planned_calls(ctx: ProviderContext, request: PlanRequest) -> list[PlannedCall]:
    settings = settings_of(ctx)
    where = f"ssh {settings.host}" if settings.host else "local"
    calls = []
    spec = request.instance
    options = gres_options(spec.gpu, spec.gpu_count, settings.gres_map, settings.partition) if spec else []
    if spec and spec.max_runtime:
        options.append(f"--time={time_limit(spec.max_runtime)}")
    for step in request.steps:
        if step == "create":
            calls.append(
                PlannedCall(
                    step=step,
                    api=where,
                    operation="check sbatch/partition/workdir (no allocation)",
                    params={"workdir": settings.workdir},
                )
            )
        elif step == "sync":
            calls.append(
                PlannedCall(
                    step=step,
                    api=where,
                    operation="tar upload",
                    params={"files": request.project_files, "bytes": request.project_bytes},
                )
            )
        elif step == "train" and request.job is not None:
            calls.append(
                PlannedCall(
                    step=step,
                    api=where,
                    operation="sbatch --parsable",
                    paid=True,
                    params={
                        "nodes": request.job.nodes,
                        "options": options,
                        "script": request.job.script,
                        "args": request.job.args,
                    },
                )
            )
        elif step == "terminate":
            calls.append(PlannedCall(step=step, api=where, operation="scancel (the instance's jobs)"))
        else:
            calls.append(PlannedCall(step=step, api=where, operation=step))
    return calls
