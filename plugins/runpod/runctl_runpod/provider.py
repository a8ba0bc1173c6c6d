"""Hook implementations of the RunPod provider: wiring only.

Pods are created, watched and terminated through RunPod's API (:mod:`runctl_runpod.compute`, behind the
:class:`runctl_runpod.client.RunpodApi` seam: REST v2 by default, GraphQL when asked); prices and capabilities
come from :mod:`runctl_runpod.offers`; code, jobs, logs and checkpoints move over SSH
(:mod:`runctl_runpod.jobs`, :mod:`runctl_runpod.outputs`, :mod:`runctl_runpod.transport`); the dry run is
:mod:`runctl_runpod.plan`.
"""

from __future__ import annotations

import os
from pathlib import Path

from runctl_core.errors import AuthError, CredentialsError, RunctlError
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
    PortForward,
    PriceQuery,
    Project,
    ProviderContext,
    ShellCommand,
    StatusReport,
    SyncResult,
)
from runctl_runpod import compute, jobs, offers, outputs
from runctl_runpod.client import KEY_HINT
from runctl_runpod.compute import INIT_SCRIPT as INIT_SCRIPT
from runctl_runpod.offers import match_gpus as match_gpus
from runctl_runpod.settings import API_KEY_ENV, GRAPHQL_DEPRECATION, RunpodSettings
from runctl_runpod.transport import cached, generate_key_pair

_warned: set[int] = set()


def _settings(ctx: ProviderContext) -> RunpodSettings:
    s = compute.settings(ctx)
    if s.api == "graphql" and id(ctx) not in _warned:  # one line per command
        _warned.add(id(ctx))
        ctx.warn(GRAPHQL_DEPRECATION)
    return s


class RunpodProvider:
    """RunPod GPU pods: REST v2 (or GraphQL) for the pod's life, SSH for code, jobs, logs and checkpoints."""

    @hookimpl
    def settings_schema(self) -> type[RunpodSettings]:
        return RunpodSettings

    @hookimpl
    def capabilities(self, ctx: ProviderContext) -> Capabilities:
        s = _settings(ctx)
        from runctl_runpod.rest import SPOT_REASON

        return offers.capabilities(s, SPOT_REASON if s.api == "rest" else "")

    @hookimpl
    def check_credentials(self, ctx: ProviderContext, probe: bool) -> CredentialStatus:
        if not os.environ.get(API_KEY_ENV):
            return CredentialStatus(found=False, message=f"{API_KEY_ENV} is not set", hint=KEY_HINT)
        source = f"environment {API_KEY_ENV}"
        if not probe:
            return CredentialStatus(found=True, source=source)
        try:
            identity = compute.client(ctx).identity()
        except AuthError as exc:
            return CredentialStatus(found=True, accepted=False, source=source, message=exc.message, hint=KEY_HINT)
        return CredentialStatus(
            found=True, accepted=True, source=source, message="accepted by the RunPod API", identity=identity
        )

    @hookimpl
    def price(self, ctx: ProviderContext, query: PriceQuery) -> list[Offer]:
        s = _settings(ctx)
        if not os.environ.get(API_KEY_ENV):
            raise CredentialsError(f"RunPod's prices need an API key: {API_KEY_ENV} is not set", KEY_HINT)
        api = compute.client(ctx)
        where = compute.data_center_ids(api, query.region or compute.settings(ctx).data_center_id)
        stock = compute.deploy_request(
            s, InstanceSpec(intent_id="price", owner="-", gpu_count=query.gpu_count or 1), "", s.cloud_type, "", where
        ).stock_filter()
        return offers.price(api, query, stock)

    @hookimpl
    def create(self, ctx: ProviderContext, spec: InstanceSpec) -> Instance:
        _settings(ctx)
        key_path = ctx.state_dir / "keys" / f"{spec.intent_id}.key"
        if not os.environ.get(API_KEY_ENV):
            raise CredentialsError(f"{API_KEY_ENV} is not set", KEY_HINT)  # before anything is made
        public_key = generate_key_pair(key_path, comment=f"runctl-{spec.intent_id}")
        try:
            instance = compute.create(ctx, spec, public_key, key_path)
        except RunctlError:  # nothing was created: the key pair is of no use
            key_path.unlink(missing_ok=True)
            raise
        jobs.host_cache(ctx, instance.id).mark_new()  # nothing synced yet: the first sync reads nothing
        return instance

    @hookimpl
    def ready(self, ctx: ProviderContext, instance: Instance) -> Instance:
        return jobs.ready(ctx, instance)

    @hookimpl
    def status(self, ctx: ProviderContext, instance: Instance, job: JobStatus | None) -> StatusReport:
        return jobs.status(ctx, instance, job)

    @hookimpl
    def terminate(self, ctx: ProviderContext, instance: Instance) -> Instance:
        outputs.save_before_terminate(ctx, instance)
        access = cached(ctx, instance)
        final = compute.terminate(ctx, instance)
        jobs.host_cache(ctx, instance.id).clear()
        if access is not None:
            access.ssh.close()
        return final

    @hookimpl
    def list_instances(self, ctx: ProviderContext) -> list[Instance]:
        return compute.list_instances(ctx)

    @hookimpl
    def sync(self, ctx: ProviderContext, instance: Instance, project: Project) -> SyncResult:
        return jobs.sync(ctx, instance, project)

    @hookimpl
    def train(self, ctx: ProviderContext, instance: Instance, job: JobSpec) -> JobStatus:
        return jobs.train(ctx, instance, job)

    @hookimpl
    def logs(self, ctx: ProviderContext, instance: Instance, job: JobStatus, offset: int) -> LogChunk:
        return outputs.logs(ctx, instance, job, offset)

    @hookimpl
    def cancel(self, ctx: ProviderContext, instance: Instance, job: JobStatus) -> JobStatus:
        return outputs.cancel(ctx, instance, job)

    @hookimpl
    def list_checkpoints(self, ctx: ProviderContext, instance: Instance, job: JobStatus) -> list[Checkpoint]:
        return outputs.list_checkpoints(ctx, instance, job)

    @hookimpl
    def collect(self, ctx: ProviderContext, instance: Instance, job: JobStatus, dest: Path) -> Collected:
        return outputs.collect(ctx, instance, job, dest)

    @hookimpl
    def shell(
        self,
        ctx: ProviderContext,
        instance: Instance,
        job: JobStatus | None,
        command: list[str],
        ports: list[PortForward],
    ) -> ShellCommand:
        from runctl_runpod.transport import shell_command

        pod = compute.client(ctx).get_pod(instance.id)
        return shell_command(ctx, instance, pod, job.job_id if job else None, command, ports)

    @hookimpl
    def plan(self, ctx: ProviderContext, request: PlanRequest) -> list[PlannedCall]:
        from runctl_runpod.plan import plan

        return plan(ctx, request)
