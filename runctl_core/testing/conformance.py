"""The provider conformance suite: what every runctl provider must do, as pytest tests.

A provider (ours or a third party's) runs it against itself by subclassing :class:`ProviderConformance` in a
test module; the provider is loaded through its installed entry point, exactly as the CLI loads it::

    # tests/test_conformance.py of a provider package
    import pytest
    from runctl_core.testing.conformance import ProviderConformance

    class TestMyCloudConformance(ProviderConformance):
        provider_name = "mycloud"
        instance_options = {"instance_type": "small"}

        @pytest.fixture
        def provider_settings(self, my_stand_in, monkeypatch):
            monkeypatch.setenv("MYCLOUD_API_KEY", "dummy")
            return {"base_url": my_stand_in.url}

What it checks: required hooks load; capabilities, credentials and prices come back typed; ``plan`` makes no
call; the whole lifecycle (create -> ready -> sync -> train -> status transitions -> logs by offset ->
checkpoints -> terminate) with a real script; a failing script is ``failed`` with its exit code; a job can be
cancelled; terminate is idempotent and an unknown/gone instance is reported ``terminated``, not an error;
``list_instances`` reports what was created with runctl's tags; errors are runctl's error types.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest

from runctl_core.errors import RunctlError
from runctl_core.files import scan_project
from runctl_core.models import (
    Capabilities,
    CredentialStatus,
    Instance,
    InstanceSpec,
    InstanceState,
    JobSpec,
    JobState,
    JobStatus,
    Offer,
    PlanRequest,
    PriceQuery,
    ProviderContext,
)
from runctl_core.plugins import Provider, load_provider
from runctl_core.retry import RetryPolicy

T = TypeVar("T")

SCRIPT = """\
import os, sys, time, pathlib
ckpt = pathlib.Path(os.environ["RUNCTL_CHECKPOINT_DIR"])
ckpt.mkdir(parents=True, exist_ok=True)
print("conformance job", os.environ.get("RUNCTL_JOB_ID"), "extra", os.environ.get("CONFORMANCE_EXTRA"), flush=True)
mode = sys.argv[1] if len(sys.argv) > 1 else "ok"
if mode == "sleep":
    time.sleep(float(sys.argv[2]))
for i in range(3):
    print(f"line {i} \u00e9", flush=True)
(ckpt / "ckpt-0001.json").write_text('{"step": 1}')
if mode == "fail":
    print("failing on purpose", file=sys.stderr, flush=True)
    sys.exit(7)
