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
checkpoints -> terminate) with a real script; a failing script is ``failed`` with its exit code. And the
contracts whose breaking leaks money or lies about state (:data:`runctl_core.testing.contracts.CONTRACTS`),
each failing with ``contract broken: <the contract>``: one create makes exactly one tagged instance
(counted with the provider's own ``list_instances`` before and after every test), which lists only runctl's
instances; terminate is idempotent and stops the instance's jobs; cancel stops the job; a job's timeout is
enforced; synced files are on the instance (read back by a job); logs are complete only once the job ended;
a job the instance does not have is not reported running; a healthy job is not lost right after train; a
hook raises only runctl's errors. With an ``observed_processes`` fixture (job id -> its live pids) it also
counts the job's processes after cancel and terminate.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runctl_core.files import scan_project
from runctl_core.models import (
    Capabilities,
    CredentialStatus,
    Instance,
    InstanceState,
    JobSpec,
    JobState,
    Offer,
    PlanRequest,
    PriceQuery,
)
from runctl_core.plugins import Provider
from runctl_core.testing.conformance_base import OWNER
from runctl_core.testing.conformance_contracts import ContractTests
from runctl_core.testing.contracts import SCRIPT, tagged_alive


class ProviderConformance(ContractTests):
    """Subclass in a ``Test*`` class; set ``provider_name`` and override the ``provider_settings`` fixture
    (and, where the suite can see the job's processes, ``observed_processes``)."""

    # -------------------------------------------------------------------------------- basics

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
        assert tagged_alive(provider.list_instances(), OWNER) == set()  # nothing was created by planning

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

