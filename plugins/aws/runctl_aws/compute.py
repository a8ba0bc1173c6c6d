"""The instance life cycle on EC2: create (spot, fallback, quota), ready, status, terminate, list; surviving
EC2's eventual consistency right after RunInstances."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

from runctl_aws import prices
from runctl_aws.client import AwsClient
from runctl_aws.common import (
    EC2_STATES,
    PROFILE_PROPAGATION,
    PROFILE_WAIT,
    SPOT_QUOTA,
    SPOT_RECLAIMED,
    SPOT_REFUSED,
    client_for,
    describe,
    job_prefix,
    job_status,
    not_visible_yet,
    read_state,
    settings_of,
    staging_prefix,
    state_file,
    to_instance,
    write_state,
    young,
)
from runctl_aws.launch import check_prerequisites, image_for, quota_error, run_params, tags_for
from runctl_aws.models import Ec2Instance
from runctl_core.errors import (
    AuthError,
    CapacityError,
    ProviderError,
    QuotaError,
    RunctlError,
    TransientError,
)
from runctl_core.models import (
    CredentialStatus,
    Instance,
    InstanceSpec,
    InstanceState,
    JobState,
    JobStatus,
    ProviderContext,
    StatusReport,
)

_CREATED_AT: dict[str, str] = {}  # intent id -> creation time (a replayed create sends the same parameters)


def send_terminate(ctx: ProviderContext, client: AwsClient, instance: Instance) -> str | None:
    """TerminateInstances, always sent; NotFound is retried while the instance may merely be invisible yet."""
    delay = 0.5
    deadline = time.monotonic() + min(120.0, settings_of(ctx).consistency_window)
    while True:
        state: str | None = client.terminate_instance(instance.id)
        if state is not None or not young(ctx, instance) or time.monotonic() >= deadline:
            return state
        ctx.report(f"EC2 does not list {instance.id} yet; retrying TerminateInstances")
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def check_credentials(ctx: ProviderContext, probe: bool) -> CredentialStatus:
    from runctl_aws.credentials import find_credentials, quick_credentials

    settings = settings_of(ctx)
    if not probe:  # looking only: no botocore import, no endpoint asked
        return quick_credentials(settings.profile)
    found = find_credentials(settings.profile, allow_network=True)
    if not found.found:
        return found
    try:
        identity = client_for(ctx).caller_identity()
    except AuthError as exc:  # STS said no (InvalidClientTokenId, SignatureDoesNotMatch, ExpiredToken...)
        return found.model_copy(
            update={
                "accepted": False,
                "message": f"refused by AWS: {exc.message}",
                "hint": exc.hint or "check the credentials: aws sts get-caller-identity",
            }
        )
    except RunctlError as exc:  # AWS could not be asked (network, throttling): neither accepted nor refused
        return found.model_copy(update={"message": f"AWS could not be asked: {exc.message}", "hint": exc.hint})
    return found.model_copy(update={"accepted": True, "identity": identity, "message": "accepted by AWS"})


def spot_price(client: AwsClient, instance_type: str) -> float | None:
    try:
        value = client.spot_prices([instance_type]).get(instance_type)
    except RunctlError:
        return None
    return float(value) if value is not None else None


def create(ctx: ProviderContext, spec: InstanceSpec) -> Instance:
    from runctl_aws.offers import resolve

    client = client_for(ctx, spec.region)
    resolution = resolve(settings_of(ctx), spec.instance_type, spec.gpu, spec.gpu_count)
    instance_type = resolution.instance_type
    if resolution.note:
        ctx.warn(resolution.note)
    check_prerequisites(ctx, client)
    region = str(client.region)
    image = image_for(ctx, client, spec, instance_type)
    root_device = client.root_device_name(image) if spec.disk_gb else None
    created = _CREATED_AT.setdefault(spec.intent_id, datetime.now(timezone.utc).isoformat(timespec="seconds"))
    tags = tags_for(spec, created)
    on_demand = prices.on_demand(instance_type, region)
    if spec.spot:
        ctx.report(f"requesting a spot {instance_type} in {region}")
        params = run_params(ctx, spec, instance_type, image, tags, True, root_device)
        try:
            ec2 = run_instances(ctx, client, params)
            _created(ctx, ec2.id)
            instance = to_instance(ec2, region)
            return instance.model_copy(update={"hourly_price": spot_price(client, instance_type)})
        except (CapacityError, QuotaError) as exc:
            code = str(exc.details.get("aws_code", ""))
            if code in SPOT_QUOTA or (isinstance(exc, QuotaError) and code not in SPOT_REFUSED):
                raise quota_error(exc, instance_type, region, spot=True) from None
            if code not in SPOT_REFUSED:
                raise
            cancel_open_spot_requests(client, spec.intent_id)
            fallback(ctx, client, spec, instance_type, region, code, on_demand)
    ctx.report(f"launching an on-demand {instance_type} in {region}")
    params = run_params(ctx, spec, instance_type, image, tags, False, root_device)
    try:
        ec2 = run_instances(ctx, client, params)
    except QuotaError as exc:
        raise quota_error(exc, instance_type, region, spot=False) from None
    _created(ctx, ec2.id)
    return to_instance(ec2, region)


def _created(ctx: ProviderContext, instance_id: str) -> None:
    """RunInstances answered ``instance_id``: NotFound means "not visible yet" for a while (see ``young``), and the
    laptop's memory of the machine starts empty (nothing synced, no tools: the first sync reads nothing first)."""
    from runctl_aws.jobs import memory

    write_state(ctx, instance_id, created=time.time())
    memory(ctx, instance_id).mark_new()


