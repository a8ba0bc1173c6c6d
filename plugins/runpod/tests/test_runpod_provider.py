"""Hook-level tests of the RunPod provider on the (deprecated) GraphQL API, against the stand-ins: faults, spot,
keys, secrets, GPU names. REST v2 (the default) has its own in test_runpod_rest.py and the CLI tests."""

from __future__ import annotations

import base64
import json
import stat
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import API_KEY
from graphql import parse
from runpod_standin import CAPACITY_MESSAGE, CATALOGUE, StandIn

from runctl_core.errors import AuthError, CapacityError, ProviderError, SpotRefused, TransientError, UsageError
from runctl_core.files import scan_project
from runctl_core.models import (
    Instance,
    InstanceSpec,
    InstanceState,
    JobSpec,
    JobState,
    PlanRequest,
    PriceQuery,
    ProviderContext,
)
from runctl_core.plugins import Provider, load_provider
from runctl_core.retry import RetryPolicy
from runctl_runpod.graphql import GraphQLClient, classify, literal
from runctl_runpod.models import GpuType
from runctl_runpod.provider import INIT_SCRIPT, match_gpus


class Recorder:
    """Stands in for the core's progress object: keeps warnings and answers confirmations."""

    def __init__(self, answer: bool = False) -> None:
        self.warnings: list[str] = []
        self.updates: list[str] = []
        self.answer = answer

    def update(self, message: str) -> None:
        self.updates.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def confirm(self, question: str) -> bool:
        self.warnings.append(question)
        return self.answer


@pytest.fixture
def ctx(standin: StandIn, graphql_settings: dict[str, Any], tmp_path: Path) -> ProviderContext:
    state = tmp_path / "home" / "providers" / "runpod"
    state.mkdir(parents=True)
    return ProviderContext(
        provider="runpod", state_dir=state, settings=graphql_settings, owner="tester", progress=Recorder()
    )


@pytest.fixture
def provider(ctx: ProviderContext) -> Provider:
    return load_provider("runpod", ctx, RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05))


def spec(**extra: Any) -> InstanceSpec:
    fields: dict[str, Any] = {
        "intent_id": f"intent-{uuid.uuid4().hex[:10]}",
        "owner": "tester",
        "job_id": f"job-{uuid.uuid4().hex[:6]}",
        "gpu": "RTX 4090",
    }
    fields.update(extra)
    return InstanceSpec(**fields)


def wait_running(provider: Provider, instance: Instance) -> Instance:
    for _ in range(200):
        instance = provider.ready(instance)
        if instance.state is not InstanceState.PENDING:
            return instance
        time.sleep(0.02)
    raise AssertionError(f"never ready: {instance}")


# ----------------------------------------------------------------------------------------------- the stand-in


def test_standin_rejects_queries_outside_the_schema(standin: StandIn) -> None:
    client = GraphQLClient(API_KEY, standin.url)
    with pytest.raises(ProviderError, match="Cannot query field"):
        client.execute("query { gpuTypes { id priceEachHour } }", "gpuTypes", idempotent=True)
    with pytest.raises(ProviderError):
        client.execute("mutation { podTerminate(input: {podId: 5}) }", "podTerminate", idempotent=False)
    response = httpx.post(f"{standin.url}/graphql", json={"query": "{ myself { id } }"})
    assert response.status_code == 401  # no Bearer key


def test_graphql_literals_escape_strings() -> None:
    nasty = 'say "hi"\n\\ \u00e9 \U0001f600'
    document = f"mutation {{ podTerminate(input: {{podId: {literal(nasty)}}}) }}"
    parsed = parse(document)
    value = parsed.definitions[0].selection_set.selections[0].arguments[0].value.fields[0].value  # type: ignore[attr-defined]
    assert value.value == nasty


def test_every_plugin_query_validates(provider: Provider, standin: StandIn, tmp_path: Path) -> None:
    """Walk through every API operation the plugin has; the stand-in validates each document (400 otherwise)."""
    provider.check_credentials(probe=True)
    provider.price(PriceQuery(gpu="A100", gpu_count=2))
    created = provider.create(spec())
    provider.status(created, None)
    provider.list_instances()
    provider.terminate(created)
    assert {"myself", "gpuTypes", "podFindAndDeployOnDemand", "pod", "podTerminate"} <= set(standin.operations())


