"""Dry runs: the provider calls a run or a create would make and what they would cost, with nothing created and
no credentials needed. The CLI prints a ``Plan``; the Python API returns it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from runctl_core.cost import describe_estimate, estimate
from runctl_core.models import InstanceSpec, Offer, PlannedCall, PlanRequest
from runctl_core.plugins import Provider
from runctl_core.preflight import check_nodes, check_request, plan_run, project_files, resolve_script
from runctl_core.run_models import InstanceRequest, RunRequest
from runctl_core.session import Session


class Alternative(BaseModel):
    model_config = ConfigDict(defer_build=True)

    provider: str
    offer: Offer
    hourly: float
    credentials: bool = True  # False: priced without credentials (a dry run); a real run needs them


class Plan(BaseModel):
    """What would happen: the provider, each call in order (``paid`` ones start billing) and the cost."""

    model_config = ConfigDict(defer_build=True)

    dry_run: bool = True
    provider: str
    calls: list[PlannedCall]
    estimate: str
    hourly_price: float | None = None
    alternatives: list[Alternative] | None = None  # --provider auto: every fitting offer, cheapest first
    skipped: list[dict[str, Any]] | None = None  # --provider auto: providers that cannot serve, and why
    job: dict[str, Any] | None = None  # the merged job (job file + flags), when there is one

    def document(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=False, exclude={"alternatives", "skipped", "job"}) | {
            k: v
            for k, v in self.model_dump(mode="json", include={"alternatives", "skipped", "job"}).items()
            if v is not None
        }


def run_plan(session: Session, provider: Provider, request: RunRequest) -> Plan:
    """The calls ``run`` would make on ``provider``."""
    root, rel = resolve_script(request.project_root, request.script)
    pinned = request.model_copy(update={"script": rel})
    check_request(provider, request.instance)
    check_nodes(provider, request.nodes, request.launcher)
    offer = estimate(provider, request.instance)
    calls = plan_run(provider, pinned, project_files(session, root, request.outputs_dir))
    return Plan(
        provider=provider.name,
        calls=calls,
        estimate=describe_estimate(offer, request.instance, provider.capabilities()),
        hourly_price=offer.best_price(request.instance.spot) if offer else None,
    )


def auto_run_plan(session: Session, request: RunRequest, preference: list[str] | None = None) -> Plan:
    """``--provider auto``: the plan on the cheapest fitting offer (or the first preferred provider's), with the
    alternatives it would fall over to."""
    from runctl_core.auto import candidates_for

    root, rel = resolve_script(request.project_root, request.script)
    candidates, skipped = candidates_for(session, request.instance, preference, dry_run=True, nodes=request.nodes)
    choice = candidates[0]
    pinned = request.model_copy(update={"instance": choice.request_for(request.instance), "script": rel})
    provider = session.provider(choice.provider)
    calls = plan_run(provider, pinned, project_files(session, root, request.outputs_dir))
    return Plan(
        provider=provider.name,
        calls=calls,
        estimate=describe_estimate(choice.offer, pinned.instance, provider.capabilities()),
        hourly_price=choice.hourly,
        alternatives=[
            Alternative(provider=c.provider, offer=c.offer, hourly=c.hourly, credentials=c.credentials)
            for c in candidates
        ],
        skipped=[s.model_dump() for s in skipped],
    )


def create_plan(session: Session, provider: Provider, request: InstanceRequest, *, wait: bool) -> Plan:
    """The calls ``create`` would make."""
    check_request(provider, request)
    offer = estimate(provider, request)
    spec = InstanceSpec(
        intent_id="intent-<new>", owner=session.loaded.config.owner, **request.model_dump(exclude={"wait_timeout"})
    )
    calls = provider.plan(PlanRequest(steps=["create", "wait"] if wait else ["create"], instance=spec))
    return Plan(
        provider=provider.name,
        calls=calls,
        estimate=describe_estimate(offer, request, provider.capabilities()),
        hourly_price=offer.best_price(request.spot) if offer else None,
    )


__all__ = ["Alternative", "Plan", "auto_run_plan", "create_plan", "run_plan"]
