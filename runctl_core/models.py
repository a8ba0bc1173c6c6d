"""Typed records passed between the core and providers. Every hook takes and returns these.

Times are timezone-aware UTC datetimes; money is US dollars per hour (``*_hourly``) or US dollars.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Record(BaseModel):
    """Base for all records: strict about unknown fields so typos in plugins fail loudly."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


# --------------------------------------------------------------------------------------------- states


class InstanceState(str, enum.Enum):
    """Where an instance is in its life. Providers map their own states onto these."""

    PENDING = "pending"  # requested, not usable yet (booting, pulling an image, queued)
    RUNNING = "running"  # usable: sync and train may be called
    STOPPING = "stopping"
    STOPPED = "stopped"  # exists, not billed for compute (where the provider has such a state)
    TERMINATED = "terminated"  # gone; terminal
    UNKNOWN = "unknown"

    @property
    def alive(self) -> bool:
        """True while the instance may cost money."""
        return self in (InstanceState.PENDING, InstanceState.RUNNING, InstanceState.STOPPING, InstanceState.UNKNOWN)


class JobState(str, enum.Enum):
    """Where a job is. ``succeeded``/``failed``/``interrupted``/``lost``/``cancelled`` are terminal."""

    PENDING = "pending"  # submitted, not started
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # the script exited 0
    FAILED = "failed"  # the script exited non-zero (``exit_code`` says how)
    INTERRUPTED = "interrupted"  # the machine was preempted/reclaimed under the job; resumable
    LOST = "lost"  # the job's process or machine vanished without an exit code
    CANCELLED = "cancelled"  # stopped on request (terminate / Ctrl-C)

    @property
    def terminal(self) -> bool:
        return self not in (JobState.PENDING, JobState.RUNNING)


# --------------------------------------------------------------------------------------------- capabilities


class Capability(Record):
    """Whether a provider supports one feature, and if not, why (shown to the user before acting)."""

    supported: bool = True
    reason: str = ""


class Capabilities(Record):
    """What a provider can and cannot do. The core checks these before acting, instead of failing late."""

    spot: Capability = Field(default_factory=lambda: Capability(supported=False, reason="no spot market"))
    stop: Capability = Field(default_factory=lambda: Capability(supported=False, reason="instances cannot be stopped"))
    log_follow: Capability = Field(default_factory=Capability)
    checkpoints: Capability = Field(default_factory=Capability)
    max_runtime: Capability = Field(
        default_factory=lambda: Capability(supported=False, reason="no self-termination timer")
    )
    gpu: Capability = Field(default_factory=Capability)
    shell: Capability = Field(
        default_factory=lambda: Capability(supported=False, reason="this provider offers no shell (no `shell` hook)")
    )
    port_forward: Capability = Field(
        default_factory=lambda: Capability(supported=False, reason="this provider cannot forward ports")
    )
    paid: bool = True  # False for providers that never cost money (local)
    poll_interval: float = 5.0  # seconds between status polls while waiting (the core backs off from here)
    ready_timeout: float = 900.0  # default seconds to wait for an instance to become ready
    # "instance": billed while the instance exists (EC2, pods); "job": only while a job runs (Lyceum executions),
    # so the core costs a job as hourly_price x the job's run time, and an idle instance as nothing.
    billing: Literal["instance", "job"] = "instance"
    # several nodes per job (``--nodes N``): one process group per node with torchrun-compatible variables
    multi_node: Capability = Field(
        default_factory=lambda: Capability(supported=False, reason="this provider runs a job on one machine")
    )
    # Who retries transient failures of the read hooks (status, ready, logs, price, list_*, collect, terminate):
    # "core" (default): the provider raises TransientError at once and the core retries with backoff, within the
    # command's deadline (--wait-timeout); "client": the provider's own client retries and the core does not -
    # never both, so tries are not multiplied (5 x 6 tries turned a 5 s --wait-timeout into 68 s).
    retries: Literal["core", "client"] = "core"


# --------------------------------------------------------------------------------------------- provider context