# ----------------------------------------------------------------------------------------------- errors


def test_429_and_500_are_retried_inside_the_client(ctx: ProviderContext, standin: StandIn) -> None:
    ctx.settings["retries"] = 3
    provider = load_provider("runpod", ctx, RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05))
    standin.inject("429", "gpuTypes")
    standin.inject("500", "gpuTypes")
    offers = provider.price(PriceQuery(gpu="RTX 4090"))
    assert offers and offers[0].gpu == "RTX 4090"
    assert standin.operations().count("gpuTypes") == 4  # catalogue: 429, 500, ok; prices: ok


def test_persistent_5xx_is_a_transient_error(ctx: ProviderContext, standin: StandIn) -> None:
    standin.inject("500", "*", times=100)
    provider = load_provider("runpod", ctx, RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02))
    with pytest.raises(TransientError, match="HTTP 500"):
        provider.price(PriceQuery(gpu="A100"))
    assert len(standin.requests) == 2  # one retry layer: the client's 2 tries, not multiplied by the core's


def test_bad_key_is_an_auth_error_that_names_the_variable_not_the_key(
    provider: Provider, monkeypatch: pytest.MonkeyPatch, ctx: ProviderContext, standin: StandIn
) -> None:
    secret = "rpa_THISISWRONG000111222333"
    monkeypatch.setenv("RUNPOD_API_KEY", secret)
    with pytest.raises(AuthError) as caught:
        provider.create(spec())
    assert "RUNPOD_API_KEY" in caught.value.hint and "401" in caught.value.message
    assert secret not in str(caught.value.to_dict())
    status = provider.check_credentials(probe=True)
    assert status.found and "401" in status.message and secret not in status.model_dump_json()
    assert standin.pods == {}


def test_secrets_stay_out_of_state_and_plans(provider: Provider, ctx: ProviderContext, standin: StandIn) -> None:
    created = provider.create(spec())
    provider.terminate(created)
    for path in ctx.state_dir.rglob("*"):
        if path.is_file():
            assert API_KEY not in path.read_text(errors="replace"), path
    plan = provider.plan(
        PlanRequest(
            steps=["create", "sync", "train", "wait", "collect", "terminate"],
            instance=spec(spot=True),
            job=JobSpec(job_id="job-p", script="train.py"),
        )
    )
    dumped = json.dumps([c.model_dump(mode="json") for c in plan])
    assert API_KEY not in dumped and "podRentInterruptable" in dumped and "BEGIN OPENSSH" not in dumped
    assert created.model_dump_json().count(API_KEY) == 0


def test_capacity_error_message_is_a_capacity_error() -> None:
    assert isinstance(classify(CAPACITY_MESSAGE, "podFindAndDeployOnDemand"), CapacityError)
    assert type(classify("pod not found to terminate", "podTerminate")).__name__ == "NotFoundError"


def test_lost_create_response_finds_the_pod_instead_of_making_another(provider: Provider, standin: StandIn) -> None:
    standin.inject("lost_response", "podFindAndDeployOnDemand")
    created = provider.create(spec())
    assert list(standin.pods) == [created.id]  # one pod, found through its RUNCTL_INTENT
    assert standin.operations().count("podFindAndDeployOnDemand") == 1
    provider.terminate(created)


def test_retried_create_with_the_same_intent_reuses_the_pod(provider: Provider, standin: StandIn) -> None:
    first_spec = spec()
    first = provider.create(first_spec)
    again = provider.create(first_spec)
    assert again.id == first.id and len(standin.pods) == 1
    provider.terminate(first)


# ----------------------------------------------------------------------------------------------- create


def test_key_pair_is_private_and_removed_on_terminate(
    provider: Provider, ctx: ProviderContext, standin: StandIn
) -> None:
    created = provider.create(spec())
    key = Path(created.details["ssh_key"])
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert key.is_relative_to(ctx.state_dir)
    assert standin.pods[created.id].env["PUBLIC_KEY"].startswith("ssh-ed25519 ")
    provider.terminate(created)
    assert not key.exists()


