"""Jobs on a machine, written once on top of a :class:`~runctl_core.remote.transport.Transport`.

A provider whose machines have a shell builds a :class:`JobHost` from its transport and a root directory on
the machine, and its ``sync``/``train``/``status``/``logs``/``cancel``/``list_checkpoints``/``collect`` hooks
become one line each (see ``plugins/local/runctl_local/provider.py``). Layout under ``root``::

    bin/runner.py, bin/envsetup.py   runctl's tools (installed once per content hash)
    project/                         the synced project
    manifest.json                    path -> sha256 of what was synced (incremental sync)
    envs/<key>/                      cached Python environments (the environment step)
    tools/                           uv, when runctl had to install it
    jobs/<job>/                      job.json (the record), log, checkpoints/, env.json while starting

Every operation is one or two transport calls, so that slow channels (SSM: about a second per command) stay
usable: ``launch`` is one ``run`` (the runner writes the pending record *before* starting the supervisor, so
``status`` right after ``train`` is never ``lost``), ``status`` is one ``run``, ``logs`` is one ``run``
returning the record and the bytes together.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runctl_core.errors import NotFoundError, ProviderError, UsageError
from runctl_core.files import changed_files, pack_tar
from runctl_core.models import Checkpoint, Collected, JobSpec, JobStatus, LogChunk, Project, SyncResult
from runctl_core.remote import RANKS_PATH, RUNNER_PATH
from runctl_core.remote.records import TERMINAL_JOB_STATES, decode_log_chunk, job_status_from_record
from runctl_core.remote.transport import CommandResult, Transport

ENVSETUP_PATH = RUNNER_PATH.with_name("envsetup.py")
TOOLS = (RUNNER_PATH, ENVSETUP_PATH, RANKS_PATH)
LOG_CHUNK = 1 << 20
EXIT_JOB_EXISTS = 17
EXIT_SCRIPT_MISSING = 18


def tools_hash() -> str:
    """A short hash of runctl's machine-side tools; providers that ship them another way can key on it."""
    digest = hashlib.sha256()
    for path in TOOLS:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _run_inline(argv: list[str]) -> CommandResult:
    import contextlib
    import io

    from runctl_core.remote import runner

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = runner.main(argv)
    return CommandResult(exit_code=code, stdout=out.getvalue().encode(), stderr=err.getvalue().encode())


