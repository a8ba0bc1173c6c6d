"""RunPod's REST API v2 (the default) through the CLI, against the stand-in that validates every request and
response against RunPod's published OpenAPI document: the createPod failure table, spot per API, stock checked
with the create's own filters, candidates tried in order, the SSE log fallback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import _toml
from runpod_standin import StandIn

from runctl_core.testing.cli import CliResult

PCIE, SXM = "NVIDIA A100 80GB PCIe", "NVIDIA A100-SXM4-80GB"


def creates(standin: StandIn) -> list[dict[str, Any]]:
    return [r["body"] for r in standin.requests if r["fields"] == ["createPod"]]


def run(cli: Callable[..., CliResult], gpu: str, *extra: str) -> CliResult:
    return cli("-o", "json", "run", "examples/train.py", "--gpu", gpu, *extra, "--", "--epochs", "1")


def test_400_tries_the_next_candidate(cli: Callable[..., CliResult], standin: StandIn) -> None:
    standin.refuse[PCIE] = 400  # the catalogue says "available", the create is refused (createPod's docs)
    result = run(cli, "A100")
    assert result.code == 0, result.err
    assert [b["gpu"]["id"] for b in creates(standin)] == [PCIE, SXM]  # cheapest first, then the other variant
    assert "trying the next candidate" in result.err
    assert result.json()["instance"]["gpu"] == "A100 SXM" and standin.pods == {}


def test_403_skips_the_pool(cli: Callable[..., CliResult], standin: StandIn) -> None:
    standin.refuse[PCIE] = 403
    result = run(cli, "A100")
    assert result.code == 0, result.err
    assert [b["gpu"]["id"] for b in creates(standin)] == [PCIE, SXM]


def test_402_stops_with_the_balance_hint(cli: Callable[..., CliResult], standin: StandIn) -> None:
    standin.inject("402", "createPod")
    result = run(cli, "A100")
    assert result.code == 4, result.err
    error = result.error()
    assert error["code"] == "quota" and "balance" in error["message"] and "billing" in error["hint"]
    assert len(creates(standin)) == 1 and standin.pods == {}  # no other candidate tried


def test_422_is_a_usage_error_never_retried(cli: Callable[..., CliResult], standin: StandIn) -> None:
    standin.inject("422", "createPod")
    result = run(cli, "A100")
    assert result.code == 2, result.err
    assert result.error()["code"] == "usage" and "invalid" in result.error()["message"]
    assert len(creates(standin)) == 1 and standin.pods == {}


@pytest.mark.parametrize("fault", ["429", "500", "lost_response"])
def test_429_and_5xx_retry_the_same_candidate_without_a_second_pod(
    cli: Callable[..., CliResult], standin: StandIn, fault: str
) -> None:
    standin.inject(fault, "createPod")
    result = run(cli, "RTX 4090")
    assert result.code == 0, result.err
    ids = [b["gpu"]["id"] for b in creates(standin)]
    # a lost answer (the pod was made) is found by its intent before any second create
    assert ids == (["NVIDIA GeForce RTX 4090"] if fault == "lost_response" else ["NVIDIA GeForce RTX 4090"] * 2)
    assert len(standin.terminated) == 1 and standin.pods == {}


def test_every_candidate_refused_says_so(cli: Callable[..., CliResult], standin: StandIn) -> None:
    standin.refuse[PCIE] = standin.refuse[SXM] = 400
    result = run(cli, "A100")
    assert result.code == 4
    error = result.error()
    assert "refused all 2 candidate(s)" in error["message"] and "rule of the request" in error["hint"]


def test_spot_on_rest_fails_before_anything_with_the_way_out(cli: Callable[..., CliResult], standin: StandIn) -> None:
    result = run(cli, "RTX 4090", "--spot")
    assert result.code == 2, result.err
    error = result.error()
    assert error["code"] == "unsupported" and 'api = "graphql"' in error["message"]
    assert creates(standin) == [] and standin.pods == {}


def test_graphql_is_selectable_with_a_deprecation_note(
    cli: Callable[..., CliResult],
    standin: StandIn,
    project: Path,
    graphql_settings: dict[str, Any],
) -> None:
    (project / ".runctl.toml").write_text(_toml(graphql_settings))
    result = cli("price", "--gpu", "RTX 4090")
    assert result.code == 0, result.err
    assert "deprecated" in result.err and "early 2027" in result.err and result.err.count("deprecated") == 1
    assert "gpuTypes" in standin.operations() and "listGpuTypes" not in standin.operations()


def test_no_stock_means_nothing_is_created(cli: Callable[..., CliResult], standin: StandIn) -> None:
    standin.stock["NVIDIA GeForce RTX 4090"] = None  # availability NONE (GraphQL: stockStatus null, price 0)
    result = run(cli, "RTX 4090")
    assert result.code == 4 and "in stock" in result.error()["message"]
    assert creates(standin) == []


def test_stock_is_checked_with_the_create_filters_and_region(cli: Callable[..., CliResult], standin: StandIn) -> None:
    result = run(cli, "A100", "--region", "EU-RO-1")  # only the SXM variant is placed in EU-RO-1
    assert result.code == 0, result.err
    assert [(b["gpu"]["id"], b["dataCenterIds"]) for b in creates(standin)] == [(SXM, ["EU-RO-1"])]
    catalogue = [r["args"] for r in standin.requests if r["fields"] == ["listGpuTypes"] and r["args"]]
    assert catalogue and all(a["product"] == "POD" and a["count"] == "1" for a in catalogue)
    by_region = run(cli, "RTX 4090", "--region", "EUROPE")  # a region: its data centres, from the catalogue
    assert by_region.code == 0, by_region.err
    assert creates(standin)[-1]["dataCenterIds"] == ["EU-RO-1"]


def test_community_cloud_only_when_allowed(
    cli: Callable[..., CliResult],
    standin: StandIn,
    project: Path,
    runpod_settings: dict[str, Any],
) -> None:
    standin.refuse["NVIDIA GeForce RTX 4090@SECURE"] = 400
    assert run(cli, "RTX 4090").code == 4
    (project / ".runctl.toml").write_text(_toml({**runpod_settings, "community_fallback": True}))
    result = run(cli, "RTX 4090")
    assert result.code == 0, result.err
    assert [b["cloud"] for b in creates(standin)] == ["SECURE", "SECURE", "COMMUNITY"]


def test_logs_of_a_pod_not_reachable_yet_come_from_its_log_stream(
    cli: Callable[..., CliResult], standin: StandIn, runpod_settings: dict[str, Any], tmp_path: Path
) -> None:
    from runctl_core.models import Instance, InstanceState, JobState, JobStatus, ProviderContext
    from runctl_runpod.outputs import logs

    standin.boot_polls = 10_000  # the pod stays STARTING: no SSH yet
    created = cli("-o", "json", "create", "--gpu", "RTX 4090")
    assert created.code == 0, created.err
    pod_id = created.json()["id"]

    class Progress:
        warnings: list[str] = []

        def update(self, message: str) -> None: ...

        def warn(self, message: str) -> None:
            self.warnings.append(message)

    progress = Progress()
    ctx = ProviderContext(
        provider="runpod", state_dir=tmp_path / "state", settings=runpod_settings, owner="t", progress=progress
    )
    chunk = logs(
        ctx,
        Instance(id=pod_id, provider="runpod", state=InstanceState.PENDING),
        JobStatus(job_id="job-x", state=JobState.PENDING),
        0,
    )
    assert chunk.data == "" and chunk.next_offset == 0 and not chunk.complete  # the job's log offsets untouched
    assert "getPodLogs" in standin.operations()
    assert "not reachable over SSH" in progress.warnings[0] and "[container] start.sh" in progress.warnings[0]
    assert cli("terminate", pod_id, "--yes").code == 0