def test_pod_settings_reach_the_api(ctx: ProviderContext, standin: StandIn) -> None:
    ctx.settings.update({"cloud_type": "COMMUNITY", "container_disk_gb": 33, "volume_gb": 44})
    provider = load_provider("runpod", ctx)
    created = provider.create(spec(gpu="A6000", disk_gb=55))
    query = next(r["query"] for r in standin.requests if "podFindAndDeployOnDemand" in r["fields"])
    assert "cloudType: COMMUNITY" in query and "containerDiskInGb: 33" in query and "volumeInGb: 55" in query
    assert '"22/tcp"' in query and "startSsh: true" in query
    assert created.hourly_price == pytest.approx(0.33) and created.instance_type == "community:NVIDIA RTX A6000"
    provider.terminate(created)


def test_other_images_get_an_sshd_init_script(provider: Provider, standin: StandIn, tmp_path: Path) -> None:
    created = provider.create(spec(image="python:3.11-slim"))
    args = standin.pods[created.id].docker_args
    encoded = args.split("echo ", 1)[1].split(" ", 1)[0]
    script = base64.b64decode(encoded)
    assert script == INIT_SCRIPT.read_bytes()
    (tmp_path / "init.sh").write_bytes(script)
    assert subprocess.run(["sh", "-n", str(tmp_path / "init.sh")]).returncode == 0
    provider.terminate(created)


def test_ambiguous_gpu_picks_the_cheapest_in_stock(provider: Provider, ctx: ProviderContext, standin: StandIn) -> None:
    created = provider.create(spec(gpu="A100"))
    assert standin.pods[created.id].gpu_type_id == "NVIDIA A100 80GB PCIe"  # cheaper than SXM on secure cloud
    assert any("matches 2" in u for u in ctx.progress.updates)
    provider.terminate(created)


def test_unknown_gpu_is_a_usage_error(provider: Provider) -> None:
    with pytest.raises(UsageError, match="no GPU called"):
        provider.create(spec(gpu="Voodoo 5"))
    assert provider.price(PriceQuery(gpu="Voodoo 5")) == []


def test_max_price_is_respected(provider: Provider, standin: StandIn) -> None:
    with pytest.raises(CapacityError, match="max-price"):
        provider.create(spec(gpu="H100", gpu_count=2, max_price=3.0))
    assert standin.pods == {}


def test_gpu_names_resolve() -> None:
    catalogue = [GpuType(id=g[0], displayName=g[1]) for g in CATALOGUE]
    assert [g.id for g in match_gpus("RTX 4090", catalogue)] == ["NVIDIA GeForce RTX 4090"]
    assert [g.id for g in match_gpus("4090", catalogue)] == ["NVIDIA GeForce RTX 4090"]
    assert len(match_gpus("a100", catalogue)) == 2
    assert [g.id for g in match_gpus("NVIDIA A100-SXM4-80GB", catalogue)] == ["NVIDIA A100-SXM4-80GB"]
    assert [g.display_name for g in match_gpus("rtx 4000 ada", catalogue)] == ["RTX 4000 Ada"]
    assert match_gpus("", catalogue) == []


# ----------------------------------------------------------------------------------------------- spot


def test_spot_pod_bids_the_minimum_per_gpu(provider: Provider, standin: StandIn) -> None:
    created = provider.create(spec(spot=True, gpu_count=2))
    pod = standin.pods[created.id]
    assert pod.spot and created.spot
    assert created.hourly_price == pytest.approx(0.70)  # 0.35 per GPU x 2
    query = next(r["query"] for r in standin.requests if "podRentInterruptable" in r["fields"])
    assert "bidPerGpu: 0.35" in query
    provider.terminate(created)


def test_spot_refused_is_left_to_the_core_with_both_prices(provider: Provider, standin: StandIn) -> None:
    standin.spot_enabled = False
    with pytest.raises(SpotRefused, match="spot unavailable") as caught:
        provider.create(spec(spot=True, on_demand_fallback="always"))  # the provider never falls back itself
    assert caught.value.spot_price == pytest.approx(0.35) and caught.value.on_demand_price == pytest.approx(0.69)
    assert "--on-demand" in caught.value.hint
    assert standin.pods == {}


def test_spot_bid_below_minimum_is_refused(ctx: ProviderContext, standin: StandIn) -> None:
    ctx.settings["spot_bid"] = 0.01
    provider = load_provider("runpod", ctx)
    with pytest.raises(CapacityError, match="below RunPod's minimum"):
        provider.create(spec(spot=True))
    assert "podRentInterruptable" not in standin.operations()