class ProviderContext(Record):
    """Passed to every hook: where the provider may keep files, its config section, and who the user is."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, defer_build=True)

    provider: str
    state_dir: Path  # private directory under RUNCTL_HOME for this provider (keys, caches)
    settings: dict[str, Any] = Field(default_factory=dict)  # the ``[providers.NAME]`` config table
    owner: str  # value for the ``runctl:owner`` tag
    interactive: bool = False  # True when the user can be asked a question (stdin and stderr are TTYs)
    progress: Any = None  # a ``runctl_core.progress.Progress``; call ``ctx.report(msg)`` instead of using it

    def report(self, message: str) -> None:
        """Show a progress line (only on a TTY, never in JSON output). Never include secrets."""
        if self.progress is not None:
            self.progress.update(message)

    def warn(self, message: str) -> None:
        """Show a warning the user must see (on stderr, also in scripts)."""
        if self.progress is not None:
            self.progress.warn(message)
        else:  # pragma: no cover - progress is always set by the core
            import sys

            print(f"warning: {message}", file=sys.stderr)

    def confirm(self, question: str) -> bool:
        """Ask a yes/no question when interactive; return False (the safe answer) otherwise."""
        if not self.interactive or self.progress is None:
            return False
        return bool(self.progress.confirm(question))


# --------------------------------------------------------------------------------------------- instances


class InstanceSpec(Record):
    """What to create. ``intent_id`` is journalled before ``create`` is called and makes creation idempotent."""

    intent_id: str  # unique id of this creation attempt (use it as the provider's idempotency token)
    job_id: str | None = None  # the job this instance is for (tag ``runctl:job``)
    owner: str  # tag ``runctl:owner``
    instance_type: str | None = None  # the provider's own machine type (``t3.micro``, ``gpu.a100``)
    gpu: str | None = None  # a friendly GPU name (``A100``, ``RTX 4090``) the provider resolves
    gpu_count: int = Field(default=1, ge=1, le=64)
    spot: bool = False
    max_price: float | None = Field(default=None, gt=0)  # cap in $/h for the whole instance
    on_demand_fallback: str = "never"  # spot refused: "always" fall back, "ask" (interactive), "never"
    max_runtime: float | None = Field(default=None, gt=0)  # seconds; the instance must end itself after this
    image: str | None = None  # machine/container image override
    disk_gb: int | None = Field(default=None, gt=0)
    region: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)  # extra tags; the core adds runctl:* ones


class Instance(Record):
    """A machine (or sandbox) a provider created, as the provider sees it now."""

    id: str  # the provider's own id: ``i-0abc...``, a pod id, a directory name
    provider: str
    state: InstanceState
    instance_type: str | None = None
    gpu: str | None = None
    gpu_count: int = 0
    spot: bool = False
    hourly_price: float | None = None  # what this instance costs per hour, when known
    region: str | None = None
    created_at: datetime | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)  # provider-specific, JSON-serialisable, no secrets
    message: str = ""  # a human explanation of the state (e.g. "pulling image", "spot reclaimed")


# --------------------------------------------------------------------------------------------- sync


class ProjectFile(Record):
    """One file of the project to sync, relative to the project root, with its content hash."""

    path: str  # POSIX, relative
    size: int
    sha256: str
    mode: int = 0o644


class Project(Record):
    """The files runctl sends to an instance: already filtered by .gitignore/.runctlignore and hashed."""

    root: Path
    files: list[ProjectFile]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def manifest(self) -> dict[str, str]:
        """path -> sha256; providers keep the last one to upload only what changed."""
        return {f.path: f.sha256 for f in self.files}


class SyncResult(Record):
    remote_path: str  # where the project now is on the instance
    files_total: int
    files_sent: int  # changed or new files actually transferred
    bytes_sent: int
    files_deleted: int = 0

    @classmethod
    def of_changes(
        cls, remote_path: str, project: Project, send: Sequence[ProjectFile], delete: Sequence[str]
    ) -> SyncResult:
        """The result of a sync that sent ``send`` and deleted ``delete`` (as ``runctl_core.files.changed_files``
        gives them) to make ``remote_path`` equal to ``project``."""
        return cls(
            remote_path=remote_path,
            files_total=len(project.files),
            files_sent=len(send),
            bytes_sent=sum(f.size for f in send),
            files_deleted=len(delete),
        )


# --------------------------------------------------------------------------------------------- jobs


class JobSpec(Record):
    """A script to run on an instance.

    The provider runs ``SCRIPT ARGS`` from the synced project directory, detached from the CLI, with ``uv run``
    when uv is available (PEP 723 inline dependencies) and the machine's Python otherwise. It sets
    ``RUNCTL_JOB_ID`` and ``RUNCTL_CHECKPOINT_DIR`` (a directory on the machine whose files are the job's
    checkpoints and outputs) plus ``env``. When ``resume_dir`` is set, its files (a local directory of
    checkpoints from an earlier attempt) are placed in the checkpoint directory before the script starts.
    """

    job_id: str
    script: str  # path relative to the project root
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    timeout: float | None = Field(default=None, gt=0)  # seconds; the job is killed after this
    resume_dir: Path | None = None
    terminate_on_exit: bool = False  # the instance should end itself when the job ends (remote providers)
    # The environment step (runctl_core/remote/envsetup.py) runs these shell lines in the project directory,
    # with the job's environment activated, once per environment (cached with it), before the script.
    setup: list[str] = Field(default_factory=list)
    python: str | None = Field(default=None, pattern=r"^3(\.\d{1,2}){0,2}$")  # e.g. "3.11"; default: the machine's
    # multi-node (providers declaring ``multi_node``): ``nodes`` process groups, one per node, each with RANK,
    # NODE_RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, RUNCTL_NUM_NODES (runctl_core/remote/ranks.py)
    nodes: int = Field(default=1, ge=1, le=1024)
    launcher: Literal["python", "torchrun"] = "python"  # torchrun: ``python -m torch.distributed.run`` per node
    procs_per_node: int = Field(default=1, ge=1, le=64)  # torchrun's --nproc-per-node


class EnvironmentReport(Record):
    """How the job's Python environment was prepared (the environment step, before the script started).

    ``state``: ``none`` (nothing declared: the machine's Python), ``cached`` (an environment with the same inputs
    already existed on the machine), ``installed`` (built now), ``failed`` (the job never started: a setup
    failure, with ``message`` and ``hint``), ``skipped`` (a provider not using the environment step)."""

    state: Literal["none", "cached", "installed", "failed", "skipped"]
    seconds: float | None = None  # how long the step took, apart from the script's own run time
    summary: str = ""
    message: str = ""
    hint: str = ""


class JobStatus(Record):
    job_id: str
    state: JobState
    exit_code: int | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    message: str = ""  # e.g. "spot instance reclaimed", "killed after timeout"
    setup: EnvironmentReport | None = None  # the environment step's outcome, when the provider ran it
    cost: float | None = None  # USD billed for this job, when the provider reports it (preferred over estimates)
    rank: int | None = None  # multi-node: the rank whose end decided the job's state (the first to fail)


class StatusReport(Record):
    """The instance as the provider sees it, joined with the job's state when a job was asked for."""

    instance: Instance
    job: JobStatus | None = None