class JobHost:
    """runctl's jobs on one machine reached through ``transport``, under the absolute directory ``root``.

    ``python`` is the interpreter that runs runctl's tools on the machine (``python3``; the local provider uses
    its own), ``python_args`` its options (``-S``). ``tools_dir``/``envs_dir`` override where uv and
    environments are kept (default: under
    ``root``; the local provider shares them across its sandboxes). ``env`` is added to every command's
    environment (e.g. ``RUNCTL_PYTHON``: the base interpreter for job environments).
    """

    def __init__(
        self,
        transport: Transport,
        root: str,
        *,
        python: str = "python3",
        python_args: Sequence[str] = (),
        tools_dir: str | None = None,
        envs_dir: str | None = None,
        env: Mapping[str, str] | None = None,
        inline: bool = False,
    ) -> None:
        if not root.startswith("/"):
            raise ValueError(f"the machine root must be an absolute path, got {root!r}")
        self.transport = transport
        self.root = root.rstrip("/")
        self.python = python
        self.python_args = list(python_args)
        self.tools_dir = tools_dir
        self.envs_dir = envs_dir
        self.env = dict(env or {})
        # inline: the machine is this one (LocalTransport): run runner.py's quick commands (status, read-log,
        # stop, apply-sync) in this process - the same code, without starting a Python per poll. ``launch``
        # always goes through the transport, so the supervisor gets the transport's environment.
        self.inline = inline

    # ---------------------------------------------------------------------------------------------- paths

    @property
    def project_dir(self) -> str:
        return f"{self.root}/project"

    def job_dir(self, job_id: str) -> str:
        if not job_id or "/" in job_id or ".." in job_id:
            raise NotFoundError(f"{job_id!r} is not a job id", "job ids look like job-1a2b3c")
        return f"{self.root}/jobs/{job_id}"

    def _runner(self, *args: str, timeout: float | None = 120) -> Any:
        """Run ``runner.py ARGS`` on the machine and return its JSON answer."""
        if self.inline and args[0] != "launch":
            result = _run_inline(list(args))
        else:
            result = self.transport.run(
                [self.python, *self.python_args, f"{self.root}/bin/runner.py", *args],
                env=self.env,
                cwd=self.root,
                timeout=timeout,
            )
        if result.exit_code == EXIT_JOB_EXISTS:
            raise UsageError(result.error_text or "the job already exists", "use a new job id")
        if result.exit_code == EXIT_SCRIPT_MISSING:
            raise UsageError(result.error_text or "the script is not in the synced project", "sync first")
        if result.exit_code != 0:
            raise ProviderError(
                f"runctl's runner failed on the machine (exit {result.exit_code}): {result.error_text[-500:]}",
                "check that the machine has python3 (>= 3.8) and free disk space",
            )
        try:
            return json.loads(result.text.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise ProviderError(
                f"runctl's runner gave an unreadable answer: {result.text[-200:]!r}", "report this as a runctl bug"
            ) from None

    # ---------------------------------------------------------------------------------------------- setup

    def install_tools(self) -> None:
        """Put runner.py and envsetup.py into ``root/bin`` unless this version is already there."""
        marker = f"{self.root}/bin/.tools-{tools_hash()}"
        try:
            self.transport.read_range(marker, 0, 1)
            return
        except FileNotFoundError:
            pass
        for path in TOOLS:
            self.transport.put(path.read_bytes(), f"{self.root}/bin/{path.name}", mode=0o755)
        self.transport.put(b"", marker)

    def sync(self, project: Project) -> SyncResult:
        """Make ``root/project`` equal to ``project``: only files whose hash changed since the last sync are sent
        (one tar), files gone from the project are deleted, and the manifest on the machine is replaced last."""
        self.install_tools()
        previous: dict[str, str] = {}
        try:
            raw = self.transport.read_range(f"{self.root}/manifest.json", 0, 1 << 30)
            loaded = json.loads(raw.decode("utf-8"))
            previous = loaded if isinstance(loaded, dict) else {}
        except (FileNotFoundError, ValueError):
            previous = {}
        send, delete = changed_files(project, previous)
        manifest = project.manifest()
        if send or delete or manifest != previous:
            token = secrets.token_hex(4)
            args = ["apply-sync", "--dest", self.project_dir, "--manifest", f"{self.root}/manifest.json"]
            if send:
                tar = f"{self.root}/.sync-{token}.tar.gz"
                self.transport.put(pack_tar(project, send), tar, mode=0o600)
                args += ["--tar", tar]
            meta = f"{self.root}/.sync-{token}.json"
            self.transport.put(json.dumps({"delete": delete, "manifest": manifest}).encode(), meta, mode=0o600)
            self._runner(*args, "--meta", meta, timeout=600)
        return SyncResult(
            remote_path=self.project_dir,
            files_total=len(project.files),
            files_sent=len(send),
            bytes_sent=sum(f.size for f in send),
            files_deleted=len(delete),
        )

    # ---------------------------------------------------------------------------------------------- jobs

    def launch(
        self,
        job: JobSpec,
        *,
        grace: float = 10.0,
        use_uv: bool = True,
        extra: Sequence[str] = (),
    ) -> JobStatus:
        """Start ``job`` detached and return its status (``pending`` at first, never ``lost``).

        ``extra`` are further ``runner.py supervise`` options (``--interrupt-check CMD``, ``--after CMD``,
        ``--shutdown-after``...). The job's environment variables travel in a 0600 file, never on a command
        line; the resume checkpoints (a local directory) are copied to the machine first."""
        self.install_tools()
        job_dir = self.job_dir(job.job_id)
        args = [
            "launch",
            "--job-dir",
            job_dir,
            "--workdir",
            self.project_dir,
            "--checkpoint-dir",
            f"{job_dir}/checkpoints",
            "--job-id",
            job.job_id,
            "--grace",
            f"{grace:g}",
        ]
        if job.env:
            self.transport.put(json.dumps(job.env).encode(), f"{job_dir}/env.json", mode=0o600)
            args += ["--env-file", f"{job_dir}/env.json"]
        if job.setup:
            self.transport.put(json.dumps(job.setup).encode(), f"{job_dir}/setup-commands.json", mode=0o600)
            args += ["--setup-file", f"{job_dir}/setup-commands.json"]
        if job.python:
            args += ["--python", job.python]
        if not use_uv:
            args.append("--no-uv")
        if job.timeout:
            args += ["--timeout", f"{job.timeout:g}"]
        if self.tools_dir:
            args += ["--tools-dir", self.tools_dir]
        if self.envs_dir:
            args += ["--envs-dir", self.envs_dir]
        if job.resume_dir and Path(job.resume_dir).is_dir():
            base = Path(job.resume_dir)
            for path in sorted(base.rglob("*")):
                if path.is_file():
                    self.transport.put(path, f"{job_dir}/resume/{path.relative_to(base).as_posix()}")
            args += ["--resume-dir", f"{job_dir}/resume"]
        if job.nodes > 1 or job.launcher != "python":  # N ranks through ranks.py (see its docstring)
            args += ["--nodes", str(job.nodes), "--launcher", job.launcher, "--nproc-per-node", str(job.procs_per_node)]
        args += [*extra, "--", job.script, *job.args]
        return job_status_from_record(job.job_id, self._runner(*args))

    def status(self, job_id: str) -> JobStatus:
        return job_status_from_record(job_id, self._runner("status", "--job-dir", self.job_dir(job_id)))

    def logs(self, job_id: str, offset: int, limit: int = LOG_CHUNK, rank: int = 0) -> LogChunk:
        """The log (of ``rank`` for a multi-node job) from byte ``offset``: never splits a UTF-8 character, always
        progresses past invalid bytes, ``complete`` only once the job ended and everything was returned."""
        answer = self._runner(
            "read-log",
            "--job-dir",
            self.job_dir(job_id),
            "--offset",
            str(int(offset)),
            "--max",
            str(int(limit)),
            "--rank",
            str(int(rank)),
        )
        data = base64.b64decode(answer.get("data", ""))
        terminal = job_status_from_record(job_id, answer.get("record") or {}).state in TERMINAL_JOB_STATES
        at_end = bool(answer.get("at_end", True))
        text, used = decode_log_chunk(data, final=terminal and at_end)
        return LogChunk(
            data=text, offset=offset, next_offset=offset + used, complete=terminal and at_end and used == len(data)
        )

    def stop(self, job_id: str, grace: float) -> JobStatus:
        """Stop the job (SIGTERM to its group, ``grace`` seconds, SIGKILL); harmless when it already ended."""
        return job_status_from_record(
            job_id,
            self._runner("stop", "--job-dir", self.job_dir(job_id), "--grace", f"{grace:g}", timeout=grace + 60),
        )

    def job_ids(self) -> list[str]:
        """Every job that has a record on this machine."""
        return sorted({f.path.split("/")[0] for f in self.transport.walk(f"{self.root}/jobs") if "/" in f.path})

    def stop_all(self, grace: float) -> None:
        for job_id in self.job_ids():
            self.stop(job_id, grace)

    def checkpoints(self, job_id: str) -> list[Checkpoint]:
        base = f"{self.job_dir(job_id)}/checkpoints"
        return [
            Checkpoint(
                name=f.path,
                size=f.size,
                modified_at=datetime.fromtimestamp(f.mtime, timezone.utc),
                location=f"{base}/{f.path}",
            )
            for f in self.transport.walk(base)
        ]

    def collect(self, job_id: str, dest: Path) -> Collected:
        """Copy the job's checkpoint directory into the local directory ``dest``."""
        written: list[Path] = []
        base = f"{self.job_dir(job_id)}/checkpoints"
        for item in self.transport.walk(base):
            target = dest / item.path
            target.parent.mkdir(parents=True, exist_ok=True)
            self.transport.get(f"{base}/{item.path}", target)
            written.append(target)
        return Collected(directory=dest, files=written)

    def remove_project(self) -> None:
        """Remove the synced project and its manifest (jobs' records, logs and checkpoints are kept)."""
        self.transport.remove(self.project_dir)
        self.transport.remove(f"{self.root}/manifest.json")
