"""Commands that manage: terminate, price, providers, resources, config."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from runctl_core.cli.common import common, emit, examples, money, output_option, refuse_id_output, session_of, table

if TYPE_CHECKING:
    from runctl_core.session import Session


def _confirm_or_require_yes(session: Session, yes: bool, question: str) -> None:
    from runctl_core.errors import Interrupted, UsageError

    if yes:
        return
    if not (sys.stdin.isatty() and sys.stderr.isatty()) or session.options.output != "text":
        raise UsageError(f"{question.rstrip('?')}: refusing without confirmation", "add --yes to confirm")
    if not click.confirm(question, default=False, err=True):
        raise Interrupted("nothing was done", "")


# ----------------------------------------------------------------------------------------------- terminate


@click.command("terminate", epilog=examples("runctl terminate i-0abc123 --yes", "runctl terminate job-7f3a9c --yes"))
@click.argument("ident", metavar="ID")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (needed in scripts).")
@common
@click.pass_context
def terminate_cmd(ctx: click.Context, ident: str, yes: bool) -> None:
    """Terminate the instance ID, or, when ID is a job id, stop that job and terminate the instance it ran
    on unless that instance was created to be kept. Harmless when it is already gone."""
    from runctl_core.cli.cmd_inspect import job_context, load_job
    from runctl_core.cli.cmd_work import resolve_instance
    from runctl_core.workflow import terminate_instance

    session = session_of(ctx)
    store = session.store
    if store.job(ident) is not None:
        row = load_job(session, ident)
        provider, instance, status = job_context(session, row)
        inst_row = store.instance(instance.id, row.provider)
        kept = bool(inst_row and inst_row.keep and row.keep)
        what = f"stop job {ident}" + ("" if kept else f" and terminate {instance.id}")
        _confirm_or_require_yes(session, yes, f"{what}?")
        ended = row.state.terminal  # nothing to stop: only its instance may still need ending
        stopped = None if ended else provider.cancel(instance, status)
        if stopped is not None:
            store.update_job(ident, status=stopped)
        if not kept or (stopped is None and not ended):
            instance = terminate_instance(session, provider, instance)
        if not ended:
            store.update_job(ident, state=_cancelled(), message="terminated on request")
        session.progress.close()
        job_now = store.job(ident)
        emit(
            session,
            {
                "job_id": ident,
                "state": job_now.state.value if job_now else None,
                "instance": instance.model_dump(mode="json"),
            },
            (f"job {ident} had already ended ({row.state.value})" if ended else f"job {ident} stopped")
            + f"; instance {instance.id} {instance.state.value}",
            ident,
        )
        return
    provider, instance = resolve_instance(session, ident, or_job=True)
    _confirm_or_require_yes(session, yes, f"terminate {provider.name} instance {instance.id}?")
    final = terminate_instance(session, provider, instance)
    session.progress.close()
    emit(session, final, f"{final.id} {final.state.value}", final.id)


def _cancelled() -> Any:
    from runctl_core.models import JobState

    return JobState.CANCELLED


# ----------------------------------------------------------------------------------------------- price


@click.command(
    "price",
    epilog=examples(
        "runctl price --gpu A100",
        "runctl price --gpu 'RTX 4090' --gpu-count 2 --output json",
        "runctl --provider aws price --instance-type g5.xlarge --spot",
    ),
)
@click.option("--gpu", metavar="NAME", help="A GPU by name: A100, H100, L4, T4, 'RTX 4090'...")
@click.option("--instance-type", "-t", metavar="TYPE", help="A provider machine type, e.g. g5.xlarge.")
@click.option("--gpu-count", type=click.IntRange(1, 64), help="Only offers with this many GPUs.")
@click.option("--spot", is_flag=True, default=None, help="Sort by spot price (default: by on-demand price).")
@click.option("--region", metavar="REGION", help="Region, where the provider has them.")
@common
@click.pass_context
def price_cmd(
    ctx: click.Context,
    gpu: str | None,
    instance_type: str | None,
    gpu_count: int | None,
    spot: bool | None,
    region: str | None,
) -> None:
    """Prices, side by side, from every installed provider (or only --provider): offer, GPUs, on-demand
    and spot $/h, availability - cheapest first. Providers without credentials are listed with the reason."""
    from runctl_core.errors import RunctlError
    from runctl_core.models import PriceQuery
    from runctl_core.plugins import installed_providers

    session = session_of(ctx)
    explicit = session.options.provider
    names = [explicit] if explicit else [i.name for i in installed_providers() if not i.blocked]
    query = PriceQuery(gpu=gpu, instance_type=instance_type, gpu_count=gpu_count, spot=spot, region=region)
    offers: list[Any] = []
    skipped: list[dict[str, str]] = []
    for name in names:
        try:
            provider = session.provider(name)
            session.progress.update(f"asking {name} for prices")
            offers.extend(provider.price(query))
        except RunctlError as exc:
            if explicit:
                raise
            skipped.append({"provider": name, "reason": exc.message, "hint": exc.hint})
    session.progress.close()

    def sort_key(offer: Any) -> tuple[float, str]:
        value = offer.spot_hourly if spot else offer.on_demand_hourly
        if value is None:
            value = offer.spot_hourly if offer.spot_hourly is not None else offer.on_demand_hourly
        return (value if value is not None else float("inf"), offer.provider)

    offers.sort(key=sort_key)
    doc = {"query": query.model_dump(mode="json", exclude_none=True), "offers": offers, "skipped": skipped}

    def text() -> None:
        if offers:
            table(
                None,
                ["PROVIDER", "OFFER", "GPU", "ON-DEMAND $/H", "SPOT $/H", "AVAILABILITY", "REGION"],
                [
                    [
                        o.provider,
                        o.instance_type,
                        f"{o.gpu} x{o.gpu_count}" if o.gpu else "-",
                        money(o.on_demand_hourly),
                        money(o.spot_hourly),
                        o.availability,
                        o.region or "-",
                    ]
                    for o in offers
                ],
            )()
        else:
            click.echo(
                "no offers match"
                + (f" --gpu {gpu}" if gpu else "")
                + (f" --instance-type {instance_type}" if instance_type else "")
            )
        for skip in skipped:
            click.echo(
                f"{skip['provider']}: not asked - {skip['reason']}" + (f" ({skip['hint']})" if skip["hint"] else "")
            )

    emit(session, doc, text)


# ----------------------------------------------------------------------------------------------- providers


@click.command("providers", epilog=examples("runctl providers", "runctl providers --check --output json"))
@click.option("--check", is_flag=True, help="Also ask each provider's API whether the credentials are accepted.")
@output_option
@click.pass_context
def providers_cmd(ctx: click.Context, check: bool) -> None:
    """Installed providers: name, package, version, and whether credentials are found (or accepted, with
    --check). Loads each provider's plugin but no cloud SDK unless --check."""
    from runctl_core.errors import RunctlError
    from runctl_core.plugins import installed_providers

    session = session_of(ctx)
    rows = []
    for info in installed_providers():
        entry: dict[str, Any] = {
            "name": info.name,
            "package": info.distribution,
            "version": info.version,
            "entry_point": info.target,
        }
        if info.blocked:
            entry.update(credentials="-", status=info.blocked)
        else:
            try:
                creds = session.provider(info.name).check_credentials(probe=check)
                entry.update(
                    credentials=creds.model_dump(mode="json"), status=("ok" if creds.found else "no credentials")
                )
            except RunctlError as exc:
                entry.update(credentials=None, status=f"error: {exc.message}", hint=exc.hint)
        rows.append(entry)

    def cred_text(entry: dict[str, Any]) -> str:
        creds = entry.get("credentials")
        if not isinstance(creds, dict):
            return str(entry["status"])
        if creds["found"]:
            text = f"found ({creds['source']})" if creds.get("source") else "found"
            return text + (f" as {creds['identity']}" if creds.get("identity") else "")
        return "missing" if not creds.get("message") else f"missing: {creds['message']}"

    def text() -> None:
        table(
            None,
            ["PROVIDER", "PACKAGE", "VERSION", "CREDENTIALS"],
            [[r["name"], r["package"], r["version"], cred_text(r)] for r in rows],
        )()
        for r in rows:  # what to do, under the table: one line per provider that needs something
            creds = r.get("credentials")
            hint = r.get("hint") or (creds.get("hint") if isinstance(creds, dict) and not creds["found"] else "")
            if hint:
                click.echo(f"{r['name']}: {hint}")

    emit(session, {"providers": rows}, text)


