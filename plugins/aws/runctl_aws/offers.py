"""What the AWS provider offers and at what price: the one GPU/instance-type resolution used by create, run, the dry
run and ``price``; the images each family needs (or a clear refusal); the ``price`` and ``capabilities`` hooks.

One function, :func:`resolve`, turns ``--instance-type`` / ``--gpu`` / ``--gpu-count`` into the instance type that
will be launched, so the price shown before anything is spent is the price of what is launched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runctl_aws import prices
from runctl_aws.common import client_for, settings_of
from runctl_aws.settings import (
    DEFAULT_ARM_AMI_PARAMETER,
    DEFAULT_ARM_GPU_AMI_NAME,
    DEFAULT_ARM_GPU_AMI_PARAMETER,
    DEFAULT_GPU_AMI_NAME,
    AwsSettings,
    resolve_region,
)
from runctl_core.errors import CapabilityError, RunctlError, UsageError
from runctl_core.models import Capabilities, Capability, Offer, PriceQuery, ProviderContext

TYPE_RE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
# AWS's own accelerators need the Neuron SDK and its images; runctl has no default for them
NEURON_FAMILIES = ("inf1", "inf2", "trn1", "trn1n", "trn2")


@dataclass(frozen=True)
class Resolution:
    """The instance type a request launches, its GPUs, and what differs from what was asked (``note``)."""

    instance_type: str
    gpu: str | None
    gpu_count: int
    note: str = ""


def resolve(settings: AwsSettings, instance_type: str | None, gpu: str | None, gpu_count: int) -> Resolution:
    """The instance type for ``--instance-type`` / ``--gpu`` (cheapest with exactly ``gpu_count`` GPUs, else the
    smallest machine with more, said in ``note``). Raises UsageError for names AWS does not have."""
    if instance_type:
        if not TYPE_RE.match(instance_type):
            raise UsageError(f"{instance_type!r} is not an EC2 instance type", "e.g. --instance-type g5.xlarge")
        info = prices.type_info(instance_type)
        if gpu and info is not None and info.gpu != prices.normalize_gpu(gpu):
            raise UsageError(f"{instance_type} has no {gpu} GPU", "give either --gpu or --instance-type")
        return Resolution(instance_type, info.gpu if info else None, info.gpu_count if info else 0)
    if gpu:
        wanted = prices.normalize_gpu(gpu)
        if wanted is None:
            raise UsageError(
                f"runctl knows no EC2 instance type with a {gpu!r} GPU",
                f"GPUs runctl knows on AWS: {', '.join(prices.known_gpus())}; or pass --instance-type",
            )
        exact = prices.types_for_gpu(wanted, gpu_count)
        if exact:
            return Resolution(exact[0].name, wanted, gpu_count)
        larger = [info for info in prices.types_for_gpu(wanted, None) if info.gpu_count > gpu_count]
        if not larger:
            raise UsageError(
                f"AWS has no instance type with {gpu_count} x {wanted}",
                f"available: {available_counts(wanted)}; pass --gpu-count with one of them",
            )
        larger.sort(key=lambda info: (info.gpu_count, prices.on_demand(info.name, "us-east-1") or 1e9))
        chosen = larger[0]
        return Resolution(
            chosen.name,
            wanted,
            chosen.gpu_count,
            note=f"AWS has no {gpu_count}x {wanted} machine; the smallest with {wanted} is {chosen.name} "
            f"with {chosen.gpu_count}x {wanted} ({available_counts(wanted)})",
        )
    return Resolution(settings.default_instance_type, None, 0)


def available_counts(gpu: str) -> str:
    """E.g. "A10G: 1x (g5.xlarge...), 4x (g5.12xlarge...), 8x (g5.48xlarge)"."""
    by_count: dict[int, list[str]] = {}
    for info in prices.types_for_gpu(gpu, None):
        by_count.setdefault(info.gpu_count, []).append(info.name)
    parts = [f"{count}x on {', '.join(names[:3])}" for count, names in sorted(by_count.items())]
    return f"{gpu} on AWS: " + "; ".join(parts)


@dataclass(frozen=True)
class ImageChoice:
    """Where the default AMI of an instance type comes from: a public SSM parameter, then a name pattern."""

    parameter: str
    name_pattern: str | None
    what: str


def default_image(settings: AwsSettings, instance_type: str) -> ImageChoice:
    """The default image of a family, or a CapabilityError for families runctl has none for (never an image of
    the wrong architecture or without the accelerator's driver)."""
    family = prices.family(instance_type)
    if family in NEURON_FAMILIES:
        raise CapabilityError(
            f"{instance_type} is an AWS Inferentia/Trainium machine; runctl has no default image with the Neuron SDK",
            "pass an AMI with the Neuron SDK: --image ami-... (e.g. an AWS Deep Learning AMI Neuron), "
            "or choose a GPU type (--gpu T4, A10G, L4, ...)",
        )
    arm = prices.is_arm_type(instance_type) or family == "g5g"
    if prices.is_gpu_type(instance_type):
        if arm:  # Graviton with NVIDIA T4G: the arm64 Deep Learning Base AMI
            return ImageChoice(DEFAULT_ARM_GPU_AMI_PARAMETER, DEFAULT_ARM_GPU_AMI_NAME, "Deep Learning Base arm64")
        return ImageChoice(settings.gpu_ami_parameter, DEFAULT_GPU_AMI_NAME, "Deep Learning Base")
    if arm:
        return ImageChoice(DEFAULT_ARM_AMI_PARAMETER, None, "Amazon Linux 2023 arm64")
    return ImageChoice(settings.cpu_ami_parameter, None, "Amazon Linux 2023")


def capabilities(ctx: ProviderContext) -> Capabilities:
    settings = settings_of(ctx)
    return Capabilities(
        spot=Capability(supported=True),
        stop=Capability(
            supported=False,
            reason="runctl terminates EC2 instances instead of stopping them "
            "(a stopped instance still bills its EBS volume)",
        ),
        log_follow=Capability(supported=True),
        checkpoints=Capability(supported=True),
        max_runtime=Capability(supported=True),
        gpu=Capability(supported=True),
        shell=Capability(supported=True),  # an SSM session (shell.py)
        port_forward=Capability(supported=True),  # one port per SSM session
        paid=True,
        poll_interval=settings.poll_interval,
        ready_timeout=settings.ready_timeout,
    )


def price(ctx: ProviderContext, query: PriceQuery) -> list[Offer]:
    from runctl_aws.credentials import quick_credentials

    settings = settings_of(ctx)
    region = query.region or resolve_region(settings)[0] or "us-east-1"
    note = ""
    if query.instance_type:
        names = [query.instance_type]
    elif query.gpu:
        names = [info.name for info in prices.types_for_gpu(query.gpu, query.gpu_count)]
        if not names and query.gpu_count is not None and prices.normalize_gpu(query.gpu):
            try:  # no exact count: the machines create would launch (the smallest count above), said so
                chosen = resolve(settings, None, query.gpu, query.gpu_count)
            except UsageError:  # no count above either
                chosen = None
                note = f"AWS has no {query.gpu_count}x {prices.normalize_gpu(query.gpu)} machine; " + (
                    available_counts(str(prices.normalize_gpu(query.gpu)))
                )
            if chosen is not None:
                note = chosen.note
                names = [info.name for info in prices.types_for_gpu(query.gpu, chosen.gpu_count)]
    else:
        names = prices.known_types()
    if not names:
        if note:
            raise UsageError(note, "pass a --gpu-count AWS has, or another --gpu")
        return []
    table = f"bundled table {prices.table_date()} ({prices.table_age_days()} days old)"
    listed: dict[str, float] = {}
    api_source = ""
    if quick_credentials(settings.profile).found:
        from runctl_aws.pricing import on_demand_prices

        listed, api_source = on_demand_prices(lambda: client_for(ctx, region), ctx.state_dir, names, region)
    od_source = api_source + (f"; {table} for the rest" if listed and len(listed) < len(names) else "") or table
    spot: dict[str, float] = {}
    spot_source = "spot: not asked"
    if query.spot is not False:
        spot_source = "spot: no credentials"
        if quick_credentials(settings.profile).found:
            try:
                spot = client_for(ctx, region).spot_prices(names)
                spot_source = "spot: describe_spot_price_history"
            except RunctlError as exc:
                spot_source = f"spot: unavailable ({exc.code})"
    if query.instance_type and prices.type_info(query.instance_type) is None and query.instance_type not in listed:
        # not in the bundled table and not priced by AWS: never an offer with no price (a made-up row)
        from runctl_aws.pricing import listed_as_absent

        if listed_as_absent(ctx.state_dir, query.instance_type, region):
            return []  # AWS's price list has no such product in this region: not offered
        from runctl_core.errors import CredentialsError

        raise CredentialsError(
            f"{query.instance_type} is not in runctl's bundled table of {len(prices.known_types())} EC2 types, "
            "and AWS's price list could not be asked (it needs credentials with pricing:GetProducts)",
            "check the name (`runctl --provider aws price` lists the bundled types); configure AWS credentials "
            "to ask AWS for any other type",
        )
    try:  # the type create launches for this query (its default when none is named): the price shown first
        launched: str | None = resolve(settings, query.instance_type, query.gpu, query.gpu_count or 1).instance_type
    except UsageError:
        launched = None
    found = []
    for name in names:
        info = prices.type_info(name)
        found.append(
            Offer(
                provider="aws",
                instance_type=name,
                gpu=info.gpu if info else None,
                gpu_count=info.gpu_count if info else 0,
                vcpus=info.vcpus if info else None,
                memory_gb=info.memory_gb if info else None,
                on_demand_hourly=listed.get(name, prices.on_demand(name, region)),
                spot_hourly=spot.get(name),
                availability="unknown",
                region=region,
                source=(f"{note}. " if note else "") + f"on-demand: {od_source}; {spot_source}",
                chosen=name == launched,
            )
        )
    return found