def test_status_after_preemption_and_after_a_stop(provider: Provider, standin: StandIn, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "sleep.py").write_text("import time\nprint('up', flush=True)\ntime.sleep(600)\n")
    spot = wait_running(provider, provider.create(spec(spot=True)))
    provider.sync(spot, scan_project(project))
    job = provider.train(spot, JobSpec(job_id="job-spot01", script="sleep.py"))
    standin.preempt(spot.id)
    report = provider.status(spot, job)
    assert report.instance.state is InstanceState.STOPPED and "spot" in report.instance.message
    assert report.job is not None and report.job.state is JobState.INTERRUPTED
    assert provider.list_checkpoints(spot, report.job) == []
    chunk = provider.logs(spot, report.job, 0)
    assert chunk is not None and chunk.complete
    provider.terminate(spot)
    assert spot.id in standin.terminated  # a stopped pod can still be terminated (it bills its volume)


# ----------------------------------------------------------------------------------------------- jobs


def test_resume_dir_seeds_the_checkpoint_directory(provider: Provider, tmp_path: Path, standin: StandIn) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "resume.py").write_text(
        "import os, pathlib\nd = pathlib.Path(os.environ['RUNCTL_CHECKPOINT_DIR'])\n"
        "print(sorted(p.name for p in d.iterdir()))\n"
    )
    resume = tmp_path / "earlier"
    (resume / "sub").mkdir(parents=True)
    (resume / "ckpt-0007.json").write_text("{}")
    (resume / "sub" / "opt.bin").write_bytes(b"\x00\x01")
    instance = wait_running(provider, provider.create(spec()))
    try:
        provider.sync(instance, scan_project(project))
        status = provider.train(instance, JobSpec(job_id="job-res01", script="resume.py", resume_dir=resume))
        for _ in range(300):
            status = provider.status(instance, status).job or status
            if status.state.terminal:
                break
            time.sleep(0.02)
        assert status.state is JobState.SUCCEEDED
        chunk = provider.logs(instance, status, 0)
        assert chunk is not None and "['ckpt-0007.json', 'sub']" in chunk.data
        names = {c.name for c in provider.list_checkpoints(instance, status) or []}
        assert names == {"ckpt-0007.json", "sub/opt.bin"}
    finally:
        provider.terminate(instance)


def test_list_instances_ignores_pods_runctl_did_not_create(provider: Provider, standin: StandIn) -> None:
    mine = provider.create(spec())
    standin.create_pod({"gpuTypeId": "NVIDIA RTX A6000", "name": "someone-elses", "cloudType": "SECURE"}, None)
    listed = provider.list_instances() or []
    assert [i.id for i in listed] == [mine.id]
    assert listed[0].tags["runctl:owner"] == "tester"
    provider.terminate(mine)


def test_null_stock_with_zero_price_is_not_available(provider: Provider, standin: StandIn) -> None:
    from runctl_runpod.models import LowestPrice
    from runctl_runpod.offers import lowest

    # what RunPod's lowestPrice answers for a combination it cannot place, beside a non-zero list price
    gpu = GpuType(id="x", securePrice=0.69, secure=LowestPrice(uninterruptablePrice=0, stockStatus=None))
    assert lowest(gpu, "SECURE") == (None, None, "none")
    standin.stock["NVIDIA GeForce RTX 4090"] = None
    with pytest.raises(CapacityError, match="in stock"):
        provider.create(spec())
    assert "podFindAndDeployOnDemand" not in standin.operations() and standin.pods == {}
    offers = provider.price(PriceQuery(gpu="RTX 4090"))
    assert offers == [] or all(o.availability == "none" for o in offers)


def test_stock_is_asked_with_the_data_centre_the_pod_is_created_in(provider: Provider, standin: StandIn) -> None:
    created = provider.create(spec(gpu="A100", region="EU-RO-1"))  # only the SXM variant is in EU-RO-1
    assert standin.pods[created.id].gpu_type_id == "NVIDIA A100-SXM4-80GB"
    queries = [r["query"] for r in standin.requests if "gpuTypes" in r["fields"] and "lowestPrice" in r["query"]]
    assert queries and all('dataCenterId: "EU-RO-1"' in q for q in queries)
    provider.terminate(created)
