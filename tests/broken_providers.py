"""The local provider broken on purpose, one way each: the conformance kit must catch every one.

Each class overrides one hook of the real local provider to leak or lie as a careless provider would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runctl_core.errors import NotFoundError
from runctl_core.hookspecs import hookimpl
from runctl_core.models import Instance, InstanceState, JobSpec, JobState, JobStatus, StatusReport, SyncResult
from runctl_local.provider import LocalProvider
from runctl_local.sandbox import Sandbox


def _gone(ctx: Any, instance: Instance) -> bool:
    sandbox = Sandbox(ctx.state_dir, instance.id)
    return not sandbox.exists() or sandbox.read().state is InstanceState.TERMINATED


class TerminateRaisesWhenGone(LocalProvider):
    @hookimpl
    def terminate(self, ctx: Any, instance: Instance) -> Instance:
        if _gone(ctx, instance):
            raise NotFoundError(f"instance {instance.id} not found")
        return super().terminate(ctx, instance)


class ListsUntagged(LocalProvider):
    @hookimpl
    def list_instances(self, ctx: Any) -> list[Instance]:
        foreign = Instance(id="vm-not-runctls", provider="local", state=InstanceState.RUNNING, tags={})
        return [*super().list_instances(ctx), foreign]


class TerminateLeavesJobs(LocalProvider):
    @hookimpl
    def terminate(self, ctx: Any, instance: Instance) -> Instance:
        sandbox = Sandbox(ctx.state_dir, instance.id)
        if sandbox.exists():
            sandbox.write(sandbox.read().model_copy(update={"state": InstanceState.TERMINATED}))
        return instance.model_copy(update={"state": InstanceState.TERMINATED})


class CancelLies(LocalProvider):
    @hookimpl
    def cancel(self, ctx: Any, instance: Instance, job: JobStatus) -> JobStatus:
        return job.model_copy(update={"state": JobState.CANCELLED})


class TrainRaisesForeign(LocalProvider):
    @hookimpl
    def train(self, ctx: Any, instance: Instance, job: JobSpec) -> JobStatus:
        if _gone(ctx, instance):
            raise KeyError("sandbox")
        return super().train(ctx, instance, job)


class CreateLeaksExtra(LocalProvider):
    @hookimpl
    def create(self, ctx: Any, spec: Any) -> Instance:
        first = super().create(ctx, spec)
        super().create(ctx, spec)  # e.g. a retried create without an idempotency key
        return first


class IgnoresTimeout(LocalProvider):
    @hookimpl
    def train(self, ctx: Any, instance: Instance, job: JobSpec) -> JobStatus:
        return super().train(ctx, instance, job.model_copy(update={"timeout": None}))


class SyncLies(LocalProvider):
    def __init__(self) -> None:
        self.synced: set[str] = set()

    @hookimpl
    def sync(self, ctx: Any, instance: Instance, project: Any) -> SyncResult:
        if instance.id not in self.synced:
            self.synced.add(instance.id)
            return super().sync(ctx, instance, project)
        return SyncResult(remote_path="/nowhere", files_total=len(project.files), files_sent=1, bytes_sent=6)


class LogsCompleteEarly(LocalProvider):
    @hookimpl
    def logs(self, ctx: Any, instance: Instance, job: JobStatus, offset: int) -> Any:
        return super().logs(ctx, instance, job, offset).model_copy(update={"complete": True})


class VanishedJobRunning(LocalProvider):
    @hookimpl
    def status(self, ctx: Any, instance: Instance, job: JobStatus | None) -> StatusReport:
        report = super().status(ctx, instance, job)
        if job is not None and not Path(Sandbox(ctx.state_dir, instance.id).job_dir(job.job_id)).is_dir():
            return report.model_copy(update={"job": job})  # "still running", as last seen
        return report


class MissingTags(LocalProvider):
    @hookimpl
    def list_instances(self, ctx: Any) -> list[Instance]:
        dropped = ("runctl:intent", "runctl:created")
        return [
            i.model_copy(update={"tags": {k: v for k, v in i.tags.items() if k not in dropped}})
            for i in super().list_instances(ctx)
        ]


class LostAfterTrain(LocalProvider):
    def __init__(self) -> None:
        self.seen: set[str] = set()

    @hookimpl
    def status(self, ctx: Any, instance: Instance, job: JobStatus | None) -> StatusReport:
        report = super().status(ctx, instance, job)
        if job is not None and job.job_id not in self.seen and report.job is not None:
            self.seen.add(job.job_id)  # the first look, before the supervisor is identifiable: "lost"
            return report.model_copy(update={"job": report.job.model_copy(update={"state": JobState.LOST})})
        return report


# breakage -> (provider class, the kit test that must catch it, the contract it must name)
BREAKAGES: dict[str, tuple[type[LocalProvider], str, str]] = {
    "terminate raises NotFoundError when gone": (
        TerminateRaisesWhenGone,
        "test_terminate_is_idempotent",
        "terminate-idempotent",
    ),
    "list_instances includes untagged instances": (
        ListsUntagged,
        "test_list_instances_lists_only_runctl_instances",
        "list-only-runctl",
    ),
    "terminate leaves jobs running": (TerminateLeavesJobs, "test_terminate_stops_its_jobs", "terminate-stops-jobs"),
    "cancel reports cancelled without killing": (CancelLies, "test_cancel_stops_the_job", "cancel-stops-job"),
    "train raises a foreign exception": (TrainRaisesForeign, "test_errors_are_runctl_errors", "runctl-errors"),
    "create leaks an extra tagged instance": (
        CreateLeaksExtra,
        "test_create_makes_exactly_one_tagged_instance",
        "one-instance-per-create",
    ),
    "the job timeout is ignored": (IgnoresTimeout, "test_timeout_is_enforced", "timeout"),
    "sync reports files it did not send": (SyncLies, "test_synced_files_are_on_the_instance", "sync-delivers"),
    "logs say complete while running": (
        LogsCompleteEarly,
        "test_logs_are_not_complete_while_running",
        "logs-complete",
    ),
    "a vanished job is reported running": (VanishedJobRunning, "test_vanished_job_is_not_running", "vanished-job"),
    "runctl:intent / runctl:created tags missing": (
        MissingTags,
        "test_create_makes_exactly_one_tagged_instance",
        "tags",
    ),
    "pending -> lost race after train": (LostAfterTrain, "test_not_lost_right_after_train", "not-lost-after-train"),
}
