"""Provider discovery (stevedore, entry-point group ``runctl.providers``) and typed calls into providers.

Only the provider asked for is imported: listing reads distribution metadata, loading uses stevedore's
``DriverManager`` for exactly one name. Switches (as datasette and tox have them):

* ``RUNCTL_DISABLE_PLUGINS=name,name``: never load these providers.
* ``RUNCTL_LOAD_PLUGINS=name,name``: load only these (an allow-list).
* ``RUNCTL_TRACE_PLUGINS=1``: print every hook call, its arguments' types and its duration to stderr.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from runctl_core.errors import NotFoundError, PluginError, ProviderError, RunctlError, TransientError
from runctl_core.hookspecs import ENTRY_POINT_GROUP, PROJECT_NAME, REQUIRED_HOOKS
from runctl_core.models import (
    Capabilities,
    Checkpoint,
    Collected,
    CredentialStatus,
    Instance,
    InstanceSpec,
    InstanceState,
    JobSpec,
    JobStatus,
    LogChunk,
    Offer,
    PlannedCall,
    PlanRequest,
    PortForward,
    PriceQuery,
    Project,
    ProviderContext,
    ShellCommand,
    StatusReport,
    SyncResult,
)
from runctl_core.retry import RetryPolicy, call_with_retries

T = TypeVar("T")


@dataclass(frozen=True)
class ProviderInfo:
    """What the metadata says about an installed provider (nothing imported)."""

    name: str
    target: str  # "module:object"
    distribution: str
    version: str
    blocked: str = ""  # why the switches block it, if they do


def _csv_env(name: str) -> set[str]:
    return {part.strip() for part in os.environ.get(name, "").split(",") if part.strip()}


def not_installed(name: str, where: str = "") -> PluginError:
    """The one error for a provider name that no installed package provides (``--provider``, a job file's
    ``provider:`` or its list of providers to try): exit 3, like any missing prerequisite."""
    names = ", ".join(info.name for info in installed_providers()) or "none"
    return PluginError(
        f"no provider named {name!r} is installed{where} (installed: {names})",
        f"install its package (e.g. pip install runctl-{name}) or pick one of: {names}",
    )


def _blocked_reason(name: str) -> str:
    if name in _csv_env("RUNCTL_DISABLE_PLUGINS"):
        return "disabled by RUNCTL_DISABLE_PLUGINS"
    allow = _csv_env("RUNCTL_LOAD_PLUGINS")
    if allow and name not in allow:
        return "not in RUNCTL_LOAD_PLUGINS"
    return ""


def installed_providers() -> list[ProviderInfo]:
    """Every provider registered under ``runctl.providers``, from metadata only (imports none of them)."""
    from importlib.metadata import entry_points

    found: dict[str, ProviderInfo] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        found.setdefault(
            ep.name,
            ProviderInfo(
                name=ep.name,
                target=ep.value,
                distribution=dist.metadata["Name"] if dist is not None else "?",
                version=dist.version if dist is not None else "?",
                blocked=_blocked_reason(ep.name),
            ),
        )
    return sorted(found.values(), key=lambda info: info.name)


def _load_plugin_object(name: str) -> object:
    reason = _blocked_reason(name)
    if reason:
        raise PluginError(f"provider {name!r} is {reason}", "unset the variable or choose another --provider")
    from stevedore import DriverManager
    from stevedore.exception import NoMatches

    try:
        manager: DriverManager = DriverManager(
            ENTRY_POINT_GROUP, name, invoke_on_load=False, on_load_failure_callback=_raise
        )
    except NoMatches:
        raise not_installed(name) from None
    except RunctlError:
        raise
    plugin = manager.driver
    return plugin() if isinstance(plugin, type) else plugin


def _raise(_manager: object, entrypoint: object, exc: BaseException) -> None:
    raise PluginError(
        f"provider plugin {getattr(entrypoint, 'name', entrypoint)!r} failed to load: {type(exc).__name__}: {exc}",
        "reinstall the provider's package; run with RUNCTL_TRACE_PLUGINS=1 for details",
    ) from exc


def _make_manager(name: str, plugin: object):  # type: ignore[no-untyped-def]
    import pluggy

    from runctl_core import hookspecs

    manager = pluggy.PluginManager(PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    try:
        manager.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"provider {name!r} has an invalid hook: {exc}", "fix the plugin's hook signature") from exc
    missing = [hook for hook in REQUIRED_HOOKS if not getattr(manager.hook, hook).get_hookimpls()]
    if missing:
        raise PluginError(
            f"provider {name!r} does not implement the required hook(s): {', '.join(missing)}",
            "a provider must implement create, sync, train, status, terminate and price "
            "(see docs/writing-a-provider.md)",
        )
    if os.environ.get("RUNCTL_TRACE_PLUGINS"):
        _install_tracer(manager, name)
    return manager


def _install_tracer(manager: Any, name: str) -> None:
    starts: dict[int, float] = {}

    def before(hook_name: str, impls: list[Any], kwargs: dict[str, Any]) -> None:
        starts[id(kwargs)] = time.perf_counter()
        shown = ", ".join(f"{k}={type(v).__name__}" for k, v in kwargs.items())
        print(f"[runctl trace] {name}.{hook_name}({shown})", file=sys.stderr)

    def after(outcome: Any, hook_name: str, impls: list[Any], kwargs: dict[str, Any]) -> None:
        took = (time.perf_counter() - starts.pop(id(kwargs), time.perf_counter())) * 1000
        failed = outcome.exception
        what = f"raised {type(failed).__name__}" if failed else f"-> {type(outcome.get_result()).__name__}"
        print(f"[runctl trace] {name}.{hook_name} {what} in {took:.1f} ms", file=sys.stderr)

    manager.add_hookcall_monitoring(before, after)


class Provider:
    """One loaded provider, with a typed method per hook, result checking, retries and fallbacks."""

    def __init__(self, name: str, plugin: object, ctx: ProviderContext, retry: RetryPolicy | None = None) -> None:
        self.name = name
        self.ctx = ctx
        self._manager = _make_manager(name, plugin)
        self._retry = retry or RetryPolicy()
        self._capabilities: Capabilities | None = None
        self.deadline: float | None = None  # time.monotonic() value no core retry waits past (see wait_ready)

    # -------------------------------------------------------------------------------- plumbing

    def has(self, hook: str) -> bool:
        return bool(getattr(self._manager.hook, hook).get_hookimpls())

    def _call(self, hook: str, expected: Any, *, retry: bool, **kwargs: Any) -> Any:
        caller = getattr(self._manager.hook, hook)

        def once() -> Any:
            try:
                return caller(ctx=self.ctx, **kwargs)
            except RunctlError:
                raise
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # a provider bug: report it as one, without a traceback
                raise ProviderError(
                    f"provider {self.name!r} failed in {hook}: {type(exc).__name__}: {exc}",
                    "this is a bug in the provider plugin; run with -v for the traceback and report it",
                ) from exc

        # one retry layer per call path: a provider whose client retries itself declares retries="client"
        if retry and hook != "capabilities" and self.capabilities().retries == "client":
            retry = False
        result = (
            call_with_retries(once, self._retry, on_retry=self._note_retry, deadline=self.deadline) if retry else once()
        )
        if not _matches(result, expected):
            raise PluginError(
                f"provider {self.name!r} returned {type(result).__name__} from {hook}, expected {_name(expected)}",
                "this is a bug in the provider plugin",
            )
        return result

    def _note_retry(self, exc: TransientError, attempt: int, delay: float) -> None:
        self.ctx.report(f"{self.name}: {exc.message}; retrying in {delay:.1f}s (attempt {attempt + 1})")

    # -------------------------------------------------------------------------------- hooks

    def capabilities(self) -> Capabilities:
        if self._capabilities is None:
            caps = self._call("capabilities", Capabilities, retry=False) if self.has("capabilities") else None
            self._capabilities = caps or Capabilities()
        return self._capabilities

    def check_credentials(self, probe: bool = False) -> CredentialStatus:
        if not self.has("check_credentials"):
            return CredentialStatus(found=True, source="not needed")
        result: CredentialStatus = self._call("check_credentials", CredentialStatus, retry=probe, probe=probe)
        return result

    def create(self, spec: InstanceSpec) -> Instance:
        result: Instance = self._call("create", Instance, retry=False, spec=spec)
        return result

    def ready(self, instance: Instance) -> Instance:
        if self.has("ready"):
            result: Instance = self._call("ready", Instance, retry=True, instance=instance)
            return result
        return self.status(instance, None).instance

    def sync(self, instance: Instance, project: Project) -> SyncResult:
        result: SyncResult = self._call("sync", SyncResult, retry=False, instance=instance, project=project)
        return result

    def stage(self, instance: Instance, project: Project) -> bool:
        """Let the provider stage ``project`` while ``instance`` boots (optional hook); False when it has none."""
        if not self.has("stage"):
            return False
        self._call("stage", type(None), retry=False, instance=instance, project=project)
        return True

    def train(self, instance: Instance, job: JobSpec) -> JobStatus:
        result: JobStatus = self._call("train", JobStatus, retry=False, instance=instance, job=job)
        return result

    def status(self, instance: Instance, job: JobStatus | None) -> StatusReport:
        result: StatusReport = self._call("status", StatusReport, retry=True, instance=instance, job=job)
        return result

    def raw(self, hook: str, **kwargs: Any) -> Any:
        """Call a hook exactly as the plugin answers it: no retries, no wrapping, no leniency (for the
        conformance suite, which holds the hook itself to its contract)."""
        return getattr(self._manager.hook, hook)(ctx=self.ctx, **kwargs)

    def terminate(self, instance: Instance) -> Instance:
        try:
            result: Instance = self._call("terminate", Instance, retry=True, instance=instance)
        except NotFoundError:  # the contract says terminate must not raise for a gone instance; be lenient
            return instance.model_copy(update={"state": InstanceState.TERMINATED})
        return result

    def price(self, query: PriceQuery) -> list[Offer]:
        result: list[Offer] = self._call("price", (list, Offer), retry=True, query=query)
        return result

    def logs(self, instance: Instance, job: JobStatus, offset: int, rank: int = 0) -> LogChunk | None:
        if not self.has("logs"):
            return None
        result: LogChunk = self._call(
            "logs", LogChunk, retry=True, instance=instance, job=job, offset=offset, rank=rank
        )
        return result

    def wait_change(self, instance: Instance, job: JobStatus, seconds: float) -> None:
        """Wait up to ``seconds`` for the job to change (optional hook: returns early when the provider can tell),
        else sleep. Never raises: a failing hook only costs the wait it would have saved."""
        if self.has("wait_change"):
            started = time.monotonic()
            try:
                self._call("wait_change", type(None), retry=False, instance=instance, job=job, seconds=seconds)
                return
            except RunctlError:
                seconds -= time.monotonic() - started
        time.sleep(max(0.0, seconds))

    def list_instances(self) -> list[Instance] | None:
        if not self.has("list_instances"):
            return None
        result: list[Instance] = self._call("list_instances", (list, Instance), retry=True)
        return result

    def list_checkpoints(self, instance: Instance, job: JobStatus) -> list[Checkpoint] | None:
        if not self.has("list_checkpoints"):
            return None
        result: list[Checkpoint] = self._call(
            "list_checkpoints", (list, Checkpoint), retry=True, instance=instance, job=job
        )
        return result

    def collect(self, instance: Instance, job: JobStatus, dest: Path) -> Collected | None:
        if not self.has("collect"):
            return None
        dest.mkdir(parents=True, exist_ok=True)
        result: Collected = self._call("collect", Collected, retry=True, instance=instance, job=job, dest=dest)
        return result

    def remove_job_files(self, instance: Instance, job: JobStatus) -> bool | None:
        """What the provider kept of an ended job on an ended instance, removed; None when it keeps nothing."""
        if not self.has("remove_job_files"):
            return None
        result: bool = self._call("remove_job_files", bool, retry=False, instance=instance, job=job)
        return result

    def cancel(self, instance: Instance, job: JobStatus) -> JobStatus | None:
        if not self.has("cancel"):
            return None
        result: JobStatus = self._call("cancel", JobStatus, retry=True, instance=instance, job=job)
        return result

    def shell(
        self, instance: Instance, job: JobStatus | None, command: list[str], ports: list[PortForward]
    ) -> ShellCommand | None:
        if not self.has("shell"):
            return None
        result: ShellCommand = self._call(
            "shell", ShellCommand, retry=False, instance=instance, job=job, command=command, ports=ports
        )
        return result

    def plan(self, request: PlanRequest) -> list[PlannedCall]:
        if self.has("plan"):
            result: list[PlannedCall] = self._call("plan", (list, PlannedCall), retry=False, request=request)
            return result
        return [PlannedCall(step=step, api=self.name, operation=step) for step in request.steps]

    def settings_schema(self) -> Any:
        if not self.has("settings_schema"):
            return None
        return self._manager.hook.settings_schema()


def _matches(value: Any, expected: Any) -> bool:
    if isinstance(expected, tuple):
        container, item = expected
        return isinstance(value, container) and all(isinstance(v, item) for v in value)
    return isinstance(value, expected)


def _name(expected: Any) -> str:
    if isinstance(expected, tuple):
        return f"{expected[0].__name__}[{expected[1].__name__}]"
    return str(expected.__name__)


ContextFactory = Callable[[str], ProviderContext]


def load_provider(name: str, ctx: ProviderContext, retry: RetryPolicy | None = None) -> Provider:
    """Import exactly one provider by entry-point name and check it implements the required hooks."""
    return Provider(name, _load_plugin_object(name), ctx, retry)
