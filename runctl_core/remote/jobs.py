"""Jobs on a machine, written once on top of a :class:`~runctl_core.remote.transport.Transport`.

A provider whose machines have a shell builds a :class:`JobHost` from its transport and a root directory on
the machine, and its ``sync``/``train``/``status``/``logs``/``cancel``/``list_checkpoints``/``collect`` hooks
become one line each (see ``plugins/local/runctl_local/provider.py``). Layout under ``root``::

    bin/runner.py, bin/envsetup.py...   runctl's tools (installed once per content hash: bin/.tools-HASH)
    project/                         the synced project
    manifest.json                    path -> sha256 of what was synced (incremental sync)
    manifest-stats.json              each synced file's size/mtime/ctime/inode once written (projectsync.py)
    envs/<key>/                      cached Python environments (the environment step)
    tools/                           uv, when runctl had to install it
    jobs/<job>/                      job.json (the record), log, checkpoints/, env.json while starting
    .incoming/<token>/               files sent with one command, until it moves them into place

Every operation is ONE transport call, so that slow channels (SSM: about a second per command) stay usable:
what an operation needs on the machine travels with its command (:mod:`runctl_core.remote.bundle`, unpacked by
``bootstrap.py``): ``sync`` is one ``run`` carrying the changed files (none when the
:class:`~runctl_core.remote.hostcache.HostCache` knows nothing changed), ``launch`` one ``run`` carrying the env
file, setup commands and resume checkpoints (the runner writes the pending record *before* starting the
supervisor, so ``status`` right after ``train`` is never ``lost``), ``status`` one ``run``, ``logs`` one ``run``
returning the record and the bytes together. runctl's tools ride along until the machine is known to have them.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runctl_core.errors import NotFoundError, ProviderError, UsageError
from runctl_core.models import Checkpoint, Collected, JobSpec, JobStatus, LogChunk
from runctl_core.remote import bundle as _bundle
from runctl_core.remote.bundle import EXIT_NEED_TOOLS, Bundle, bootstrap_argv, core_tools
from runctl_core.remote.hostcache import HostCache, manifest_digest
from runctl_core.remote.inline import launch_options
from runctl_core.remote.inline import run_inline as _run_inline  # a module global: tests count its calls
from runctl_core.remote.launchargs import launch_request
from runctl_core.remote.projectsync import ProjectSync, StaleProject, stale_project
from runctl_core.remote.records import TERMINAL_JOB_STATES, decode_log_chunk, job_status_from_record
from runctl_core.remote.runner import AFTER_TIMEOUT as AFTER_STEP_LIMIT  # how long an --after step may take
from runctl_core.remote.transport import CommandResult, Transport

ENVSETUP_PATH, TOOLS, tools_hash = _bundle.ENVSETUP_PATH, _bundle.TOOLS, _bundle.tools_hash  # also offered here
LOG_CHUNK = 1 << 20
EXIT_JOB_EXISTS = 17
EXIT_SCRIPT_MISSING = 18
EXIT_STALE_PROJECT = 19  # runner.py --expect-manifest: the machine holds another sync than the one expected


class JobHost(ProjectSync):
    """runctl's jobs on one machine reached through ``transport``, under the absolute directory ``root`` (or
    ``$HOME/...`` for a transport that expands it on the machine, as ``runctl_aws``'s SSM transport does).

    ``python`` is the interpreter that runs runctl's tools on the machine (``python3``; the local provider uses
    its own), ``python_args`` its options (``-S``). ``tools_dir``/``envs_dir`` override where uv and
    environments are kept (default: under
    ``root``; the local provider shares them across its sandboxes). ``env`` is added to every command's
    environment (e.g. ``RUNCTL_PYTHON``: the base interpreter for job environments).

    ``cache`` (:class:`~runctl_core.remote.hostcache.HostCache`) is the laptop's memory of this machine: with
    it, an unchanged project is not synced again and the tools are not re-sent, so a second job on a kept
    machine starts in one round trip (without it: correct, a few more). ``extra_tools`` (``name -> content``)
    are a provider's own machine-side helpers, installed in ``ROOT/bin`` (0755) with runctl's tools.
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
        cache: HostCache | None = None,
        extra_tools: Mapping[str, bytes] | None = None,
    ) -> None:
        if not root.startswith(("/", "$HOME/")):
            raise ValueError(f"the machine root must be an absolute path (or $HOME/...), got {root!r}")
        self.transport = transport
        self.root = root.rstrip("/")
        self.python = python
        self.python_args = list(python_args)
        self.tools_dir = tools_dir
        self.envs_dir = envs_dir
        self.env = dict(env or {})
        self.inline = inline  # the machine is this one: runner.py's commands run in this process (inline.py)
        self.cache = cache
        if cache is not None:
            cache.about(self.root)
        self.extra_tools = dict(extra_tools or {})
        self.tools_version = tools_hash(self.extra_tools)

    # ---------------------------------------------------------------------------------------------- paths

    def job_dir(self, job_id: str) -> str:
        if not job_id or "/" in job_id or ".." in job_id:
            raise NotFoundError(f"{job_id!r} is not a job id", "job ids look like job-1a2b3c")
        return f"{self.root}/jobs/{job_id}"

    # ---------------------------------------------------------------------------------------------- commands

    def _runner(self, *args: str, timeout: float | None = 120) -> Any:
        """Run ``runner.py ARGS`` on the machine (no files sent) and return its JSON answer."""
        if self.inline and args[0] != "launch":
            result = _run_inline(list(args))
        else:
            result = self.transport.run(
                [self.python, *self.python_args, f"{self.root}/bin/runner.py", *args],
                env=self.env,
                cwd=self.root,
                timeout=timeout,
            )
        return self._answer(result)

    def _send(self, bundle: Bundle, token: str, args: Sequence[str], timeout: float | None = 120) -> Any:
        """Run ``runner.py ARGS`` with ``bundle`` (staged as ``ROOT/.incoming/TOKEN``) in ONE round trip; the
        tools ride along unless the cache knows they are installed (if it was wrong: once more, with them)."""
        cache = self.cache
        # inline, runctl's own runner runs (in this process, and the supervisor from its package): none to send
        ship_tools = not self.inline and (cache is None or cache.tools != self.tools_version)
        while True:
            data = bundle.build(self._tools(ship_tools), compress=not self.inline)  # inline: bytes passed in memory
            python = [self.python, *self.python_args]
            launch = launch_options(self.transport, python, self.env) if self.inline and args[0] == "launch" else None
            if self.inline and (launch is not None or args[0] != "launch"):
                result = _run_inline([self.root, token, self.tools_version, str(len(data)), *args], data, launch)
            else:
                result = self.transport.run(
                    bootstrap_argv(python, self.root, token, self.tools_version, len(data), args),
                    env=self.env,
                    cwd=None,
                    timeout=timeout,
                    stdin=data,
                )
            if result.exit_code == EXIT_NEED_TOOLS and not ship_tools:
                ship_tools = True
                continue
            break
        answered = result.exit_code in (0, EXIT_JOB_EXISTS, EXIT_SCRIPT_MISSING, EXIT_STALE_PROJECT)
        if cache is not None and answered and cache.tools != self.tools_version:
            cache.tools = self.tools_version  # the runner answered: this version is installed
            cache.save()
        return self._answer(result)

    def _tools(self, ship: bool) -> dict[str, bytes] | None:
        return {**core_tools(), **self.extra_tools} if ship else None

    def _answer(self, result: CommandResult) -> Any:
        if result.exit_code == EXIT_JOB_EXISTS:
            raise UsageError(result.error_text or "the job already exists", "use a new job id")
        if result.exit_code == EXIT_SCRIPT_MISSING:
            raise UsageError(result.error_text or "the script is not in the synced project", "sync first")
        if result.exit_code == EXIT_STALE_PROJECT:
            raise stale_project(result)
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

    def _staging(self) -> tuple[str, str]:
        token = secrets.token_hex(6)
        return token, f"{self.root}/.incoming/{token}"

    # ---------------------------------------------------------------------------------------------- setup

    def install_tools(self) -> None:
        """Make sure ``root/bin`` holds this version of runctl's tools (and ``extra_tools``): one round trip,
        none when the cache knows they are there. ``sync`` and ``launch`` do it anyway."""
        if self.cache is not None and self.cache.tools == self.tools_version:
            return
        self._send(Bundle(), self._staging()[0], ["version"])

    # ---------------------------------------------------------------------------------------------- jobs

    def launch(
        self,
        job: JobSpec,
        *,
        grace: float = 10.0,
        use_uv: bool = True,
        extra: Sequence[str] = (),
    ) -> JobStatus:
        """Start ``job`` detached and return its status (``pending`` at first, never ``lost``), in ONE round trip.

        ``extra`` are further ``runner.py supervise`` options (``--interrupt-check CMD``, ``--after CMD``,
        ``--shutdown-after``...). The job's environment variables travel in a 0600 file sent with the command
        (never on a command line), with its setup commands and resume checkpoints (a local directory). When
        the last ``sync`` sent nothing, the machine checks its project is that one; if it is not (another runctl
        synced to it, or a job changed synced files there: :mod:`~runctl_core.remote.projectsync`), the project
        or those files are synced again and the job launched after that."""
        cache = self.cache
        skipped = self._skipped_sync()
        token, staging = self._staging()
        expect = None
        if skipped is not None:
            expect = (manifest_digest(skipped[1]), self.manifest_path)
        args, bundle = launch_request(
            job, job_dir=self.job_dir(job.job_id), project_dir=self.project_dir, staging=staging, grace=grace,
            use_uv=use_uv, tools_dir=self.tools_dir, envs_dir=self.envs_dir, expect_manifest=expect, extra=extra
        )
        try:
            record = self._send(bundle, token, args)
        except StaleProject as exc:
            if skipped is None:  # pragma: no cover - the runner checks only what launch asked it to
                if cache is not None:
                    cache.clear()
                raise ProviderError(
                    f"the project on the machine is not the one runctl synced there ({exc.message})",
                    "run the command again: runctl reads the machine's project afresh and syncs the differences",
                ) from None
            self._resync(skipped, exc)  # drifted files sent again, or the machine's manifest read afresh
            return self.launch(job, grace=grace, use_uv=use_uv, extra=extra)
        self._skipped = None
        if cache is not None:
            cache.skipped_sync = None
        return job_status_from_record(job.job_id, record)

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
        """Stop the job (SIGTERM to its group, ``grace`` seconds, SIGKILL); harmless when it already ended. A
        supervisor running its ``--after`` step (a final push of checkpoints) is let finish it, for at most
        ``AFTER_STEP_LIMIT`` seconds, so this call may take that much longer."""
        return job_status_from_record(
            job_id,
            self._runner(
                "stop",
                "--job-dir",
                self.job_dir(job_id),
                "--grace",
                f"{grace:g}",
                timeout=grace + 60 + AFTER_STEP_LIMIT,
            ),
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
        self.transport.remove(self.manifest_path)
        if self.cache is not None:
            self.cache.manifest, self.cache.skipped_sync = {}, None
            self.cache.save()
