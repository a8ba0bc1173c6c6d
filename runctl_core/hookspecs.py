"""The provider hook specifications: the whole contract between runctl's core and a provider plugin.

A provider is a module or class registered under the entry-point group ``runctl.providers``; the entry
point's name is the provider's name. Each hook implementation is marked with :data:`hookimpl`::

    from runctl_core.hookspecs import hookimpl

    class MyProvider:
        @hookimpl
        def create(self, ctx, spec): ...

Only the provider the user asked for is imported. One plugin object is registered per provider, so every
hook has ``firstresult=True``: the provider's answer is *the* answer. Hook implementations may accept any
subset of the documented arguments (pluggy passes them by name).

Rules for every hook:

* Take and return the pydantic records of :mod:`runctl_core.models` - never loose dicts.
* Raise only the errors of :mod:`runctl_core.errors` (``AuthError``, ``CapacityError``, ``QuotaError``,
  ``NotFoundError``, ``TransientError``, ``PrerequisiteError``, ``CredentialsError``...), each with a
  message and a hint that say what happened and what to do. Anything else is reported as a provider bug.
* Never put a secret (API key, access key, token) into a message, a hint, ``details`` or a log.
* Import heavy SDKs (boto3, httpx) inside the hook, not at module import: ``runctl --help`` and other
  providers must not pay for them.
* The core retries ``status``, ``ready``, ``logs``, ``price``, ``list_instances``, ``list_checkpoints``,
  ``collect`` and ``terminate`` on :class:`~runctl_core.errors.TransientError`, never past the command's
  deadline (``--wait-timeout``). One retry layer per call path: turn your SDK's own retries off and raise
  ``TransientError`` at once, or declare ``Capabilities(retries="client")`` and the core will not retry.
  It does **not** retry ``create`` or ``train``: retry inside them only where the provider's API makes the
  retry safe (an idempotency token such as EC2's ``ClientToken``).

Required hooks: ``create``, ``sync``, ``train``, ``status``, ``terminate``, ``price``. A plugin lacking one is
refused at load time with a message naming it. The others are optional and documented with their fallback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pluggy

from runctl_core.models import (
    Capabilities,
    Checkpoint,
    Collected,
    CredentialStatus,
    Instance,
    InstanceSpec,
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

PROJECT_NAME = "runctl"
ENTRY_POINT_GROUP = "runctl.providers"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

REQUIRED_HOOKS = ("create", "sync", "train", "status", "terminate", "price")


# ------------------------------------------------------------------------------------------ required


@hookspec(firstresult=True)
def create(ctx: ProviderContext, spec: InstanceSpec) -> Instance:  # type: ignore[empty-body]
    """Create one instance as described by ``spec`` and return it as soon as the provider accepted it.

    * Tag/label it with ``runctl:job`` (``spec.job_id``), ``runctl:owner`` (``spec.owner``),
      ``runctl:intent`` (``spec.intent_id``), ``runctl:created`` (ISO time) and ``spec.tags``, wherever the
      provider supports tags; otherwise encode the job id in the name so ``list_instances`` can find it.
    * Use ``spec.intent_id`` as the idempotency token where the API has one.
    * Spot: when ``spec.spot`` and spot capacity is refused, leave no open spot request behind and raise
      :class:`~runctl_core.errors.SpotRefused` with ``spot_price`` and ``on_demand_price``: the core applies
      ``spec.on_demand_fallback`` (never / ask / always), shows both prices the same way for every provider and
      calls ``create`` again with ``spot=False`` under a new intent. (Deprecated but still accepted: following
      ``spec.on_demand_fallback`` inside the provider, as before.)
    * When ``spec.max_runtime`` is set and the provider declares the ``max_runtime`` capability, the instance
      must end itself after that many seconds even if runctl is gone.
    * Return an :class:`Instance` whose ``state`` may still be ``pending``; ``ready`` waits for it.

    Raises: ``CredentialsError``/``PrerequisiteError`` (checked before anything paid is requested),
    ``CapacityError``, ``QuotaError``, ``AuthError``, ``UsageError`` (unknown instance type/GPU),
    ``ProviderError``.
    """


@hookspec(firstresult=True)
def sync(ctx: ProviderContext, instance: Instance, project: Project) -> SyncResult:  # type: ignore[empty-body]
    """Make the instance's project directory equal to ``project`` (files already filtered and hashed).

    Send only files whose hash changed since the last sync of this instance (keep a manifest), delete files
    that are no longer in the project, keep the files' modes. Runs only on a ``running`` instance.

    Raises: ``NotFoundError`` (instance gone), ``UsageError`` (project over a provider size limit, with what to
    do), ``ProviderError``.
    """


@hookspec(firstresult=True)
def train(ctx: ProviderContext, instance: Instance, job: JobSpec) -> JobStatus:  # type: ignore[empty-body]
    """Start ``job`` on the instance, detached, and return at once with its status (``pending``/``running``).

    The job must survive the CLI exiting. It runs ``uv run SCRIPT ARGS`` when uv exists on the machine,
    otherwise the machine's Python; from the synced project directory; with ``RUNCTL_JOB_ID``,
    ``RUNCTL_CHECKPOINT_DIR`` and ``job.env`` in its environment; its stdout and stderr go to one log that
    ``logs`` reads by byte offset; its exit code is recorded. Success is the exit code, never a word in the
    log. ``job.timeout`` kills it. ``job.resume_dir`` files go into the checkpoint directory first.

    Multi-node (only for providers declaring the ``multi_node`` capability; the core refuses ``job.nodes > 1``
    and ``job.launcher == "torchrun"`` elsewhere): run ``job.nodes`` ranks, one process group per node, with
    ``runctl_core/remote/ranks.py`` (``launch`` for all ranks on one machine, ``rank`` under a scheduler's
    launcher such as ``srun``); the job's log and checkpoints are rank 0's, ``logs(rank=K)`` reads rank K's.

    Raises: ``NotFoundError``, ``UsageError`` (script missing), ``ProviderError``.
    """


@hookspec(firstresult=True)
def status(ctx: ProviderContext, instance: Instance, job: JobStatus | None) -> StatusReport:  # type: ignore[empty-body]
    """Report the instance now, joined with ``job``'s state when a job is given (its last known status).

    A job whose machine was preempted is ``interrupted``; one whose process vanished without an exit code is
    ``lost``. An instance that no longer exists is reported ``terminated`` (do not raise ``NotFoundError``).
    Must change nothing at the provider; it may refresh the plugin's own cache in ``ctx.state_dir``.
    """


@hookspec(firstresult=True)
def terminate(ctx: ProviderContext, instance: Instance) -> Instance:  # type: ignore[empty-body]
    """End the instance and everything that bills with it (spot requests, staging objects, volumes it
    created), stopping any job on it: SIGTERM, a grace period, then force. Return its final state.

    Contract: must not raise when the instance is already gone; calling it twice is harmless.
    """


@hookspec(firstresult=True)
def price(ctx: ProviderContext, query: PriceQuery) -> list[Offer]:  # type: ignore[empty-body]
    """Offers matching ``query`` (GPU name, instance type, count), with on-demand and spot $/h for the whole
    machine and availability. Return ``[]`` when nothing matches. Prices per GPU must be multiplied by the
    count. Read-only; must work without creating anything. Mark with ``chosen=True`` the offer ``create`` would
    launch for this query (e.g. the default type when the query names none): the price shown before spending and
    the ``--max-price`` check use it (without a mark, the cheapest offer).

    Raises: ``CredentialsError`` when the prices need an API key that is missing, ``ProviderError``.
    """


# ------------------------------------------------------------------------------------------ optional


@hookspec(firstresult=True)
def stage(ctx: ProviderContext, instance: Instance, project: Project) -> None:
    """Start moving ``project`` towards a just-created instance while it boots, so that the later ``sync`` has
    less to do once the machine answers (issue 15.3: the upload overlaps the boot instead of following it).

    Called by ``run`` once, right after ``create`` returned ``instance`` (usually still ``pending``) and before
    ``ready`` is polled; never by ``runctl sync``/``train``. A provider that stages through storage the machine
    reads from (an S3 bucket, a volume, a registry) uploads there; ``sync`` of the same instance then only has
    to apply what was staged. Contract:

    * Talk only to the provider's services, never to the instance (it may not even be running yet); do not wait
      for it; return as soon as the uploads are done.
    * Staging is an optimisation: ``sync`` must be correct whether ``stage`` ran, failed half-way or staged an
      older project (a file changed in between is synced as it is when ``sync`` runs). Keep the bookkeeping
      (what was staged, under which key) in the plugin, e.g. in ``ctx.state_dir`` or in memory (``run`` calls
      ``stage`` and ``sync`` in one process).
    * What it stores is removed by ``terminate`` of the instance (and must carry no secret: the project only).
    * Return ``None``. A :class:`~runctl_core.errors.RunctlError` is shown as a warning and the run goes on
      (``sync`` then does all the work); it is not retried.

    Fallback (no implementation): nothing happens; ``sync`` sends the whole delta after ``ready``, as before.
    """


@hookspec(firstresult=True)
def capabilities(ctx: ProviderContext) -> Capabilities:  # type: ignore[empty-body]
    """Declare what this provider cannot do, with reasons. Fallback: :class:`Capabilities` defaults."""


@hookspec(firstresult=True)
def check_credentials(ctx: ProviderContext, probe: bool) -> CredentialStatus:  # type: ignore[empty-body]
    """Say whether credentials are found (``probe=False``: look only, no network) or also accepted by the
    API (``probe=True``: one cheap read-only call; set ``accepted=True`` when the API accepted them and
    ``accepted=False`` when it refused them - ``providers --check`` then says "refused" and exits 3). Never raise
    for missing credentials; report them. Fallback: ``found=True`` with source "not needed".
    """


@hookspec(firstresult=True)
def ready(ctx: ProviderContext, instance: Instance) -> Instance:  # type: ignore[empty-body]
    """Check once, without sleeping, whether the instance is ready for ``sync``/``train`` and return it with
    ``state=running`` when it is (for a cloud VM: running *and* its agent answers a command), ``pending``
    with a ``message`` saying what it waits for otherwise, or ``terminated`` if it died. The core polls this
    with backoff, shows progress and applies the timeout. Fallback: ``status``.
    """


@hookspec(firstresult=True)
def logs(ctx: ProviderContext, instance: Instance, job: JobStatus, offset: int, rank: int) -> LogChunk:  # type: ignore[empty-body]
    """Return the job's combined log from byte ``offset`` (what exists now; do not block). ``complete`` is
    True when the job has ended and nothing is left after ``next_offset``. The core follows by calling again
    from ``next_offset``. ``rank`` (multi-node jobs) selects that rank's log; 0, the default, is the job's log.
    A provider without ``multi_node`` may ignore it. Fallback: none (``runctl logs`` says the provider cannot
    show logs).
    """


@hookspec(firstresult=True)
def wait_change(ctx: ProviderContext, instance: Instance, job: JobStatus, seconds: float) -> None:
    """Wait up to ``seconds`` between two ``status`` polls of a running job, returning as soon as the job may
    have changed (e.g. its supervisor process ended) - a job that ends in 20 ms is then seen ended at once,
    however long the poll interval has grown. Return ``None``; never raise and never wait much longer than
    ``seconds`` (when in doubt, just sleep ``seconds``): the core polls ``status`` right after. Fallback: the core
    sleeps ``seconds``.
    """


@hookspec(firstresult=True)
def list_instances(ctx: ProviderContext) -> list[Instance]:  # type: ignore[empty-body]
    """Every live-or-recent instance at the provider that carries runctl's tags/labels (any owner; the core
    filters by ``tags['runctl:owner']``). Never include instances runctl did not tag. Fallback: the
    journal only (``runctl resources`` says the provider cannot be reconciled).
    """


@hookspec(firstresult=True)
def list_checkpoints(ctx: ProviderContext, instance: Instance, job: JobStatus) -> list[Checkpoint]:  # type: ignore[empty-body]
    """The files in the job's checkpoint directory, wherever they are now (on the instance, or in the
    provider's storage after the instance is gone). Fallback: only what ``collect`` already brought back.
    """


@hookspec(firstresult=True)
def collect(ctx: ProviderContext, instance: Instance, job: JobStatus, dest: Path) -> Collected:  # type: ignore[empty-body]
    """Copy the job's checkpoint directory into the local directory ``dest`` (created by the core) and return
    the files written. Called by ``run`` after the job ends, before ``terminate``; and by ``checkpoint pull``
    after the instance is gone when ``list_checkpoints`` still lists files (read them from where they are, e.g.
    the provider's storage). Fallback: nothing collected.
    """


@hookspec(firstresult=True)
def remove_job_files(ctx: ProviderContext, instance: Instance, job: JobStatus) -> bool:  # type: ignore[empty-body]
    """Remove what the provider still keeps of one ended job on an ended instance: its log, records and
    checkpoints left behind by ``terminate`` (the local provider keeps ``instances/<id>/jobs/<job>/`` so that
    ``logs`` and ``checkpoint list`` work after the end). Return True when something was removed, False when
    nothing was there.

    Called only by ``runctl resources cleanup``, and only for a job the journal has ended, on an instance
    terminated at the provider, after the retention (``resources.prune_job_files_after``) and once every
    checkpoint ``list_checkpoints`` reports has been collected. The provider must still refuse (raise
    :class:`~runctl_core.errors.UsageError`) when its own record says the job is running, and must remove
    nothing else (another job's files, the collected copy on the laptop). Fallback (no implementation): the
    provider keeps nothing after ``terminate`` and there is nothing to remove.
    """


@hookspec(firstresult=True)
def cancel(ctx: ProviderContext, instance: Instance, job: JobStatus) -> JobStatus:  # type: ignore[empty-body]
    """Stop one job (SIGTERM, grace, force) and keep the instance. Must not raise if the job already ended.
    Fallback: ``terminate`` the instance.
    """


@hookspec(firstresult=True)
def shell(  # type: ignore[empty-body]
    ctx: ProviderContext, instance: Instance, job: JobStatus | None, command: list[str], ports: list[PortForward]
) -> ShellCommand:
    """The command that opens a shell on the instance (in the job's directory when ``job`` is given; running
    ``command`` instead of an interactive shell when it is not empty) and forwards ``ports``, for ``runctl ssh``.
    Raise ``PrerequisiteError`` with the exact install hint when a local tool it needs is missing. Declare
    ``capabilities().shell`` / ``port_forward`` (with a reason when unsupported). Fallback: ``runctl ssh`` says
    the provider offers no shell.
    """


@hookspec(firstresult=True)
def plan(ctx: ProviderContext, request: PlanRequest) -> list[PlannedCall]:  # type: ignore[empty-body]
    """The calls the given steps would make, with their arguments (no secrets), for ``--dry-run``. Must make
    no mutating call and need no credentials. Fallback: one generic entry per step.
    """


@hookspec(firstresult=True)
def settings_schema() -> Any:
    """A pydantic model class validating this provider's ``[providers.NAME]`` config table (``extra="forbid"``
    so a misspelt key is reported). Fallback: any table accepted.
    """
