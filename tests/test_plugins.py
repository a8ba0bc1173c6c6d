"""Provider discovery: a third party's provider installs by entry point alone; broken ones are refused clearly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runctl_core.testing.cli import runctl_executable

RUNCTL = runctl_executable()

GOOD = """
from runctl_core.hookspecs import hookimpl
from runctl_core.models import Instance, InstanceState, JobStatus, JobState, StatusReport, SyncResult, Offer

class Provider:
    @hookimpl
    def create(self, ctx, spec):
        return Instance(id="fake-1", provider="fake", state=InstanceState.RUNNING)
    @hookimpl
    def sync(self, instance, project):
        return SyncResult(remote_path="/", files_total=0, files_sent=0, bytes_sent=0)
    @hookimpl
    def train(self, instance, job):
        raise RuntimeError("boom: kaputt")
    @hookimpl
    def status(self, instance, job):
        return StatusReport(instance=instance)
    @hookimpl
    def terminate(self, instance):
        return instance.model_copy(update={"state": InstanceState.TERMINATED})
    @hookimpl
    def price(self, query):
        return [Offer(provider="fake", instance_type="fake.small", on_demand_hourly=0.5)]
"""

MISSING_TRAIN = """
from runctl_core.hookspecs import hookimpl

class Provider:
    @hookimpl
    def create(self, ctx, spec): ...
    @hookimpl
    def sync(self, instance, project): ...
    @hookimpl
    def status(self, instance, job): ...
    @hookimpl
    def terminate(self, instance): ...
    @hookimpl
    def price(self, query): ...
"""


def _install(site: Path, dist: str, name: str, module: str, source: str, cls: str = "Provider") -> None:
    """Install a provider the way a third party's package would be: a module and a dist-info entry point."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-0.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[runctl.providers]\n{name} = {module}:{cls}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    _install(site, "runctl-fake", "fake", "runctl_fake", GOOD)
    _install(site, "runctl-broken", "broken", "runctl_broken", MISSING_TRAIN)
    monkeypatch.setenv("PYTHONPATH", str(site))
    return site


def test_third_party_provider_is_listed_with_version(cli, site: Path, project: Path) -> None:
    doc = cli("-o", "json", "providers").json()
    by_name = {p["name"]: p for p in doc["providers"]}
    assert by_name["fake"]["version"] == "0.3" and by_name["fake"]["package"] == "runctl-fake"
    assert by_name["fake"]["status"] == "found"
    assert "train" in by_name["broken"]["status"]
    assert "local" in by_name


def test_missing_required_hook_is_refused_naming_it(cli, site: Path, project: Path) -> None:
    result = cli("-o", "json", "--provider", "broken", "run", "examples/train.py")
    assert result.code == 3
    error = result.error()
    assert error["code"] == "plugin" and "train" in error["message"]


def test_provider_bug_is_reported_without_traceback(cli, site: Path, project: Path) -> None:
    result = cli("--provider", "fake", "run", "examples/train.py")
    assert result.code == 4
    assert "failed in train: RuntimeError: boom: kaputt" in result.err and "Traceback" not in result.err


def test_price_across_providers_includes_third_party(cli, site: Path, project: Path) -> None:
    doc = cli("-o", "json", "price").json()
    assert {"fake", "local"} <= {o["provider"] for o in doc["offers"]}


def test_disable_and_trace_switches(cli, site: Path, project: Path) -> None:
    blocked = cli("--provider", "fake", "price", env={"RUNCTL_DISABLE_PLUGINS": "fake"})
    assert blocked.code == 3 and "RUNCTL_DISABLE_PLUGINS" in blocked.err
    only = cli("-o", "json", "providers", env={"RUNCTL_LOAD_PLUGINS": "local"}).json()
    assert {p["name"]: p["status"] for p in only["providers"]}["fake"] == "not in RUNCTL_LOAD_PLUGINS"
    traced = cli("--provider", "fake", "price", env={"RUNCTL_TRACE_PLUGINS": "1"})
    assert "[runctl trace] fake.price(" in traced.err and "-> list" in traced.err


def test_listing_and_local_runs_do_not_import_cloud_sdks(home: Path, project: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        from runctl_core.cli.main import main
        for argv in (["providers"], ["--provider", "local", "status"], ["--help"],
                     ["--provider", "local", "run", "examples/train.py", "--", "--epochs", "1"]):
            try:
                main(argv)
            except SystemExit as exc:
                assert not exc.code, (argv, exc.code)
        print("LOADED", sorted(m for m in ("boto3", "botocore", "httpx", "asyncssh", "paramiko") if m in sys.modules))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, timeout=120)
    assert "LOADED []" in out.stdout, out.stdout + out.stderr


def test_runctl_help_is_plain_click(home: Path) -> None:
    result = subprocess.run([RUNCTL, "--help"], capture_output=True, text=True)
    assert "Commands:" in result.stdout and json.dumps is not None