def run_instances(ctx: ProviderContext, client: AwsClient, params: dict[str, Any]) -> Ec2Instance:
    """RunInstances; "Invalid IAM Instance Profile name" is retried for a bounded time, because IAM is
    eventually consistent and a profile created a moment ago may not be visible to EC2 yet
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html). The prerequisite check has
    already seen the profile in IAM, so this is propagation, not a wrong name."""
    deadline = time.monotonic() + PROFILE_WAIT
    delay = max(0.05, settings_of(ctx).retry_base_delay * 4)
    while True:
        try:
            ec2: Ec2Instance = client.run_instances(params)
            return ec2
        except ProviderError as exc:
            if PROFILE_PROPAGATION not in exc.message or time.monotonic() + delay > deadline:
                raise
        ctx.report("the instance profile is not visible to EC2 yet (IAM propagation); retrying RunInstances")
        time.sleep(delay)
        delay = min(delay * 2, 10.0)


def cancel_open_spot_requests(client: AwsClient, intent_id: str) -> None:
    try:
        open_requests = [
            r["SpotInstanceRequestId"]
            for r in client.spot_requests(intent_id=intent_id)
            if r.get("State") in ("open", "active")
        ]
        client.cancel_spot_requests(open_requests)
    except RunctlError:
        pass


def fallback(
    ctx: ProviderContext,
    client: AwsClient,
    spec: InstanceSpec,
    instance_type: str,
    region: str,
    code: str,
    on_demand: float | None,
) -> None:
    spot = spot_price(client, instance_type)
    od_text = f"${on_demand:.4f}/h" if on_demand is not None else "an unknown price (not in runctl's table)"
    spot_text = f"${spot:.4f}/h" if spot is not None else "unknown"
    ratio = f" ({on_demand / spot:.1f}x the spot price)" if on_demand and spot else ""
    comparison = f"on-demand {od_text} vs spot {spot_text}{ratio}"
    policy = spec.on_demand_fallback
    if policy == "always" or (
        policy == "ask"
        and ctx.confirm(f"Spot {instance_type} refused ({code}). Launch on-demand instead: {comparison}?")
    ):
        ctx.warn(
            f"spot capacity for {instance_type} in {region} refused ({code}); falling back to on-demand: {comparison}"
        )
        return
    raise CapacityError(
        f"spot capacity for {instance_type} in {region} was refused ({code}); no instance was created",
        f"retry later, try another --instance-type/--region, or allow on-demand with --on-demand-fallback always "
        f"({comparison})",
        details={"aws_code": code, "on_demand_hourly": on_demand, "spot_hourly": spot},
    )


