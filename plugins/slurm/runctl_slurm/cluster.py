"""runctl's operations on a Slurm cluster, through its login node (one transport call = one round trip).

Layout on the shared filesystem, under the setting ``workdir``::

    WORKDIR/instances/<id>/project/         the synced project (one per runctl instance)
    WORKDIR/instances/<id>/bin/             runctl's runner.py and ranks.py (stdlib only)
    WORKDIR/instances/<id>/jobs/<job>/      batch.sh, batch.log, job.json (the job's record, written by the
                                            batch script and the ranks), log -> ranks/0/log, ranks/K/,
                                            checkpoints/ (rank 0's)
"""

from __future__ import annotations

import io
import json
import shlex
import tarfile
from dataclasses import dataclass
from typing import Any

from runctl_core.errors import PrerequisiteError, ProviderError, TransientError, UsageError
from runctl_core.remote.bundle import core_tools
from runctl_core.remote.transport import CommandResult
from runctl_slurm.slurm import SQUEUE_FORMAT, SlurmJob, parse_squeue_format, parse_squeue_json
from runctl_slurm.transport import Counting

SEP = "@@runctl@@"
EXIT_NO_COMMANDS, EXIT_NO_PARTITION, EXIT_NOT_WRITABLE = 41, 42, 43


@dataclass
class Paths:
    root: str  # WORKDIR/instances/<id>, absolute

    @property
    def workdir(self) -> str:
        """The setting ``workdir`` (absolute): environments and tools are shared by its instances."""
        return self.root.rsplit("/instances/", 1)[0]

    @property
    def project(self) -> str:
        return f"{self.root}/project"

    @property
    def bin(self) -> str:
        return f"{self.root}/bin"

    def job(self, job_id: str) -> str:
        if not job_id or "/" in job_id or ".." in job_id:
            raise UsageError(f"{job_id!r} is not a job id", "job ids look like job-1a2b3c")
        return f"{self.root}/jobs/{job_id}"


def checks_script(workdir: str, partition: str | None) -> str:
    """Shell lines that stop with a distinct exit code when a prerequisite is missing (sbatch(1), sinfo(1))."""
    part = shlex.quote(partition) if partition else ""
    lines = [
        "for c in sbatch squeue scancel srun sinfo scontrol; do command -v $c >/dev/null || "
        f'{{ echo "$c" >&2; exit {EXIT_NO_COMMANDS}; }}; done',
        f"mkdir -p {workdir} 2>/dev/null && test -w {workdir} || {{ echo {workdir} >&2; exit {EXIT_NOT_WRITABLE}; }}",
    ]
    if partition:
        lines.append(
            f"sinfo -h -o %R -p {part} 2>/dev/null | grep -qx {part} || "
            f"{{ echo {part} >&2; exit {EXIT_NO_PARTITION}; }}"
        )
    return "\n".join(lines)


def raise_for_checks(result: CommandResult, host: str | None) -> None:
    where = f"the login node {host}" if host else "this machine"
    detail = result.error_text.splitlines()[-1] if result.error_text else ""
    if result.exit_code == EXIT_NO_COMMANDS:
        raise PrerequisiteError(
            f"the Slurm command {detail} is not on {where}'s PATH",
            "install Slurm's client commands (Debian/Ubuntu: sudo apt-get install slurm-client), or set "
            "[providers.slurm] host to the cluster's login node",
        )
    if result.exit_code == EXIT_NOT_WRITABLE:
        raise PrerequisiteError(
            f"the workdir {detail} on {where} cannot be created or written",
            f"create it on the shared filesystem: mkdir -p {detail}, or set [providers.slurm] workdir",
        )
    if result.exit_code == EXIT_NO_PARTITION:
        raise PrerequisiteError(
            f"the Slurm partition {detail} does not exist on {where}",
            "list partitions with: sinfo -s; then: runctl config set providers.slurm.partition NAME",
        )


