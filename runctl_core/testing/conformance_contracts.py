"""The contract tests of the conformance suite: each failure names the broken contract (see contracts.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

import pytest

from runctl_core.errors import RunctlError
from runctl_core.files import scan_project
from runctl_core.models import Instance, InstanceState, JobSpec, JobState, JobStatus
from runctl_core.plugins import Provider
from runctl_core.testing.conformance_base import OWNER, ConformanceBase, _ghost_id
from runctl_core.testing.contracts import (
    ProcessFinder,
    broken,
    call,
    hook_exception,
    read_all_logs,
    tagged_alive,
    wait_for,
)


class ContractTests(ConformanceBase):
    """The contracts whose breaking leaks money or lies about state."""

    # -------------------------------------------------------------------------------- contracts

    def test_create_makes_exactly_one_tagged_instance(self, provider: Provider) -> None:
        before = tagged_alive(provider.list_instances(), OWNER)
        spec = self._spec()
        created = provider.create(spec)
        try:
            listed = provider.list_instances()
            if listed is None:
                pytest.skip("provider has no list_instances hook")
            new = tagged_alive(listed, OWNER) - before
            if new != {created.id}:
                broken("one-instance-per-create", f"one create call left {sorted(new)} alive (returned {created.id})")
            tags = next(i for i in listed if i.id == created.id).tags
            wanted = (("runctl:owner", OWNER), ("runctl:intent", spec.intent_id), ("runctl:job", spec.job_id))
            for key, expected in wanted:
                if tags.get(key) != expected:
                    broken("tags", f"{created.id} has {key}={tags.get(key)!r}, expected {expected!r}")
            try:
                datetime.fromisoformat(str(tags.get("runctl:created")).replace("Z", "+00:00"))
            except ValueError:
                broken("tags", f"{created.id} has runctl:created={tags.get('runctl:created')!r}, not an ISO time")
        finally:
            provider.terminate(created)

    def test_list_instances_lists_only_runctl_instances(self, provider: Provider) -> None:
        created = provider.create(self._spec())
        try:
            listed = provider.list_instances()
            if listed is None:
                pytest.skip("provider has no list_instances hook")
            foreign = [i.id for i in listed if not i.tags.get("runctl:owner")]
            if foreign:
                broken("list-only-runctl", f"it listed {foreign}, which have no runctl:owner tag")
        finally:
            provider.terminate(created)

    def test_terminate_is_idempotent(self, provider: Provider) -> None:
        created = provider.create(self._spec())
        try:
            first = call("terminate-idempotent", "terminate", lambda: provider.raw("terminate", instance=created))
            assert first.state in (InstanceState.TERMINATED, InstanceState.STOPPING)
            second = call(
                "terminate-idempotent", "a second terminate", lambda: provider.raw("terminate", instance=created)
            )
            if second.state not in (InstanceState.TERMINATED, InstanceState.STOPPING):
                broken("terminate-idempotent", f"a second terminate answered {second.state.value}")
            report = self._wait(
                lambda: provider.status(created, None), lambda r: r.instance.state is InstanceState.TERMINATED
            )
            assert not report.instance.state.alive
        finally:
            provider.terminate(created)

    def test_unknown_instance_is_terminated_not_an_error(self, provider: Provider) -> None:
        created = provider.create(self._spec())
        provider.terminate(created)
        ghost = created.model_copy(update={"id": _ghost_id(created.id)})
        report = call(
            "terminate-idempotent",
            "status of an unknown instance",
            lambda: provider.raw("status", instance=ghost, job=None),
        )
        assert report.instance.state is InstanceState.TERMINATED
        final = call(
            "terminate-idempotent",
            "terminate of an unknown instance",
            lambda: provider.raw("terminate", instance=ghost),
        )
        assert final.state is InstanceState.TERMINATED

    def test_terminate_stops_its_jobs(
        self, provider: Provider, project: Path, observed_processes: ProcessFinder | None
    ) -> None:
        created = provider.create(self._spec())
        try:
            instance = self._wait(lambda: provider.ready(created), lambda i: i.state is not InstanceState.PENDING)
            status = self._start(provider, instance, project, "tick", "600")
            self._running(provider, instance, status)
            provider.terminate(instance)
            report = wait_for(
                lambda: provider.status(instance, status),
                lambda r: r.job is None or r.job.state.terminal,
                self.wait_timeout,
            )
            if report is None:
                broken("terminate-stops-jobs", f"job {status.job_id} is still reported running after terminate")
            self._check_stopped("terminate-stops-jobs", provider, report.instance, status, observed_processes)
        finally:
            provider.terminate(created)

    def test_cancel_stops_the_job(
        self, provider: Provider, instance: Instance, project: Path, observed_processes: ProcessFinder | None
    ) -> None:
        status = self._start(provider, instance, project, "tick", "600")
        self._running(provider, instance, status)
        stopped = provider.cancel(instance, status)
        if stopped is None:
            pytest.skip("provider has no cancel hook (terminate_stops_its_jobs covers it)")
        final = wait_for(lambda: self._job(provider, instance, status), lambda s: s.state.terminal, self.wait_timeout)
        if final is None:
            broken("cancel-stops-job", f"cancel answered {stopped.state.value} but status still says running")
        if final.state not in (JobState.CANCELLED, JobState.LOST, JobState.FAILED):
            broken("cancel-stops-job", f"a cancelled job ended {final.state.value}")
        self._check_stopped("cancel-stops-job", provider, instance, status, observed_processes)

    def test_timeout_is_enforced(self, provider: Provider, instance: Instance, project: Path) -> None:
        status = self._start(provider, instance, project, "sleep", "600", timeout=self.job_timeout)
        final = wait_for(
            lambda: self._job(provider, instance, status),
            lambda s: s.state.terminal,
            self.job_timeout + self.wait_timeout,
        )
        if final is None:
            broken("timeout", f"job {status.job_id} still runs long after its {self.job_timeout}s timeout")
        if final.state is JobState.SUCCEEDED:
            broken("timeout", f"a 600 s job with a {self.job_timeout}s timeout succeeded")

    def test_synced_files_are_on_the_instance(self, provider: Provider, instance: Instance, project: Path) -> None:
        for content in ("1 2 3\n", "4 5 6\n"):
            (project / "data" / "numbers.txt").write_text(content)
            result = provider.sync(instance, scan_project(project))
            status = self._start(provider, instance, project, "show", "data/numbers.txt", sync=False)
            final = self._finish(provider, instance, status)
            text = read_all_logs(provider, instance, final)
            if provider.has("logs") and f"file data/numbers.txt {content!r}" not in text:
                broken("sync-delivers", f"sync reported {result.files_sent} sent, the job read: {text[-300:]!r}")

    def test_logs_are_not_complete_while_running(self, provider: Provider, instance: Instance, project: Path) -> None:
        status = self._start(provider, instance, project, "tick", "600")
        running = self._running(provider, instance, status)
        chunk = provider.logs(instance, running, 0)
        if chunk is None:
            pytest.skip("provider has no logs hook")
        if chunk.complete:
            broken("logs-complete", f"logs said complete while job {status.job_id} is running")
        provider.cancel(instance, running) or provider.terminate(instance)

    def test_vanished_job_is_not_running(self, provider: Provider, instance: Instance) -> None:
        ghost = JobStatus(job_id=f"job-{uuid.uuid4().hex[:6]}", state=JobState.RUNNING)
        report = call(
            "vanished-job", "status of an unknown job", lambda: provider.raw("status", instance=instance, job=ghost)
        )
        if report.job is not None and not report.job.state.terminal:
            state = report.job.state.value
            broken("vanished-job", f"status said job {ghost.job_id}, which never ran there, is {state}")

    def test_not_lost_right_after_train(self, provider: Provider, instance: Instance, project: Path) -> None:
        status = self._start(provider, instance, project, "ok")
        for _ in range(5):  # at once, as `run` does: the supervisor may not even have started yet
            job = self._job(provider, instance, status)
            if job.state is JobState.LOST:
                broken("not-lost-after-train", f"job {status.job_id} reported lost {job.message!r} just after train")
        final = self._wait(lambda: self._job(provider, instance, status), lambda s: s.state.terminal)
        if final.state is not JobState.SUCCEEDED:
            broken("not-lost-after-train", f"a healthy job ended {final.state.value}: {final.message}")

    def test_errors_are_runctl_errors(self, provider: Provider, project: Path) -> None:
        created = provider.create(self._spec())
        provider.terminate(created)
        gone = provider.status(created, None).instance
        try:
            provider.raw("train", instance=gone, job=JobSpec(job_id="job-gone01", script="job.py"))
        except Exception as exc:
            raised = hook_exception(exc)
            if not isinstance(raised, RunctlError):
                broken("runctl-errors", f"train on a terminated instance raised {type(raised).__name__}: {raised}")
        else:
            broken("runctl-errors", "train on a terminated instance did not raise")