def ready(ctx: ProviderContext, instance: Instance) -> Instance:
    client, ec2 = describe(ctx, instance)
    region = str(client.region)
    if ec2 is None:
        if young(ctx, instance):
            return not_visible_yet(instance)
        return instance.model_copy(update={"state": InstanceState.TERMINATED, "message": "instance not found"})
    current = to_instance(ec2, region, instance)
    if ec2.state != "running":
        if current.state is InstanceState.RUNNING:  # pragma: no cover - guarded above
            current = current.model_copy(update={"state": InstanceState.PENDING})
        if ec2.state == "pending":
            return current.model_copy(update={"message": "EC2 instance is starting"})
        return current
    waiting = current.model_copy(update={"state": InstanceState.PENDING})
    ping = client.ping_status(instance.id)
    if ping != "Online":
        what = "not registered yet" if ping is None else ping
        return waiting.model_copy(update={"message": f"waiting for the SSM agent ({what})"})
    # ready for sync/train once the SSM agent is online: the first useful command (sync's or train's) installs
    # runctl's tools in the same round trip and is the real check (a failure there names the instance and step)
    return current.model_copy(update={"message": "running; SSM agent online"})


def job_from_s3(ctx: ProviderContext, client: AwsClient, job_id: str) -> JobStatus | None:
    settings = settings_of(ctx)
    if not settings.bucket:
        return None
    data = client.get_bytes(settings.bucket, job_prefix(settings, job_id) + "job.json")
    if not data:
        return None
    try:
        return job_status(job_id, json.loads(data))
    except ValueError:
        return None


def killed_by_reclaim(ec2: Ec2Instance | None, recorded: JobStatus) -> bool:
    """A record the job's supervisor wrote as the reclaimed machine shut down: when EC2 reclaims a spot instance
    the OS stops every process (SIGTERM, then SIGKILL: "Spot Instance interruptions", EC2 User Guide), so the
    supervisor may record the job as failed or cancelled by a signal before the machine halts. That is the
    reclaim, not the script's own failure; a job that exited by itself (code 0..127) keeps its result."""
    if ec2 is None or ec2.state_reason not in SPOT_RECLAIMED:
        return False
    if recorded.state not in (JobState.FAILED, JobState.CANCELLED):
        return False
    return recorded.exit_code is None or recorded.exit_code < 0 or recorded.exit_code >= 128


def job_on_dead_instance(ctx: ProviderContext, client: AwsClient, ec2: Ec2Instance | None, job: JobStatus) -> JobStatus:
    recorded = job_from_s3(ctx, client, job.job_id)
    if recorded is not None and recorded.state.terminal and not killed_by_reclaim(ec2, recorded):
        return recorded
    if ec2 is not None and ec2.state_reason in SPOT_RECLAIMED:
        return (recorded or job).model_copy(
            update={"state": JobState.INTERRUPTED, "message": "the spot instance was reclaimed by AWS"}
        )
    return job.model_copy(
        update={"state": JobState.LOST, "message": "the instance ended without the job recording an exit code"}
    )


def status(ctx: ProviderContext, instance: Instance, job: JobStatus | None) -> StatusReport:
    client, ec2 = describe(ctx, instance)
    region = str(client.region)
    if ec2 is None and young(ctx, instance):
        return StatusReport(instance=not_visible_yet(instance), job=job)
    if ec2 is None:
        gone = instance.model_copy(update={"state": InstanceState.TERMINATED, "message": "instance not found"})
        if job is None or job.state.terminal:
            return StatusReport(instance=gone, job=job)
        return StatusReport(instance=gone, job=job_on_dead_instance(ctx, client, None, job))
    current = to_instance(ec2, region, instance)
    if job is None or job.state.terminal:
        return StatusReport(instance=current, job=job)
    if ec2.state != "running":
        if current.state.alive and ec2.state_reason not in SPOT_RECLAIMED and ec2.state == "pending":
            return StatusReport(instance=current, job=job)
        recorded = job_from_s3(ctx, client, job.job_id)
        if recorded is not None and recorded.state.terminal and not killed_by_reclaim(ec2, recorded):
            return StatusReport(instance=current, job=recorded)
        if current.state.alive and ec2.state_reason not in SPOT_RECLAIMED:
            return StatusReport(instance=current, job=job)  # shutting down: the record may still come
        return StatusReport(instance=current, job=job_on_dead_instance(ctx, client, ec2, job))
    from runctl_aws.jobs import job_on_instance

    return StatusReport(instance=current, job=job_on_instance(ctx, client, instance, job))