# ----------------------------------------------------------------------------------------------- resources


@click.group(
    "resources",
    epilog=examples(
        "runctl resources list",
        "runctl resources cleanup --dry-run",
        "runctl resources cleanup --yes --older-than 2h",
        "runctl resources cost --since 7d",
    ),
)
def resources_group() -> None:
    """Everything runctl created, across providers: reconcile, clean up, cost."""


@resources_group.command(
    "list", epilog=examples("runctl resources list", "runctl resources list --provider aws -o json")
)
@common
@click.pass_context
def resources_list(ctx: click.Context) -> None:
    """Live instances runctl created, as the journal and each provider report them, with orphans marked."""
    from runctl_core.resources import providers_in_scope, reconcile

    session = session_of(ctx)
    result = reconcile(session, providers_in_scope(session, session.options.provider))
    session.progress.close()

    def text() -> None:
        if result.resources:
            table(
                None,
                ["PROVIDER", "ID", "STATE", "KIND", "JOB", "$/H", "WHY"],
                [
                    [r.provider, r.id, r.state, r.kind, r.job_id or "-", money(r.hourly_price), r.reason]
                    for r in result.resources
                ],
            )()
        else:
            click.echo("nothing runctl created is running")
        for note in result.notes:
            click.echo(f"note: {note}")

    emit(session, result, text)