print("done", flush=True)
"""


class ProviderConformance:
    """Subclass in a ``Test*`` class; set ``provider_name`` and override the ``provider_settings`` fixture."""

    provider_name: ClassVar[str] = ""
    instance_options: ClassVar[dict[str, Any]] = {}  # extra InstanceSpec fields (instance_type, gpu, ...)
    wait_timeout: ClassVar[float] = 120.0  # seconds for the instance to be ready / a job to end
    poll_interval: ClassVar[float] = 0.1

    # -------------------------------------------------------------------------------- fixtures

    @pytest.fixture
    def provider_settings(self) -> dict[str, Any]:
        """Override: start your stand-ins, set env vars (monkeypatch), return the ``[providers.NAME]`` table."""
        return {}

    @pytest.fixture
    def provider(self, provider_settings: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Provider:
        home = tmp_path / "runctl-home"
        monkeypatch.setenv("RUNCTL_HOME", str(home))
        ctx = ProviderContext(
            provider=self.provider_name,
            state_dir=home / "providers" / self.provider_name,
            settings=provider_settings,
            owner="conformance",
        )
        ctx.state_dir.mkdir(parents=True, exist_ok=True)
        return load_provider(self.provider_name, ctx, RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.2))

    @pytest.fixture
    def project(self, tmp_path: Path) -> Path:
        root = tmp_path / "project"
        root.mkdir()
        (root / "job.py").write_text(SCRIPT, encoding="utf-8")
        (root / "data").mkdir()
        (root / "data" / "numbers.txt").write_text("1 2 3\n")
        (root / ".runctlignore").write_text("ignored.bin\n")
        (root / "ignored.bin").write_bytes(b"\0" * 10)
        return root

    @pytest.fixture
    def instance(self, provider: Provider) -> Any:
        created = provider.create(self._spec())
        try:
            yield self._wait(lambda: provider.ready(created), lambda i: i.state is not InstanceState.PENDING)
        finally:
            provider.terminate(created)

    # -------------------------------------------------------------------------------- helpers

    def _spec(self, **extra: Any) -> InstanceSpec:
        fields: dict[str, Any] = {
            "intent_id": f"intent-{uuid.uuid4().hex[:12]}",
            "owner": "conformance",
            "job_id": f"job-{uuid.uuid4().hex[:6]}",
        }
        fields.update(self.instance_options)
        fields.update(extra)
        return InstanceSpec(**fields)

    def _wait(self, poll: Callable[[], T], done: Callable[[T], bool]) -> T:
        deadline = time.monotonic() + self.wait_timeout
        delay = self.poll_interval
        while True:
            value = poll()
            if done(value):
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"gave up after {self.wait_timeout}s; last: {value!r}")
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)

    def _run_job(
        self, provider: Provider, instance: Instance, project: Path, *args: str
    ) -> tuple[JobStatus, list[str]]:
        provider.sync(instance, scan_project(project))
        job = JobSpec(
            job_id=f"job-{uuid.uuid4().hex[:6]}", script="job.py", args=list(args), env={"CONFORMANCE_EXTRA": "yes"}
        )
        status = provider.train(instance, job)
        assert status.job_id == job.job_id
        assert status.state in (JobState.PENDING, JobState.RUNNING) or status.state.terminal
        seen = [status.state.value]

        def poll() -> JobStatus:
            report = provider.status(instance, status)
            assert report.job is not None
            seen.append(report.job.state.value)
            return report.job

        final = self._wait(poll, lambda s: s.state.terminal)
        return final, seen

    # -------------------------------------------------------------------------------- tests

    def test_required_hooks_and_capabilities(self, provider: Provider) -> None:
        for hook in ("create", "sync", "train", "status", "terminate", "price"):
            assert provider.has(hook), hook
        caps = provider.capabilities()
        assert isinstance(caps, Capabilities)
        for name in ("spot", "stop", "log_follow", "checkpoints", "max_runtime", "gpu"):
            capability = getattr(caps, name)
            assert capability.supported or capability.reason, f"{name} unsupported without a reason"

    def test_credentials_report(self, provider: Provider) -> None:
        status = provider.check_credentials(probe=False)
        assert isinstance(status, CredentialStatus)
        assert status.found, status

    def test_price_is_typed(self, provider: Provider) -> None:
        query = PriceQuery(**{k: v for k, v in self.instance_options.items() if k in ("gpu", "instance_type")})
        offers = provider.price(query)
        assert isinstance(offers, list) and offers, "the instance type used by the suite must have a price"
        for offer in offers:
            assert isinstance(offer, Offer) and offer.provider == self.provider_name
            for value in (offer.on_demand_hourly, offer.spot_hourly):
                assert value is None or value >= 0

    def test_plan_makes_no_call(self, provider: Provider, monkeypatch: pytest.MonkeyPatch) -> None:
        job = JobSpec(job_id="job-plan01", script="job.py", args=["ok"])
        calls = provider.plan(
            PlanRequest(
                steps=["create", "sync", "train", "terminate"],
                instance=self._spec(),
                job=job,
                project_files=3,
                project_bytes=100,
            )
        )
        steps = {call.step for call in calls}
        assert {"create", "sync", "train", "terminate"} <= steps
        assert provider.list_instances() in (None, [])  # nothing was created by planning

    def test_lifecycle(self, provider: Provider, instance: Instance, project: Path, tmp_path: Path) -> None:
        assert instance.state is InstanceState.RUNNING
        assert instance.provider == self.provider_name
        final, seen = self._run_job(provider, instance, project, "ok")
        assert final.state is JobState.SUCCEEDED, (final, seen)
        assert final.exit_code == 0
        # states only move forward: once terminal, never running again
        first_terminal = next(i for i, s in enumerate(seen) if JobState(s).terminal)
        assert all(JobState(s).terminal for s in seen[first_terminal:]), seen
        # logs by offset: the whole log, then nothing more; no repeats, no gaps
        text, offset, complete = "", 0, False
        for _ in range(200):
            chunk = provider.logs(instance, final, offset)
            if chunk is None:
                pytest.skip("provider has no logs hook")
            assert chunk.offset == offset and chunk.next_offset >= offset
            text += chunk.data
            offset, complete = chunk.next_offset, chunk.complete
            if complete:
                break
        assert complete
        assert "conformance job" in text and "extra yes" in text and "line 2 \u00e9" in text and "done" in text
        assert text.count("line 1") == 1
        again = provider.logs(instance, final, offset)
        assert again is not None and again.data == "" and again.complete
        # checkpoints
        listed = provider.list_checkpoints(instance, final)
        if listed is not None:
            assert "ckpt-0001.json" in {c.name for c in listed}
        collected = provider.collect(instance, final, tmp_path / "collected")
        if collected is not None:
            assert (tmp_path / "collected" / "ckpt-0001.json").read_text() == '{"step": 1}'

    def test_resync_sends_only_changes(self, provider: Provider, instance: Instance, project: Path) -> None:
        first = provider.sync(instance, scan_project(project))
        assert first.files_total == 3  # job.py, data/numbers.txt, .runctlignore; ignored.bin left out
        second = provider.sync(instance, scan_project(project))
        assert second.files_sent == 0
        (project / "data" / "numbers.txt").write_text("4 5 6\n")
        (project / "job.py").write_text(SCRIPT + "\n# changed\n")
        third = provider.sync(instance, scan_project(project))
        assert third.files_sent == 2

    def test_failing_script_reports_exit_code(self, provider: Provider, instance: Instance, project: Path) -> None:
        final, _ = self._run_job(provider, instance, project, "fail")
        assert final.state is JobState.FAILED
        assert final.exit_code == 7

    def test_cancel_or_terminate_stops_a_running_job(
        self, provider: Provider, instance: Instance, project: Path
    ) -> None:
        provider.sync(instance, scan_project(project))
        job = JobSpec(job_id=f"job-{uuid.uuid4().hex[:6]}", script="job.py", args=["sleep", "600"])
        status = provider.train(instance, job)
        self._wait(
            lambda: provider.status(instance, status).job, lambda s: s is not None and s.state is JobState.RUNNING
        )
        stopped = provider.cancel(instance, status)
        if stopped is None:  # no cancel hook: terminate must stop it
            provider.terminate(instance)
        final = self._wait(lambda: provider.status(instance, status).job, lambda s: s is not None and s.state.terminal)
        assert final is not None
        assert final.state in (JobState.CANCELLED, JobState.LOST, JobState.FAILED), final

    def test_terminate_is_idempotent(self, provider: Provider) -> None:
        created = provider.create(self._spec())
        try:
            first = provider.terminate(created)
            assert first.state in (InstanceState.TERMINATED, InstanceState.STOPPING)
            second = provider.terminate(created)
            assert second.state in (InstanceState.TERMINATED, InstanceState.STOPPING)
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
        report = provider.status(ghost, None)
        assert report.instance.state is InstanceState.TERMINATED
        assert provider.terminate(ghost).state is InstanceState.TERMINATED

    def test_list_instances_shows_tagged(self, provider: Provider) -> None:
        spec = self._spec()
        created = provider.create(spec)
        try:
            listed = provider.list_instances()
            if listed is None:
                pytest.skip("provider has no list_instances hook")
            mine = [i for i in listed if i.id == created.id]
            assert mine, f"{created.id} missing from list_instances"
            assert mine[0].tags.get("runctl:owner") == "conformance"
            assert mine[0].tags.get("runctl:job") == spec.job_id
        finally:
            provider.terminate(created)

    def test_errors_are_runctl_errors(self, provider: Provider, project: Path) -> None:
        created = provider.create(self._spec())
        provider.terminate(created)
        gone = provider.status(created, None).instance
        with pytest.raises(RunctlError):
            provider.train(gone, JobSpec(job_id="job-gone01", script="job.py"))


def _ghost_id(real_id: str) -> str:
    """An id of the same shape as ``real_id`` that does not exist (last hex digits changed)."""
    keep = real_id[:-4]
    tail = real_id[-4:]
    swapped = "".join("0" if c != "0" else "1" for c in tail)
    return keep + swapped
