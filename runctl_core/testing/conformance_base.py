"""Fixtures and helpers of the provider conformance suite (the tests are in conformance.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest

from runctl_core.files import scan_project
from runctl_core.models import (
    Instance,
    InstanceSpec,
    InstanceState,
    JobSpec,
    JobState,
    JobStatus,
    ProviderContext,
)
from runctl_core.plugins import Provider, load_provider
from runctl_core.retry import RetryPolicy
from runctl_core.testing.contracts import (
    SCRIPT,
    ProcessFinder,
    broken,
    read_all_logs,
    stops_growing,
    tagged_alive,
    wait_for,
)

T = TypeVar("T")
OWNER = "conformance"


class ConformanceBase:
    """Fixtures and helpers; subclass :class:`runctl_core.testing.conformance.ProviderConformance`."""

    provider_name: ClassVar[str] = ""
    plugin: ClassVar[object | None] = None  # a plugin object to test instead of the installed entry point
    instance_options: ClassVar[dict[str, Any]] = {}  # extra InstanceSpec fields (instance_type, gpu, ...)
    wait_timeout: ClassVar[float] = 120.0  # seconds for the instance to be ready / a job to end
    poll_interval: ClassVar[float] = 0.1
    job_timeout: ClassVar[float] = 2.0  # the JobSpec.timeout the timeout contract uses
    # test name -> why it is known to fail (an issue to fix): reported as xfail, not hidden
    known_broken: ClassVar[dict[str, str]] = {}

    # -------------------------------------------------------------------------------- fixtures

    @pytest.fixture
    def provider_settings(self) -> dict[str, Any]:
        """Override: start your stand-ins, set env vars (monkeypatch), return the ``[providers.NAME]`` table."""
        return {}

    @pytest.fixture
    def observed_processes(self) -> ProcessFinder | None:
        """Override to let the suite count a job's processes: return ``job_id -> [live pids]``. Where jobs run
        on this machine (the local provider, a stand-in that runs the runner in a temp dir),
        ``runctl_core.testing.contracts.processes_with_job_id`` does it."""
        return None

    @pytest.fixture
    def provider(self, provider_settings: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Provider:
        home = tmp_path / "runctl-home"
        monkeypatch.setenv("RUNCTL_HOME", str(home))
        ctx = ProviderContext(
            provider=self.provider_name,
            state_dir=home / "providers" / self.provider_name,
            settings=provider_settings,
            owner=OWNER,
        )
        ctx.state_dir.mkdir(parents=True, exist_ok=True)
        retry = RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.2)
        if self.plugin is not None:
            return Provider(self.provider_name, self.plugin, ctx, retry)
        return load_provider(self.provider_name, ctx, retry)

    @pytest.fixture(autouse=True)
    def _no_leak(self, provider: Provider, request: pytest.FixtureRequest) -> Iterator[None]:
        """Count runctl's live instances with the provider's own list_instances before and after each test."""
        name = getattr(request.node, "originalname", request.node.name)
        if name in self.known_broken:
            request.applymarker(pytest.mark.xfail(reason=self.known_broken[name], strict=False))
        if not provider.has("list_instances"):
            yield
            return
        before = tagged_alive(provider.list_instances(), OWNER)
        yield
        left = wait_for(
            lambda: tagged_alive(provider.list_instances(), OWNER) - before, lambda ids: not ids, self.wait_timeout
        )
        if left is None:
            leaked = tagged_alive(provider.list_instances(), OWNER) - before
            broken("no-leak", f"still alive after the test terminated what it created: {sorted(leaked)}")

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
            "owner": OWNER,
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

    def _start(
        self, provider: Provider, instance: Instance, project: Path, *args: str, sync: bool = True, **job: Any
    ) -> JobStatus:
        if sync:
            provider.sync(instance, scan_project(project))
        spec = JobSpec(
            job_id=f"job-{uuid.uuid4().hex[:6]}",
            script="job.py",
            args=list(args),
            env={"CONFORMANCE_EXTRA": "yes"},
            **job,
        )
        status = provider.train(instance, spec)
        assert status.job_id == spec.job_id
        return status

    def _job(self, provider: Provider, instance: Instance, status: JobStatus) -> JobStatus:
        report = provider.status(instance, status)
        assert report.job is not None, "status gave no job for a job that was asked for"
        return report.job

    def _run_job(
        self, provider: Provider, instance: Instance, project: Path, *args: str
    ) -> tuple[JobStatus, list[str]]:
        status = self._start(provider, instance, project, *args)
        assert status.state in (JobState.PENDING, JobState.RUNNING) or status.state.terminal
        seen = [status.state.value]

        def poll() -> JobStatus:
            job = self._job(provider, instance, status)
            seen.append(job.state.value)
            return job

        final = self._wait(poll, lambda s: s.state.terminal)
        return final, seen

    def _finish(self, provider: Provider, instance: Instance, status: JobStatus) -> JobStatus:
        return self._wait(lambda: self._job(provider, instance, status), lambda s: s.state.terminal)

    def _running(self, provider: Provider, instance: Instance, status: JobStatus) -> JobStatus:
        return self._wait(lambda: self._job(provider, instance, status), lambda s: s.state is JobState.RUNNING)

    def _check_stopped(
        self,
        contract: str,
        provider: Provider,
        instance: Instance,
        status: JobStatus,
        observed: ProcessFinder | None,
    ) -> None:
        """The job has really ended: no process of it is left, and its log no longer grows."""
        if observed is not None:
            left = wait_for(lambda: observed(status.job_id), lambda pids: not pids, self.wait_timeout)
            if left is None:
                broken(contract, f"job {status.job_id} still has processes {observed(status.job_id)}")
        growing = provider.has("logs") and instance.state.alive
        if growing and not stops_growing(lambda: len(read_all_logs(provider, instance, status)), settle=1.0):
            broken(contract, f"job {status.job_id}'s log is still growing")


def _ghost_id(real_id: str) -> str:
    """An id of the same shape as ``real_id`` that does not exist (last hex digits changed)."""
    keep = real_id[:-4]
    tail = real_id[-4:]
    swapped = "".join("0" if c != "0" else "1" for c in tail)
    return keep + swapped
