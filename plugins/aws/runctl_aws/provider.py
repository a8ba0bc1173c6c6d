"""The AWS provider's hook implementations: EC2 (on-demand and spot) driven through SSM, staged through S3.

Only wiring: each hook delegates to the module that does the work (dstack's ``backends/<name>/`` file set):

* :mod:`runctl_aws.compute` - create (spot, fallback, quotas), ready, status, terminate, list;
* :mod:`runctl_aws.jobs` - stage, sync, train, cancel, logs, checkpoints, collect: the core's remote-job layer
  (``JobHost``) over SSM + S3 (:mod:`runctl_aws.transport`), with checkpoints and logs kept in S3;
* :mod:`runctl_aws.offers` - one GPU/instance-type resolution, images, price, capabilities;
* :mod:`runctl_aws.plan` - the dry run, from the same request builders as create (:mod:`runctl_aws.launch`);
* :mod:`runctl_aws.client` - every AWS call, typed, with one retry policy; :mod:`runctl_aws.settings`.

No ssh, no aws CLI, no fixed sleeps: the instance is reached only through SSM ``AWS-RunShellScript`` commands,
code and checkpoints travel through S3 (the instance uses presigned URLs and needs no S3 rights), and every
instance ends itself (``InstanceInitiatedShutdownBehavior=terminate`` plus a ``shutdown -h +N`` timer).

Each hook imports its module when called, so a dry run or ``price`` loads neither the SSM/S3 job layer nor boto3.
"""

from __future__ import annotations

from pathlib import Path

from runctl_aws.settings import AwsSettings
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


class AwsProvider:
    """runctl's AWS provider (entry point ``aws`` in ``runctl.providers``)."""

    @hookimpl
    def settings_schema(self) -> type[AwsSettings]:
        return AwsSettings

    @hookimpl
    def capabilities(self, ctx: ProviderContext) -> Capabilities:
        from runctl_aws import offers

        return offers.capabilities(ctx)

    @hookimpl
    def check_credentials(self, ctx: ProviderContext, probe: bool) -> CredentialStatus:
        from runctl_aws import compute

        return compute.check_credentials(ctx, probe)

    @hookimpl
    def price(self, ctx: ProviderContext, query: PriceQuery) -> list[Offer]:
        from runctl_aws import offers

        return offers.price(ctx, query)

    @hookimpl
    def plan(self, ctx: ProviderContext, request: PlanRequest) -> list[PlannedCall]:
        from runctl_aws import plan

        return plan.plan(ctx, request)

    @hookimpl
    def shell(
        self,
        ctx: ProviderContext,
        instance: Instance,
        job: JobStatus | None,
        command: list[str],
        ports: list[PortForward],
    ) -> ShellCommand:
        from runctl_aws import shell

        return shell.shell(ctx, instance, job, command, ports)

    @hookimpl
    def create(self, ctx: ProviderContext, spec: InstanceSpec) -> Instance:
        from runctl_aws import compute

        return compute.create(ctx, spec)

    @hookimpl
    def ready(self, ctx: ProviderContext, instance: Instance) -> Instance:
        from runctl_aws import compute

        return compute.ready(ctx, instance)

    @hookimpl
    def status(self, ctx: ProviderContext, instance: Instance, job: JobStatus | None) -> StatusReport:
        from runctl_aws import compute

        return compute.status(ctx, instance, job)

    @hookimpl
    def terminate(self, ctx: ProviderContext, instance: Instance) -> Instance:
        from runctl_aws import compute

        return compute.terminate(ctx, instance)

    @hookimpl
    def list_instances(self, ctx: ProviderContext) -> list[Instance]:
        from runctl_aws import compute

        return compute.list_instances(ctx)

    @hookimpl
    def stage(self, ctx: ProviderContext, instance: Instance, project: Project) -> None:
        from runctl_aws import jobs

        jobs.stage(ctx, instance, project)

    @hookimpl
    def sync(self, ctx: ProviderContext, instance: Instance, project: Project) -> SyncResult:
        from runctl_aws import jobs

        return jobs.sync(ctx, instance, project)

    @hookimpl
    def train(self, ctx: ProviderContext, instance: Instance, job: JobSpec) -> JobStatus:
        from runctl_aws import jobs

        return jobs.train(ctx, instance, job)

    @hookimpl
    def cancel(self, ctx: ProviderContext, instance: Instance, job: JobStatus) -> JobStatus:
        from runctl_aws import jobs

        return jobs.cancel(ctx, instance, job)

    @hookimpl
    def logs(self, ctx: ProviderContext, instance: Instance, job: JobStatus, offset: int, rank: int = 0) -> LogChunk:
        from runctl_aws import jobs

        return jobs.logs(ctx, instance, job, offset, rank)

    @hookimpl
    def list_checkpoints(self, ctx: ProviderContext, instance: Instance, job: JobStatus) -> list[Checkpoint]:
        from runctl_aws import jobs

        return jobs.list_checkpoints(ctx, instance, job)

    @hookimpl
    def collect(self, ctx: ProviderContext, instance: Instance, job: JobStatus, dest: Path) -> Collected:
        from runctl_aws import jobs

        return jobs.collect(ctx, instance, job, dest)