class LogChunk(Record):
    """Log bytes from ``offset``; the core asks again from ``next_offset`` (no repeats, no gaps)."""

    data: str
    offset: int
    next_offset: int
    complete: bool = False  # True when the job has ended and everything has been returned


class Checkpoint(Record):
    name: str  # relative path inside the checkpoint directory
    size: int
    modified_at: datetime | None = None
    location: str  # where it lives: a local path, ``s3://...``, ``pod:/...``


class Collected(Record):
    """What ``collect`` brought back to the laptop."""

    directory: Path
    files: list[Path]


# --------------------------------------------------------------------------------------------- prices


class Offer(Record):
    """A machine a provider can rent, with its price."""

    provider: str
    instance_type: str  # what to pass as --instance-type to get this offer
    gpu: str | None = None
    gpu_count: int = 0
    vcpus: float | None = None
    memory_gb: float | None = None
    on_demand_hourly: float | None = None
    spot_hourly: float | None = None  # for the whole machine (per-GPU prices multiplied by the count)
    availability: str = "unknown"  # "high", "medium", "low", "none", "unknown"
    region: str | None = None
    source: str = ""  # where the price came from ("api", "bundled table 2026-11-01", ...)
    # the offer `create` launches for this query (e.g. the provider's default type when the query names none):
    # the price shown before spending is this one's, not the cheapest offer's
    chosen: bool = False

    def best_price(self, spot: bool) -> float | None:
        return self.spot_hourly if spot else self.on_demand_hourly


class PriceQuery(Record):
    gpu: str | None = None
    instance_type: str | None = None
    gpu_count: int | None = None
    spot: bool | None = None  # None: both
    region: str | None = None


# --------------------------------------------------------------------------------------------- credentials, plans


class CredentialStatus(Record):
    found: bool
    source: str = ""  # e.g. "environment RUNPOD_API_KEY", "~/.aws/credentials (profile default)"
    message: str = ""
    hint: str = ""  # what to do when not found / not valid
    identity: str = ""  # who the credentials belong to, when the check asked the API (no secret)
    # probe=True only: True when the provider's API accepted them, False when it refused them (a rejected key is
    # "refused", not "found"); None when not asked
    accepted: bool | None = None


class PlannedCall(Record):
    """One provider call a command would make; printed by ``--dry-run``."""

    step: str  # "create", "sync", "train", "wait", "collect", "terminate"
    api: str  # e.g. "ec2", "graphql", "https://api.lyceum.technology", "local"
    operation: str  # e.g. "RunInstances", "podFindAndDeployOnDemand", "POST /execution/streaming/start"
    params: dict[str, Any] = Field(default_factory=dict)
    paid: bool = False  # True when this call starts billing


class PortForward(Record):
    """``--port LOCAL[:REMOTE]``: LOCAL on this machine reaches REMOTE on the instance."""

    local: int = Field(ge=1, le=65535)
    remote: int = Field(ge=1, le=65535)


class ShellCommand(Record):
    """What ``runctl ssh`` runs on this machine, attached to the terminal (ssh, an SSM session, a local shell)."""

    argv: list[str]
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)  # added to runctl's environment (no secrets in output)


class PlanRequest(Record):
    steps: list[str]  # subset of create, stage (providers with the hook), wait, sync, train, collect, terminate
    instance: InstanceSpec | None = None
    instance_id: str | None = None  # for steps on an existing instance
    job: JobSpec | None = None
    project_files: int = 0
    project_bytes: int = 0