FAKE_GPU_PROVIDERS = """
from runctl_core.errors import CapacityError
from runctl_core.hookspecs import hookimpl
from runctl_core.models import Capability, JobState, Offer
from runctl_local.provider import LocalProvider
from runctl_local.sandbox import Sandbox


class GpuOnThisMachine(LocalProvider):
    '''A provider selling one "A100" offer at PRICE $/h, whose machines are local sandboxes.'''

    NAME = ""
    PRICE = 0.0

    @hookimpl
    def price(self, query):
        return [Offer(provider=self.NAME, instance_type=f"{self.NAME}.gpu", gpu="A100", gpu_count=1,
                      on_demand_hourly=self.PRICE)]

    @hookimpl
    def capabilities(self):
        return super().capabilities().model_copy(update={"gpu": Capability(supported=True)})

    @hookimpl
    def create(self, ctx, spec):
        instance = super().create(ctx, spec.model_copy(update={"instance_type": None, "gpu": None}))
        return instance.model_copy(update={"provider": self.NAME, "hourly_price": self.PRICE})


class Cheap(GpuOnThisMachine):
    '''Cheapest on paper, but out of capacity.'''

    NAME, PRICE = "cheap", 1.0

    @hookimpl
    def create(self, ctx, spec):
        raise CapacityError("no cheap.gpu left in any zone", "try later")


class Dear(GpuOnThisMachine):
    NAME, PRICE = "dear", 3.0


class Flaky(GpuOnThisMachine):
    '''Cheapest; its first machine is preempted after two epochs, then it has no capacity left.'''

    NAME, PRICE = "flaky", 1.0
    creates = 0

    @hookimpl
    def create(self, ctx, spec):
        Flaky.creates += 1
        if Flaky.creates > 1:
            raise CapacityError("no flaky.gpu left", "try later")
        return super().create(ctx, spec)

    @hookimpl
    def status(self, ctx, instance, job):
        report = super().status(ctx, instance, job)
        if job is not None and report.job is not None:
            checkpoints = Sandbox(ctx.state_dir, instance.id).job_dir(job.job_id) / "checkpoints"
            if report.job.state is JobState.RUNNING and (checkpoints / "ckpt-0002.json").exists():
                self.cancel(ctx, instance, report.job)  # the machine goes away under the job
                report = super().status(ctx, instance, job)
            if report.job.state is JobState.CANCELLED:
                preempted = report.job.model_copy(update={"state": JobState.INTERRUPTED, "message": "preempted"})
                report = report.model_copy(update={"job": preempted})
        return report


class Steady(GpuOnThisMachine):
    NAME, PRICE = "steady", 2.0
"""


def test_auto_falls_over_to_the_next_offer_on_capacity(cli, tmp_path: Path, project: Path) -> None:
    site = tmp_path / "site2"
    for dist, name, cls in (("runctl-cheap", "cheap", "Cheap"), ("runctl-dear", "dear", "Dear")):
        _install(site, dist, name, "runctl_fake_gpus", FAKE_GPU_PROVIDERS, cls)
    env = {"PYTHONPATH": str(site), "RUNCTL_LOAD_PLUGINS": "cheap,dear"}
    plan = cli("-o", "json", "--provider", "auto", "run", "examples/train.py", "--gpu", "A100", "--dry-run", env=env)
    assert plan.code == 0, plan.err
    doc = plan.json()
    assert doc["provider"] == "cheap" and [a["provider"] for a in doc["alternatives"]] == ["cheap", "dear"]
    ran = cli(
        "-o", "json", "--provider", "auto", "run", "examples/train.py", "--gpu", "A100", "--", "--epochs", "1", env=env
    )
    assert ran.code == 0, ran.err
    assert "cheap refused cheap.gpu for capacity" in ran.err and "trying the next offer" in ran.err
    result = ran.json()
    assert result["job"]["provider"] == "dear" and result["job"]["state"] == "succeeded"
    assert result["instance"]["state"] == "terminated"


def test_auto_recovery_moves_to_the_next_offer_with_the_checkpoint(cli, tmp_path: Path, project: Path) -> None:
    site = tmp_path / "site3"
    for dist, name, cls in (("runctl-flaky", "flaky", "Flaky"), ("runctl-steady", "steady", "Steady")):
        _install(site, dist, name, "runctl_fake_gpus", FAKE_GPU_PROVIDERS, cls)
    env = {"PYTHONPATH": str(site), "RUNCTL_LOAD_PLUGINS": "flaky,steady"}
    args = ("examples/train.py", "--gpu", "A100", "--recover", "--", "--epochs", "5", "--sleep", "0.3")
    ran = cli("-o", "json", "--provider", "auto", "run", *args, env=env)
    assert ran.code == 0, ran.err
    result = ran.json()
    assert result["job"]["provider"] == "steady" and result["job"]["state"] == "succeeded"
    assert "flaky refused flaky.gpu for capacity" in ran.err
    log = cli("logs", result["job"]["job_id"], env=env).out
    assert "resumed from ckpt-0002.json" in log
    straight = cli("-o", "json", "run", "examples/train.py", "--", "--epochs", "5").json()
    recovered = json.loads(Path(result["outputs_dir"], "metrics.json").read_text())
    uninterrupted = json.loads(Path(straight["outputs_dir"], "metrics.json").read_text())
    assert recovered["weights"] == uninterrupted["weights"]
