"""runctl's hooks for Lyceum Cloud: wiring only; the work is in compute.py, jobs.py, results.py, offers.py, plan.py.

Lyceum runs code as *executions* (one script, one hardware profile, billed per second while it runs), not as
machines that stay up. runctl's model maps onto that as follows (README.md explains it for users):

* **instance** = a *reservation* of a hardware profile (``lyc-<12 hex>``), validated against ``GET /machine-types``
  and kept in ``ctx.state_dir``. Creating it calls nothing paid; it is ``running`` at once and costs nothing.
* **sync** stages the filtered project locally (manifest of hashes); its files travel in every execution request
  (``import_files``). Projects over the request size limit are refused with what to do.
* **train** = ``POST /execution/streaming/start`` (a Python execution, at most 600 s) or
  ``/execution/image/start`` (``--image``, or a job whose ``--timeout`` is longer): the code is runctl's bootstrap,
  which finds the project by its marker file, runs the script with ``RUNCTL_JOB_ID``/``RUNCTL_CHECKPOINT_DIR`` set
  and mirrors the checkpoint dir into the storage bucket mounted in the execution (failing the job loudly when no
  storage is mounted and checkpoints were written).
* **status** = ``GET /execution/streaming/{id}/status`` (+ ``GET /execution/{id}`` for the return code once ended).
* **logs** = the execution's event stream, cached per execution; ``GET /logs/execution/{id}`` as fallback.
* **terminate/cancel** = ``POST /workloads/abort/{id}`` (then ``/workloads/stop/{id}`` if abort is refused).
* **collect/list_checkpoints** = the bucket via ``POST /storage/credentials`` + boto3.
"""

from __future__ import annotations

from pathlib import Path

from runctl_core.errors import CredentialsError, ProviderError, TransientError
from runctl_core.hookspecs import hookimpl
from runctl_core.models import (
    Capabilities,
    Checkpoint,
    Collected,
    CredentialStatus,
    Instance,
    InstanceSpec,
    JobSpec,
    JobStatus,
    LogChunk,
    Offer,
    PlannedCall,
    PlanRequest,
    PriceQuery,
    Project,
    ProviderContext,
    StatusReport,
    SyncResult,
)
from runctl_lyceum import compute, jobs, offers, plan, results
from runctl_lyceum.auth import KEY_HINT, LOGIN_HINT
from runctl_lyceum.compute import Context
from runctl_lyceum.jobs import map_status
from runctl_lyceum.settings import LyceumSettings


class LyceumProvider:
    """Runs training scripts as Lyceum executions. See the module docstring and README.md."""

    @hookimpl
    def settings_schema(self) -> type[LyceumSettings]:
        return LyceumSettings

    @hookimpl
    def capabilities(self, ctx: ProviderContext) -> Capabilities:
        return offers.capabilities(LyceumSettings.model_validate(ctx.settings))

    @hookimpl
    def check_credentials(self, ctx: ProviderContext, probe: bool) -> CredentialStatus:
        c = Context(ctx)
        creds = c.credentials
        if creds.api_key is None:
            return CredentialStatus(found=False, message=creds.problem, hint=KEY_HINT)
        if creds.expired and creds.refresh_token is None:  # an expired CLI login that cannot be renewed
            return CredentialStatus(found=False, source=creds.source, message=creds.problem, hint=LOGIN_HINT)
        if not probe:
            return CredentialStatus(found=True, source=creds.source, message=creds.problem)
        try:
            identity = c.client.whoami()
        except (CredentialsError, ProviderError) as exc:
            if isinstance(exc, TransientError):
                raise
            return CredentialStatus(
                found=True,
                accepted=False,
                source=creds.source,
                message=f"refused by Lyceum: {exc.message}",
                hint=exc.hint if isinstance(exc, CredentialsError) else KEY_HINT,
            )
        return CredentialStatus(
            found=True, accepted=True, source=creds.source, identity=identity, message="accepted by Lyceum"
        )

    @hookimpl
    def price(self, ctx: ProviderContext, query: PriceQuery) -> list[Offer]:
        return offers.price(Context(ctx), query)

    @hookimpl
    def create(self, ctx: ProviderContext, spec: InstanceSpec) -> Instance:
        return compute.create(Context(ctx), spec)

    @hookimpl
    def ready(self, ctx: ProviderContext, instance: Instance) -> Instance:
        return results.status(Context(ctx), instance, None).instance

    @hookimpl
    def list_instances(self, ctx: ProviderContext) -> list[Instance]:
        return compute.list_instances(Context(ctx))

    @hookimpl
    def terminate(self, ctx: ProviderContext, instance: Instance) -> Instance:
        return compute.terminate(Context(ctx), instance)

    @hookimpl
    def sync(self, ctx: ProviderContext, instance: Instance, project: Project) -> SyncResult:
        return jobs.sync(Context(ctx), instance, project)

    @hookimpl
    def train(self, ctx: ProviderContext, instance: Instance, job: JobSpec) -> JobStatus:
        return jobs.train(Context(ctx), instance, job)

    @hookimpl
    def status(self, ctx: ProviderContext, instance: Instance, job: JobStatus | None) -> StatusReport:
        return results.status(Context(ctx), instance, job)

    @hookimpl
    def cancel(self, ctx: ProviderContext, instance: Instance, job: JobStatus) -> JobStatus:
        return results.cancel(Context(ctx), instance, job)

    @hookimpl
    def logs(self, ctx: ProviderContext, instance: Instance, job: JobStatus, offset: int) -> LogChunk:
        return results.logs(Context(ctx), instance, job, offset)

    @hookimpl
    def list_checkpoints(self, ctx: ProviderContext, instance: Instance, job: JobStatus) -> list[Checkpoint]:
        return results.list_checkpoints(Context(ctx), instance, job)

    @hookimpl
    def collect(self, ctx: ProviderContext, instance: Instance, job: JobStatus, dest: Path) -> Collected:
        return results.collect(Context(ctx), instance, job, dest)

    @hookimpl
    def plan(self, ctx: ProviderContext, request: PlanRequest) -> list[PlannedCall]:
        return plan.plan(ctx, request)


__all__ = ["LyceumProvider", "map_status"]
