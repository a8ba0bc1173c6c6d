"""Hook-level tests: error mapping, retries, faults (system failure, dropped streams), size limits, secrets."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from lyceum_standin import API_KEY, StandIn

from runctl_core.errors import AuthError, CredentialsError, TransientError, UsageError
from runctl_core.files import scan_project
from runctl_core.models import InstanceSpec, JobSpec, JobState, JobStatus, PlanRequest, PriceQuery
from runctl_core.plugins import Provider

SCRIPT = """\
import hashlib, os, pathlib, sys, time
print("job", os.environ["RUNCTL_JOB_ID"], flush=True)
blob = pathlib.Path("data/blob.bin")
if blob.exists():
    print("blob", hashlib.sha256(blob.read_bytes()).hexdigest(), flush=True)
mode = sys.argv[1] if len(sys.argv) > 1 else "ok"
for i in range(int(os.environ.get("LINES", "5"))):
    print(f"line {i}", flush=True)
    time.sleep(float(os.environ.get("PAUSE", "0")))
if mode == "sleep":
    time.sleep(600)
pathlib.Path(os.environ["RUNCTL_CHECKPOINT_DIR"], "out.txt").write_text("done")
"""


def spec(**extra: Any) -> InstanceSpec:
    fields: dict[str, Any] = {
        "intent_id": f"intent-{uuid.uuid4().hex[:8]}",
        "owner": "tester",
        "job_id": f"job-{uuid.uuid4().hex[:6]}",
        "instance_type": "gpu.l40s",
    }
    fields.update(extra)
    return InstanceSpec(**fields)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "data").mkdir(parents=True)
    (root / "job.py").write_text(SCRIPT)
    (root / "data" / "blob.bin").write_bytes(bytes(range(256)) * 4)
    return root


@pytest.fixture
def provider(make_provider: Any, lyceum_settings: dict[str, Any]) -> Provider:
    result: Provider = make_provider(lyceum_settings)
    return result


def run_job(
    provider: Provider,
    project: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    **spec_extra: Any,
) -> tuple[Any, JobStatus, str]:
    instance = provider.create(spec(**spec_extra))
    provider.sync(instance, scan_project(project))
    job = JobSpec(
        job_id=f"job-{uuid.uuid4().hex[:6]}", script="job.py", args=list(args), env=env or {}, timeout=timeout
    )
    status = provider.train(instance, job)
    for _ in range(2000):
        report = provider.status(instance, status)
        assert report.job is not None
        status = report.job
        if status.state.terminal:
            break
        import time

        time.sleep(0.02)
    text, offset = "", 0
    for _ in range(100):
        chunk = provider.logs(instance, status, offset)
        assert chunk is not None
        text += chunk.data
        offset = chunk.next_offset
        if chunk.complete:
            break
    return instance, status, text


def test_binary_files_reach_the_execution_and_outputs_come_back(
    provider: Provider, project: Path, tmp_path: Path
) -> None:
    import hashlib

    instance, status, text = run_job(provider, project)
    assert status.state is JobState.SUCCEEDED, (status, text)
    assert f"blob {hashlib.sha256(bytes(range(256)) * 4).hexdigest()}" in text
    collected = provider.collect(instance, status, tmp_path / "out")
    assert collected is not None and (tmp_path / "out" / "out.txt").read_text() == "done"
    listed = provider.list_checkpoints(instance, status)
    assert listed is not None and [c.name for c in listed] == ["out.txt"]
    assert listed[0].location.startswith("s3://")
    provider.terminate(instance)


def test_system_failure_is_lost_with_a_message(provider: Provider, project: Path, standin: StandIn) -> None:
    standin.system_failure_next = True
    _, status, _text = run_job(provider, project, env={"PAUSE": "0.2"})
    assert status.state is JobState.LOST and status.exit_code is None
    assert "system failure" in status.message and "node lost" in status.message


def test_a_dropped_stream_is_resumed_without_repeats(provider: Provider, project: Path, standin: StandIn) -> None:
    standin.drop_stream_after = 2
    instance = provider.create(spec())
    provider.sync(instance, scan_project(project))
    job = JobSpec(job_id="job-drop01", script="job.py", env={"LINES": "8", "PAUSE": "0.05"})
    status = provider.train(instance, job)
    text, offset = "", 0
    for _ in range(3000):
        status = provider.status(instance, status).job or status
        chunk = provider.logs(instance, status, offset)
        assert chunk is not None
        text += chunk.data
        offset = chunk.next_offset
        if chunk.complete:
            break
        import time

        time.sleep(0.01)
    assert [f"line {i}" in text for i in range(8)] == [True] * 8
    assert text.count("line 3\n") == 1
    (execution,) = standin.executions.values()
    assert execution.stream_connections >= 2


def test_logs_fall_back_to_the_logs_endpoint(provider: Provider, project: Path, standin: StandIn) -> None:
    standin.fail("POST", r"^/stream/", 404, times=100, detail="Stream not found")
    _, status, text = run_job(provider, project)
    assert status.state is JobState.SUCCEEDED
    assert "line 4" in text and text.count("line 2") == 1


def test_failing_script_keeps_its_exit_code(provider: Provider, tmp_path: Path) -> None:
    root = tmp_path / "failing"
    root.mkdir()
    (root / "job.py").write_text("import sys\nprint('bad', file=sys.stderr)\nsys.exit(5)\n")
    _, status, text = run_job(provider, root)
    assert status.state is JobState.FAILED and status.exit_code == 5 and "bad" in text


def test_timeout_is_failed_with_a_message(provider: Provider, project: Path) -> None:
    _, status, _ = run_job(provider, project, "sleep", timeout=1)
    assert status.state is JobState.FAILED and "timeout" in status.message


def test_401_is_an_auth_error_naming_the_variable_without_the_key(provider: Provider, standin: StandIn) -> None:
    standin.fail("GET", "/machine-types", 401, times=5, detail="bad token", echo_auth=True)
    with pytest.raises(AuthError) as caught:
        provider.price(PriceQuery(gpu="A100"))
    assert "LYCEUM_API_KEY" in caught.value.hint
    rendered = json.dumps(caught.value.to_dict())
    assert API_KEY not in rendered and "bad token" in rendered


def test_422_is_a_usage_error_with_the_detail(provider: Provider, project: Path, standin: StandIn) -> None:
    standin.image_timeout_max = 600  # a 2 h job runs as an image execution; this stand-in refuses its timeout
    instance = provider.create(spec())
    provider.sync(instance, scan_project(project))
    with pytest.raises(UsageError) as caught:
        provider.train(instance, JobSpec(job_id="job-long01", script="job.py", timeout=7200))
    assert "timeout" in caught.value.message and "600" in caught.value.message


def test_429_on_a_get_is_retried_honouring_retry_after(provider: Provider, standin: StandIn) -> None:
    standin.fail("GET", "/machine-types", 429, times=2, headers={"Retry-After": "0"})
    offers = provider.price(PriceQuery(instance_type="gpu.h100"))
    assert [o.instance_type for o in offers] == ["gpu.h100"] and offers[0].on_demand_hourly == 3.99
    assert sum(1 for r in standin.requests if r["path"].endswith("/machine-types")) == 3


def test_5xx_on_start_is_transient_and_not_retried(provider: Provider, project: Path, standin: StandIn) -> None:
    instance = provider.create(spec())
    provider.sync(instance, scan_project(project))
    standin.fail("POST", "/execution/streaming/start", 503, times=5, headers={"Retry-After": "7"})
    with pytest.raises(TransientError) as caught:
        provider.train(instance, JobSpec(job_id="job-busy01", script="job.py"))
    assert caught.value.retry_after == 7.0
    assert sum(1 for r in standin.requests if r["path"].endswith("/streaming/start")) == 1


def test_unknown_profile_and_gpu_are_usage_errors(provider: Provider) -> None:
    with pytest.raises(UsageError, match=r"gpu\.v100") as caught:
        provider.create(spec(instance_type="gpu.v100"))
    assert "gpu.l40s" in caught.value.hint
    created = provider.create(spec(instance_type=None, gpu="a100"))
    assert created.instance_type == "gpu.a100"  # the cheaper of gpu.a100 and gpu.a100.80gb


def test_spot_prices_are_empty(provider: Provider) -> None:
    assert provider.price(PriceQuery(gpu="H100", spot=True)) == []
    assert provider.capabilities().spot.supported is False


def test_project_over_the_size_limit_is_refused_with_what_to_do(
    make_provider: Any, lyceum_settings: dict[str, Any], project: Path
) -> None:
    provider = make_provider({**lyceum_settings, "max_request_bytes": 40_000})
    (project / "data" / "big.bin").write_bytes(b"\x00\xff" * 30_000)
    instance = provider.create(spec())
    with pytest.raises(UsageError) as caught:
        provider.sync(instance, scan_project(project))
    assert "data/big.bin" in caught.value.message and ".runctlignore" in caught.value.hint


def test_cancel_aborts(provider: Provider, project: Path, standin: StandIn) -> None:
    instance = provider.create(spec())
    provider.sync(instance, scan_project(project))
    status = provider.train(instance, JobSpec(job_id="job-cancel", script="job.py", args=["sleep"]))
    (execution,) = standin.executions.values()
    for _ in range(500):
        if "line 4" in standin.text(execution.id):
            break
        import time

        time.sleep(0.02)
    provider.cancel(instance, status)
    assert standin.wait_terminal(execution.id).status == "aborted"
    final = provider.status(instance, status).job
    assert final is not None and final.state is JobState.CANCELLED
    assert provider.cancel(instance, final) is not None  # again: harmless


def test_orphans_at_lyceum_are_listed_and_terminated_from_another_machine(
    make_provider: Any, lyceum_settings: dict[str, Any], project: Path, standin: StandIn, tmp_path: Path
) -> None:
    from runctl_core.models import ProviderContext
    from runctl_core.plugins import load_provider

    first = make_provider(lyceum_settings)
    instance = first.create(spec())
    first.sync(instance, scan_project(project))
    first.train(instance, JobSpec(job_id="job-orphan", script="job.py", args=["sleep"]))
    other_ctx = ProviderContext(
        provider="lyceum", state_dir=tmp_path / "elsewhere", settings=lyceum_settings, owner="tester"
    )
    other = load_provider("lyceum", other_ctx)
    (listed,) = [i for i in other.list_instances() or [] if i.id == instance.id]
    assert listed.tags["runctl:job"] == "job-orphan" and listed.tags["runctl:owner"] == "tester"
    other.terminate(listed)
    (execution,) = standin.executions.values()
    assert standin.wait_terminal(execution.id).status == "aborted"


def test_image_executions_run_the_bootstrap_in_the_command(
    provider: Provider, project: Path, tmp_path: Path, standin: StandIn
) -> None:
    instance, status, text = run_job(provider, project, image="python:3.12-slim")
    assert status.state is JobState.SUCCEEDED, text
    (execution,) = standin.executions.values()
    assert execution.kind == "image" and execution.body["docker_image_ref"] == "python:3.12-slim"
    assert execution.body["s3_mount_path"] == str(standin.mount_dir)
    collected = provider.collect(instance, status, tmp_path / "img-out")
    assert collected is not None and (tmp_path / "img-out" / "out.txt").read_text() == "done"


def test_credentials_from_env_config_file_or_missing(
    make_provider: Any, lyceum_settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = make_provider(lyceum_settings)
    probed = provider.check_credentials(probe=True)
    assert probed.found and probed.identity == "standin-org" and probed.source == "environment LYCEUM_API_KEY"
    monkeypatch.delenv("LYCEUM_API_KEY")
    missing = provider.check_credentials(probe=False)
    assert not missing.found and "LYCEUM_API_KEY" in missing.hint
    with pytest.raises(CredentialsError):
        provider.create(spec())
    config = tmp_path / "home" / ".lyceum" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"api_key": API_KEY, "base_url": "https://api.lyceum.technology"}))
    found = provider.check_credentials(probe=True)
    assert found.found and str(config) in found.source and found.identity == "standin-org"
    assert API_KEY not in json.dumps(found.model_dump(mode="json"))


def test_no_secret_in_state_plan_or_instances(provider: Provider, project: Path, tmp_path: Path) -> None:
    instance, _status, _ = run_job(provider, project)
    plan = provider.plan(
        PlanRequest(
            steps=["create", "sync", "train", "wait", "collect", "terminate"],
            instance=spec(),
            job=JobSpec(job_id="job-plan", script="job.py"),
        )
    )
    blob = json.dumps([c.model_dump(mode="json") for c in plan]) + instance.model_dump_json()
    for path in (tmp_path / "runctl-home").rglob("*"):
        if path.is_file():
            blob += path.read_text(errors="replace")
    assert API_KEY not in blob and "testing" not in blob.replace("conformance", "")
    assert any(c.operation == "POST /execution/streaming/start" and c.paid for c in plan)
