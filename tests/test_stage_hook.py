"""The optional ``stage`` hook (issue 15.3): ``run`` calls it once, right after ``create`` and before ``ready`` is
polled, so a provider can upload the project while its machine boots; a failing stage is a warning and the run goes
on (``sync`` does the work); a provider without it is unaffected. Through the CLI, with local sandboxes whose hooks
write down the order they were called in."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

STAGERS = """
import json, os
from runctl_core.errors import TransientError
from runctl_core.hookspecs import hookimpl
from runctl_local.provider import LocalProvider


def note(*words):
    with open(os.environ["STAGE_LOG"], "a") as fh:
        fh.write(" ".join(str(w) for w in words) + "\\n")


class Planner(LocalProvider):
    '''Local sandboxes whose dry run notes the steps it was asked to plan (and which do not stage).'''

    @hookimpl
    def plan(self, ctx, request):
        note("plan", *request.steps)
        return super().plan(ctx, request)


class Stager(Planner):
    '''Local sandboxes that note create, stage, ready and sync.'''

    @hookimpl
    def create(self, ctx, spec):
        instance = super().create(ctx, spec)
        note("create", instance.id)
        return instance

    @hookimpl
    def stage(self, ctx, instance, project):
        note("stage", instance.id, instance.state.value, len(project.files))

    @hookimpl
    def ready(self, ctx, instance):
        note("ready", instance.id)
        return super().ready(ctx, instance)

    @hookimpl
    def sync(self, ctx, instance, project):
        note("sync", instance.id)
        return super().sync(ctx, instance, project)


class BadStager(Stager):
    '''Its staging storage is down.'''

    @hookimpl
    def stage(self, ctx, instance, project):
        note("stage-failed", instance.id)
        raise TransientError("the staging bucket answered 503 Slow Down", "try again later")
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    (site / "runctl_stagers.py").write_text(textwrap.dedent(STAGERS))
    info = site / "runctl_stagers-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: runctl-stagers\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[runctl.providers]\nstager = runctl_stagers:Stager\nbadstager = runctl_stagers:BadStager\n"
        "planner = runctl_stagers:Planner\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("STAGE_LOG", str(tmp_path / "stage.log"))
    return site


def _calls(tmp_path: Path) -> list[list[str]]:
    return [line.split() for line in (tmp_path / "stage.log").read_text().splitlines()]


def test_run_stages_right_after_create_and_before_ready(cli, site: Path, project: Path, tmp_path: Path) -> None:
    (project / ".runctl.toml").write_text("[providers.stager]\nuse_uv = false\n")
    result = cli("-o", "json", "--provider", "stager", "run", "examples/train.py", "--", "--epochs", "1")
    assert result.code == 0, result.err
    instance_id = result.json()["instance"]["id"]
    calls = _calls(tmp_path)
    names = [c[0] for c in calls]
    assert names[:3] == ["create", "stage", "ready"], calls  # staged before the first readiness check
    assert names.count("stage") == 1 and names.index("stage") < names.index("sync")
    stage = calls[names.index("stage")]
    assert stage[1] == instance_id and stage[3] == "2"  # the run's project: examples/train.py and .runctl.toml
    assert result.json()["job"]["state"] == "succeeded"


def test_a_failing_stage_is_a_warning_and_sync_does_the_work(cli, site: Path, project: Path, tmp_path: Path) -> None:
    (project / ".runctl.toml").write_text("[providers.badstager]\nuse_uv = false\n")
    result = cli("-o", "json", "--provider", "badstager", "run", "examples/train.py", "--", "--epochs", "1")
    assert result.code == 0, result.err
    assert "could not stage the project" in result.err and "503 Slow Down" in result.err
    names = [c[0] for c in _calls(tmp_path)]
    assert names.index("stage-failed") < names.index("sync")
    assert json.loads(result.out)["job"]["state"] == "succeeded"


def test_create_alone_does_not_stage(cli, site: Path, project: Path, tmp_path: Path) -> None:
    (project / ".runctl.toml").write_text("[providers.stager]\nuse_uv = false\n")
    created = cli("-o", "id", "--provider", "stager", "create", "--wait")
    assert created.code == 0, created.err
    names = [c[0] for c in _calls(tmp_path)]
    assert "create" in names and "stage" not in names  # only run knows the project right after create
    assert cli("resources", "cleanup", "--yes").code == 0


def test_the_dry_run_plans_a_stage_step_only_for_a_provider_that_stages(
    cli, site: Path, project: Path, tmp_path: Path
) -> None:
    assert cli("--provider", "stager", "run", "examples/train.py", "--dry-run").code == 0
    assert cli("--provider", "planner", "run", "examples/train.py", "--dry-run").code == 0
    staged, plain = (c[1:] for c in _calls(tmp_path) if c[0] == "plan")
    assert staged[:4] == ["create", "stage", "wait", "sync"], staged
    assert "stage" not in plain and plain[:3] == ["create", "wait", "sync"]
