"""`runctl create`: one instance, kept."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from runctl_core.cli.options import (
    build_instance_request,
    common,
    handle_sigterm,
    instance_options,
    session_of,
)
from runctl_core.cli.output import emit, examples, money, print_plan
from runctl_core.errors import RunctlError

if TYPE_CHECKING:
    pass


@click.command(
    "create",
    epilog=examples(
        "ID=$(runctl --provider aws create --instance-type t3.micro --wait --output id)",
        "runctl --provider runpod create --gpu A100 --spot --dry-run",
    ),
)
@instance_options
@click.option(
    "--wait/--no-wait",
    default=False,
    show_default=True,
    help="Block until the instance is ready for sync/train (with progress and a timeout).",
)
@click.option("--dry-run", is_flag=True, help="Show the provider calls and the hourly price; create nothing.")
@common
@click.pass_context
def create_cmd(ctx: click.Context, wait: bool, dry_run: bool, **instance_kw: Any) -> None:
    """Create one instance and keep it (until `runctl terminate ID`).

    Prints its id; with --wait, returns only once it is ready. It still ends itself after
    --max-runtime on providers that support it.
    """
    from runctl_core.models import PlanRequest
    from runctl_core.workflow import (
        check_credentials,
        check_request,
        create_instance,
        describe_estimate,
        estimate,
        wait_ready,
    )

    handle_sigterm()
    session = session_of(ctx)
    provider = session.provider(session.provider_name())
    request = build_instance_request(session, instance_kw)
    check_request(provider, request)
    if dry_run:
        offer = estimate(provider, request)
        from runctl_core.models import InstanceSpec

        spec = InstanceSpec(
            intent_id="intent-<new>", owner=session.loaded.config.owner, **request.model_dump(exclude={"wait_timeout"})
        )
        steps = ["create", "wait"] if wait else ["create"]
        calls = provider.plan(PlanRequest(steps=steps, instance=spec))
        print_plan(
            session,
            provider.name,
            calls,
            describe_estimate(offer, request, provider.capabilities()),
            {"hourly_price": offer.best_price(request.spot) if offer else None},
        )
        return
    check_credentials(provider)
    offer = estimate(provider, request, before_spending=True)
    session.progress.step(f"{provider.name}: {describe_estimate(offer, request, provider.capabilities())}")
    instance = create_instance(session, provider, request, job_id=None, keep=True)
    try:
        if wait:
            instance = wait_ready(session, provider, instance, request.wait_timeout)
    except KeyboardInterrupt:
        from runctl_core.errors import Interrupted
        from runctl_core.workflow import terminate_instance

        terminate_instance(session, provider, instance)
        raise Interrupted(
            f"interrupted while waiting; {instance.id} was terminated", "nothing is left running"
        ) from None
    except RunctlError as exc:  # the instance exists (and may bill): end it, or say which one is left and file it
        _end_after_failed_wait(session, provider, instance, exc)
        raise
    session.progress.close()
    emit(
        session,
        instance,
        f"{instance.id} {instance.state.value}"
        f"{' ' + money(instance.hourly_price) + '/h' if instance.hourly_price else ''}\n"
        f"terminate it with: runctl terminate {instance.id}",
        instance.id,
    )


def _end_after_failed_wait(session: Any, provider: Any, instance: Any, exc: RunctlError) -> None:
    """``create --wait`` failed after the instance was created: terminate it; if that fails too, name it in the
    error (text and JSON details) and file it as not kept, so that `runctl resources cleanup` removes it."""
    from runctl_core.workflow import terminate_instance

    exc.details = {**exc.details, "instance_id": instance.id}
    try:
        final = terminate_instance(session, provider, instance)
    except RunctlError as failed:
        session.store.save_instance(instance, keep=False)
        exc.details["instance_state"] = "unknown"
        exc.message += f"; instance {instance.id} could not be terminated ({failed.message})"
        exc.hint = f"remove it: runctl resources cleanup --yes (or runctl terminate {instance.id} --yes)"
        return
    exc.details["instance_state"] = final.state.value
    exc.message += f"; instance {instance.id} was terminated, nothing is left running"