@resources_group.command(
    "cleanup", epilog=examples("runctl resources cleanup --dry-run", "runctl resources cleanup --yes --older-than 2h")
)
@click.option("--dry-run", is_flag=True, help="Show what would be terminated; do nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (needed in scripts).")
@click.option("--older-than", metavar="DURATION", help="Only instances created at least this long ago (e.g. 2h).")
@click.option("--all", "everything", is_flag=True, help="Also kept and in-use instances (all of yours runctl tagged).")
@common
@click.pass_context
def resources_cleanup(ctx: click.Context, dry_run: bool, yes: bool, older_than: str | None, everything: bool) -> None:
    """Terminate runctl's orphaned, abandoned and finished instances - never one runctl did not tag, never
    another owner's."""
    from runctl_core.durations import parse_duration
    from runctl_core.errors import RunctlError
    from runctl_core.resources import REMOVABLE, providers_in_scope, reconcile
    from runctl_core.resources import older_than as is_older
    from runctl_core.workflow import terminate_instance

    session = session_of(ctx)
    refuse_id_output(session)
    try:
        age = parse_duration(older_than) if older_than else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    result = reconcile(session, providers_in_scope(session, session.options.provider))
    targets = [r for r in result.resources if (everything or r.kind in REMOVABLE) and is_older(r, age)]
    done: list[dict[str, Any]] = []
    if targets and not dry_run:
        _confirm_or_require_yes(session, yes, f"terminate {len(targets)} instance(s)?")
        for resource in targets:
            provider = session.provider(resource.provider)
            row = session.store.instance(resource.id, resource.provider)
            from runctl_core.models import Instance, InstanceState

            instance = (
                row.instance
                if row
                else Instance(id=resource.id, provider=resource.provider, state=InstanceState(resource.state))
            )
            try:
                final = terminate_instance(session, provider, instance)
                done.append({"provider": resource.provider, "id": resource.id, "state": final.state.value})
            except RunctlError as exc:
                done.append({"provider": resource.provider, "id": resource.id, "error": exc.message})
    session.progress.close()
    doc = {"dry_run": dry_run, "targets": targets, "terminated": done, "notes": result.notes}

    def text() -> None:
        if not targets:
            click.echo("nothing to clean up")
        for r in targets:
            verb = "would terminate" if dry_run else "terminated"
            outcome = next((d for d in done if d["id"] == r.id), {})
            if "error" in outcome:
                verb = f"FAILED ({outcome['error']})"
            click.echo(f"{verb}: {r.provider} {r.id} [{r.kind}: {r.reason}]")
        for note in result.notes:
            click.echo(f"note: {note}")

    emit(session, doc, text)
    if any("error" in d for d in done):
        raise RunctlError("some instances could not be terminated", "run the cleanup again; see the lines above")