def tools_tar(files: dict[str, bytes], modes: dict[str, int] | None = None) -> bytes:
    """A gzipped tar of ``relative path -> content`` (runctl's tools, a batch script, an env file)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = (modes or {}).get(name, 0o644)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def runctl_tools() -> dict[str, bytes]:
    """runctl's machine-side tools: the runner, the multi-node launcher and (when the core has it) the
    environment step (the core's TOOLS: runner.py and its modules), all stdlib-only files run by the nodes'
    Python."""
    return {f"bin/{name}": data for name, data in core_tools().items()}


class Cluster:
    """The cluster as seen from its login node (or from this machine when ``host`` is None)."""

    def __init__(self, transport: Counting, host: str | None, timeout: float) -> None:
        self.transport = transport
        self.host = host
        self.timeout = timeout

    def sh(self, script: str, stdin: bytes | None = None) -> CommandResult:
        return self.transport.run(["sh", "-c", script], stdin=stdin, timeout=self.timeout)

    def resolve_workdir(self, workdir: str, partition: str | None) -> str:
        """Check the prerequisites and return ``workdir`` as an absolute path (``~`` is the cluster's home)."""
        path = '"$HOME"' + shlex.quote(workdir[1:]) if workdir.startswith("~") else shlex.quote(workdir)
        result = self.sh(f"{checks_script(path, partition)}\ncd {path} && pwd -P")
        raise_for_checks(result, self.host)
        if result.exit_code != 0 or not result.text.strip().startswith("/"):
            raise ProviderError(f"could not resolve the workdir {workdir}: {result.error_text}", "check the workdir")
        return result.text.strip().splitlines()[-1]

    def upload_and_run(self, data: bytes, dest: str, then: str) -> CommandResult:
        """Put a tar, unpack it into ``dest`` and run ``then`` there: two round trips."""
        tar = f"{dest}/.upload-{id(data):x}.tgz"
        self.transport.put(data, tar, mode=0o600)
        q = shlex.quote
        return self.sh(f"cd {q(dest)} && tar -xzf {q(tar)} && rm -f {q(tar)} && {{\n{then}\n}}")

    def queue(self, job_ids: list[str] | None = None, extra: str = "") -> list[SlurmJob]:
        """squeue (JSON when the build has it, else --format), for ``job_ids`` or every job."""
        jobs = f"--jobs={','.join(job_ids)}" if job_ids else ""
        script = (
            f'{extra}\nout=$(squeue --json {jobs} 2>/dev/null) && echo "$out" || '
            f"{{ echo {SEP}format; squeue -h -o '{SQUEUE_FORMAT}' {jobs} 2>/dev/null; true; }}"
        )
        return self.parse_queue(self.sh(script).text)

    @staticmethod
    def parse_queue(text: str) -> list[SlurmJob]:
        if text.startswith(f"{SEP}format"):
            return parse_squeue_format(text.split("\n", 1)[1] if "\n" in text else "")
        try:
            return parse_squeue_json(text)
        except ValueError:
            raise TransientError("squeue gave an unreadable answer", "try again; check `squeue --json`") from None

    def job_state(self, slurm_id: str, job_dir: str) -> tuple[SlurmJob | None, dict[str, Any] | None, str]:
        """What Slurm says of the job (squeue, then sacct where accounting is kept), the job's record and the
        tail of its batch log: one round trip."""
        q = shlex.quote
        script = (
            f"out=$(squeue --json --jobs={q(slurm_id)} 2>/dev/null) || out=''\n"
            f'case "$out" in *\'"job_id"\'*) ;; '
            f"*) out=$(sacct --json -j {q(slurm_id)} 2>/dev/null) || out='' ;; esac\n"
            f'echo "$out"; echo {SEP}; cat {q(job_dir)}/job.json 2>/dev/null; echo; echo {SEP}; '
            f"tail -c 1500 {q(job_dir)}/batch.log 2>/dev/null; true"
        )
        text = self.sh(script).text
        queue_text, record_text, batch_log = ([*text.split(f"{SEP}\n"), "", "", ""])[:3]
        slurm = None
        if '"job_id"' in queue_text:
            with_id = [j for j in parse_squeue_json(queue_text) if j.job_id == slurm_id]
            slurm = with_id[0] if with_id else None
        record = None
        try:
            record = json.loads(record_text) if record_text.strip() else None
        except ValueError:
            record = None
        return slurm, record, batch_log

    def cancel(self, slurm_ids: list[str]) -> None:
        if slurm_ids:
            self.sh(f"scancel {' '.join(shlex.quote(i) for i in slurm_ids)} 2>&1; true")
