"""What is checked, and planned, before anything is created: the provider's declared capabilities and
credentials, the script, the job's environment variables, the outputs directory, the project's files to send,
and the dry-run plan of a run. Each check raises the error a user can act on; none calls a mutating API."""

from __future__ import annotations

import os
from pathlib import Path

from runctl_core.errors import CapabilityError, CredentialsError, UsageError
from runctl_core.files import hash_cache_path, scan_project, size_warning
from runctl_core.models import InstanceSpec, JobSpec, PlannedCall, PlanRequest, Project
from runctl_core.plugins import Provider
from runctl_core.run_models import InstanceRequest, RunRequest
from runctl_core.session import Session

# ------------------------------------------------------------------------------------------------ provider


def check_request(provider: Provider, request: InstanceRequest) -> None:
    """Refuse, before anything is done, what the provider declared it cannot do."""
    caps = provider.capabilities()
    if request.spot and not caps.spot.supported:
        raise CapabilityError(
            f"provider {provider.name!r} cannot run spot instances: {caps.spot.reason}",
            "drop --spot, or choose a provider that has spot (runctl price --gpu NAME compares them)",
        )
    if request.gpu and not caps.gpu.supported:
        raise CapabilityError(
            f"provider {provider.name!r} cannot give a GPU: {caps.gpu.reason}",
            "drop --gpu, or choose a provider with GPUs: runctl price --gpu " + request.gpu,
        )


def check_nodes(provider: Provider, nodes: int, launcher: str) -> None:
    """Refuse ``--nodes N`` (N > 1) and ``--launcher torchrun`` on a provider without ``multi_node``."""
    caps = provider.capabilities()
    if (nodes > 1 or launcher != "python") and not caps.multi_node.supported:
        what = f"--nodes {nodes}" if nodes > 1 else f"--launcher {launcher}"
        raise CapabilityError(
            f"provider {provider.name!r} cannot run {what}: {caps.multi_node.reason}",
            "drop it, or choose a provider with multi-node jobs: --provider local (to debug) or slurm",
        )


def check_credentials(provider: Provider) -> None:
    status = provider.check_credentials(probe=False)
    if not status.found:
        raise CredentialsError(
            f"no credentials for {provider.name}: {status.message or 'none found'}",
            status.hint or f"see: runctl providers --check, and the README section on {provider.name}",
        )


# ------------------------------------------------------------------------------------------------ project


def project_files(session: Session, root: Path, outputs_dir: Path | None = None) -> Project:
    """The project's files to send, without runctl's state directory, collected outputs inside it (this run's
    and every earlier job's), or credential files (unless `[run] send_credential_files` lists them); an unusually
    large project is said first."""
    has_jobs = (session.home / "state.db").exists()  # a dry run on a fresh machine creates no state store
    collected = [Path(directory) for directory in session.store.outputs_dirs()] if has_jobs else []
    project = scan_project(
        root,
        exclude=[session.home, *([outputs_dir] if outputs_dir else []), *collected],
        allow_credentials=session.loaded.config.run.send_credential_files,
        hash_cache=hash_cache_path(session.home, root),
    )
    warning = size_warning(project)
    if warning:
        session.progress.warn(warning)
    return project


def check_outputs_dir(directory: Path) -> None:
    """Refuse, before anything is created, an outputs directory that cannot be written (after a whole run would
    be too late: the checkpoints would have nowhere to go)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".runctl-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"cannot write the outputs directory {directory}: {exc.strerror or exc}",
            "pass --outputs DIR with a directory you can write (it is created when missing)",
        ) from None


RESERVED_ENV_PREFIX = "RUNCTL_"  # runctl's own variables (RUNCTL_JOB_ID, RUNCTL_CHECKPOINT_DIR, ...)


def check_job_env(env: dict[str, str]) -> None:
    """Refuse environment a job may not set: runctl's own variables identify the job and its processes."""
    reserved = sorted(name for name in env if name.upper().startswith(RESERVED_ENV_PREFIX))
    if reserved:
        raise UsageError(
            f"{', '.join(reserved)} {'is' if len(reserved) == 1 else 'are'} reserved: runctl sets its own"
            " RUNCTL_* variables in every job (RUNCTL_JOB_ID identifies the job's processes)",
            "use another name for your variable, e.g. MY_JOB_ID",
        )


def resolve_script(project_root: Path, script: str) -> tuple[Path, str]:
    """(project root, script path relative to it); the script must exist inside the project."""
    root = project_root.resolve()
    path = Path(script)
    absolute = (path if path.is_absolute() else Path.cwd() / path).resolve()
    if not absolute.is_file():
        raise UsageError(
            f"script {script} does not exist",
            "check the path: a SCRIPT argument is relative to the current directory, a job file's `script:` to its "
            "`project:` (default: the job file's directory)",
        )
    _check_python_script(script, absolute)
    try:
        relative = absolute.relative_to(root).as_posix()
    except ValueError:
        raise UsageError(
            f"script {script} is outside the project directory {root}",
            "run runctl from the project's directory, or pass --project DIR that contains the script",
        ) from None
    return root, relative


_NOT_PYTHON = {".sh", ".bash", ".zsh", ".fish", ".ksh", ".csh", ".ps1", ".bat", ".cmd", ".js", ".rb", ".pl", ".jl"}


def _check_python_script(script: str, path: Path) -> None:
    """runctl starts SCRIPT with Python (a job file's ``command:`` is refused until non-Python entries exist):
    a shell (or other) script is refused before anything is created, not run into a SyntaxError."""
    if path.suffix == ".py":
        return
    try:
        with path.open("rb") as handle:
            first = handle.readline(200)
    except OSError:
        first = b""
    shebang = first.startswith(b"#!")
    if path.suffix.lower() in _NOT_PYTHON or (shebang and b"python" not in first):
        raise UsageError(
            f"script {script} is not a Python script: runctl runs SCRIPT with Python",
            f"run it before a Python entry point with --setup 'bash {script}', or start it from a Python wrapper"
            f" (subprocess.run(['bash', '{script}'], check=True))",
        )


# ------------------------------------------------------------------------------------------------ plan


def plan_run(provider: Provider, request: RunRequest, project: Project) -> list[PlannedCall]:
    spec = InstanceSpec(
        intent_id="intent-<new>",
        job_id="job-<new>",
        owner="<owner>",
        **request.instance.model_dump(exclude={"wait_timeout"}),
    )
    job = JobSpec(
        job_id="job-<new>",
        script=request.script,
        args=request.args,
        timeout=request.timeout,
        nodes=request.nodes,
        launcher=request.launcher,
    )
    staged = ["stage"] if provider.has("stage") else []
    steps = ["create", *staged, "wait", "sync", "train"] + ([] if request.detach else ["wait", "collect"])
    if not request.keep and not request.detach:
        steps.append("terminate")
    return provider.plan(
        PlanRequest(
            steps=list(dict.fromkeys(steps)),
            instance=spec,
            job=job,
            project_files=len(project.files),
            project_bytes=project.total_bytes,
        )
    )