@resources_group.command("cost", epilog=examples("runctl resources cost", "runctl resources cost --since 7d -o json"))
@click.option("--since", metavar="DURATION", default="30d", show_default=True, help="Only instances created since.")
@common
@click.pass_context
def resources_cost(ctx: click.Context, since: str) -> None:
    """What runctl's instances cost (rate x billed time), by provider and by job, from the journal."""
    from datetime import datetime, timedelta, timezone

    from runctl_core.durations import parse_duration

    session = session_of(ctx)
    try:
        window = parse_duration(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    start = datetime.now(timezone.utc) - timedelta(seconds=window)
    rows = [r for r in session.store.instances() if r.created_at >= start]
    by_provider: dict[str, float] = {}
    by_job: dict[str, float] = {}
    unknown = 0
    for r in rows:  # instance-billed providers: the instances' lifetimes
        cost = r.cost()
        if cost is None:
            unknown += 1
            continue
        by_provider[r.instance.provider] = by_provider.get(r.instance.provider, 0.0) + cost
        if r.job_id and r.billing == "instance":
            by_job[r.job_id] = by_job.get(r.job_id, 0.0) + cost
    job_billed = {(r.instance.provider, r.instance.id) for r in rows if r.billing == "job"}
    for job in session.store.jobs(since=start):  # job-billed providers: each job's own cost
        if (job.provider, job.instance_id) in job_billed and job.cost is not None:
            by_provider[job.provider] = by_provider.get(job.provider, 0.0) + job.cost
            by_job[job.id] = by_job.get(job.id, 0.0) + job.cost
    total = sum(by_provider.values())
    doc = {
        "since": start.isoformat(),
        "total": total,
        "by_provider": by_provider,
        "by_job": by_job,
        "instances": len(rows),
        "instances_without_price": unknown,
    }

    def text() -> None:
        click.echo(
            f"{money(total, 2)} over {len(rows)} instances since {start:%Y-%m-%d %H:%M} UTC"
            + (f" ({unknown} without a known price)" if unknown else "")
        )
        if by_provider:
            table(None, ["PROVIDER", "COST"], [[p, money(c)] for p, c in sorted(by_provider.items())])()

    emit(session, doc, text)


# ----------------------------------------------------------------------------------------------- config


@click.group(
    "config",
    epilog=examples(
        "runctl config init",
        "runctl config show",
        "runctl config set run.spot true",
        "runctl config set providers.aws.region eu-west-1",
        "runctl config validate",
    ),
)
def config_group() -> None:
    """Read, write and check runctl's configuration (.runctl.toml, then the user config file)."""


@config_group.command("init", epilog=examples("runctl config init", "runctl config init --user"))
@click.option("--user", is_flag=True, help="Write the user config file instead of ./.runctl.toml.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@output_option
@click.pass_context
def config_init(ctx: click.Context, user: bool, force: bool) -> None:
    """Write a commented starting configuration."""
    from runctl_core.config import PROJECT_FILE, TEMPLATE, user_config_path
    from runctl_core.errors import UsageError

    session = session_of(ctx, load_config=False)
    path = user_config_path() if user else Path.cwd() / PROJECT_FILE
    if path.exists() and not force:
        raise UsageError(f"{path} already exists", "edit it, use `runctl config set`, or pass --force")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TEMPLATE)
    emit(session, {"path": str(path)}, f"wrote {path}", str(path))


@config_group.command("show", epilog=examples("runctl config show", "runctl config show --defaults -o json"))
@click.option("--defaults", is_flag=True, help="Show every key with its default value instead.")
@output_option
@click.pass_context
def config_show(ctx: click.Context, defaults: bool) -> None:
    """The effective configuration and the files it came from."""
    import tomli_w

    from runctl_core.config import Config

    session = session_of(ctx)
    if defaults:
        config = Config()
        sources: list[str] = []
    else:
        config = session.loaded.config
        sources = [str(p) for p in session.loaded.sources]
    data = config.model_dump(mode="json", exclude_none=False)
    doc = {"sources": sources, "config": data}
    printable = {k: v for k, v in data.items() if v is not None}
    printable["run"] = {k: v for k, v in data["run"].items() if v is not None}
    header = "# from: " + (", ".join(sources) if sources else "defaults only") + "\n"
    emit(session, doc, header + tomli_w.dumps(printable))


@config_group.command(
    "set",
    epilog=examples(
        "runctl config set run.spot true",
        "runctl config set run.max_runtime 6h",
        "runctl config set providers.aws.bucket my-bucket --user",
    ),
)
@click.argument("key", metavar="KEY")
@click.argument("value", metavar="VALUE")
@click.option("--user", is_flag=True, help="Write the user config file instead of the project's .runctl.toml.")
@output_option
@click.pass_context
def config_set(ctx: click.Context, key: str, value: str, user: bool) -> None:
    """Set KEY (dotted, e.g. run.spot) to VALUE (TOML syntax: true, 3, "text"; bare words are strings)."""
    from runctl_core.config import PROJECT_FILE, find_project_config, parse_value, set_key, user_config_path

    session = session_of(ctx, load_config=False)
    refuse_id_output(session)
    path = user_config_path() if user else (find_project_config() or Path.cwd() / PROJECT_FILE)
    parsed = parse_value(value)
    before = path.read_bytes() if path.is_file() else None
    set_key(path, key, parsed)
    if key.startswith("providers."):
        try:
            _validate_providers(session, only=key.split(".")[1])
        except Exception:  # the provider refused the value: leave the file as it was
            if before is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(before)
            raise
    emit(session, {"path": str(path), "key": key, "value": parsed}, f"{key} = {parsed!r} in {path}")


@config_group.command("validate", epilog=examples("runctl config validate", "runctl config validate --config ci.toml"))
@output_option
@click.pass_context
def config_validate(ctx: click.Context) -> None:
    """Check the configuration files and every configured provider's settings; exit 3 on a problem."""
    session = session_of(ctx)
    checked = _validate_providers(session)
    sources = [str(p) for p in session.loaded.sources]
    emit(
        session,
        {"valid": True, "sources": sources, "providers_checked": checked},
        f"configuration is valid ({', '.join(sources) or 'defaults only'}); providers checked: "
        f"{', '.join(checked) or 'none configured'}",
    )


def _validate_providers(session: Session, only: str | None = None) -> list[str]:
    from runctl_core.errors import ConfigError, PluginError

    session.__dict__.pop("loaded", None)  # re-read what was just written
    names = [only] if only else sorted(session.loaded.config.providers)
    for name in names:
        try:
            session.provider(name)  # loads the plugin and validates [providers.NAME] against its schema
        except PluginError as exc:  # [providers.NAME] for a provider that is not installed: say where
            from runctl_core.plugins import installed_providers

            if any(info.name == name for info in installed_providers()):
                raise  # installed but broken: not the configuration's fault
            source = session.loaded.provider_sources.get(name, "the configuration")
            raise ConfigError(f"{source}: [providers.{name}]: {exc.message}", exc.hint) from None
    return names