def terminate(ctx: ProviderContext, instance: Instance) -> Instance:
    from runctl_aws.jobs import stop_all

    settings = settings_of(ctx)
    client, ec2 = describe(ctx, instance)
    # whatever this laptop remembers of the instance (another laptop, another RUNCTL_HOME, `resources cleanup` of an
    # orphan know nothing of its tools): a running instance whose SSM agent answers gets the graceful stop, which
    # pushes each job's checkpoints and final record to S3. Bounded: grace + 60 s for the one SSM command.
    if ec2 is not None and ec2.state == "running" and settings.stop_jobs_on_terminate:
        try:
            if client.ping_status(instance.id) == "Online":
                ctx.report(f"stopping jobs on {instance.id} (checkpoints go to S3)")
                stop_all(ctx, client, instance)
        except RunctlError:
            pass  # best effort (a detached job's shutdown may cut the command): terminating stops everything anyway
    new_state: str | None = "terminated"
    if ec2 is None or ec2.state != "terminated":
        # always asked, even when EC2 did not list it: NotFound right after creation does not mean gone
        ctx.report(f"terminating {instance.id}")
        new_state = send_terminate(ctx, client, instance)
    cleanup(ctx, client, instance.id, ec2)
    final = to_instance(ec2, str(client.region), instance) if ec2 is not None else instance
    if new_state is None:
        return final.model_copy(update={"state": InstanceState.TERMINATED, "message": "instance not found"})
    if new_state == "shutting-down":  # EC2 stops billing the instance here; it is gone for runctl's purposes
        return final.model_copy(
            update={"state": InstanceState.TERMINATED, "message": "EC2 state shutting-down (no longer billed)"}
        )
    return final.model_copy(
        update={"state": EC2_STATES.get(new_state, InstanceState.STOPPING), "message": f"EC2 state {new_state}"}
    )


def cleanup(ctx: ProviderContext, client: AwsClient, instance_id: str, ec2: Ec2Instance | None) -> None:
    settings = settings_of(ctx)
    try:
        requests = {
            r["SpotInstanceRequestId"]
            for r in client.spot_requests(instance_id=instance_id)
            if r.get("State") in ("open", "active", "disabled")
        }
        if ec2 is not None and ec2.spot_request_id:
            requests.add(ec2.spot_request_id)
        client.cancel_spot_requests(sorted(requests))
    except RunctlError as exc:
        if isinstance(exc, TransientError):
            raise
    if settings.bucket:
        try:
            client.delete_prefix(settings.bucket, staging_prefix(settings, instance_id))
        except RunctlError as exc:
            if isinstance(exc, TransientError):
                raise
    from runctl_aws.jobs import memory

    state_file(ctx, instance_id).unlink(missing_ok=True)
    memory(ctx, instance_id).clear()


def list_instances(ctx: ProviderContext) -> list[Instance]:
    client = client_for(ctx)
    found = [
        to_instance(ec2, str(client.region))
        for ec2 in client.tagged_instances("runctl:owner")
        if "runctl:owner" in ec2.tags
    ]
    window = settings_of(ctx).consistency_window
    for instance in found:  # EC2 listed it: NotFound for its id soon after launch means "not visible yet"
        launched = instance.created_at.timestamp() if instance.created_at else None
        young = launched is not None and instance.state.alive and time.time() - launched < window
        if young and "created" not in read_state(ctx, instance.id):
            write_state(ctx, instance.id, created=launched)
    return found
