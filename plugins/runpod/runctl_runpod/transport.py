"""How runctl reaches a pod it created: its local record (key, pinned host key, last address), an SSH handle
(:class:`runctl_runpod.ssh.PodSsh`) and runctl's directory on it. :func:`connect` asks the API where the pod
is; :func:`cached` uses the last known address without an API round trip."""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runctl_core.errors import ProviderError
from runctl_core.remote.transport import CommandResult, RemoteFile, shell_line
from runctl_runpod.ssh import PodSsh, SshTarget, SshUnavailable, generate_key_pair

__all__ = [
    "PodAccess",
    "PodSsh",
    "SshTransport",
    "SshUnavailable",
    "cached",
    "connect",
    "generate_key_pair",
    "record_for",
]


class PodAccess:
    """How runctl reaches one pod it created: the pod's record (key, pinned host key, address), an SSH handle,
    and runctl's directory on it. Built by :func:`connect` (asks the API where the pod is) or :func:`cached`
    (the last known address, no API call)."""

    def __init__(self, ctx: Any, record: Any, endpoint: tuple[str, int]) -> None:
        from runctl_runpod.compute import settings

        self.ctx = ctx
        self.s = settings(ctx)
        self.record = record
        if list(endpoint) != record.ssh:
            record.ssh = list(endpoint)
            record.save(ctx.state_dir)

        def pin(host_key: str) -> None:
            record.host_key = host_key
            record.save(ctx.state_dir)

        target = SshTarget(endpoint[0], endpoint[1], self.s.ssh_user, Path(record.key_path), record.host_key)
        self.ssh = PodSsh(target, connect_timeout=self.s.ssh_connect_timeout, on_host_key=pin)

    def base(self) -> str:
        """runctl's directory on the pod (``remote_dir``, made absolute once and remembered)."""
        import shlex

        if self.record.base:
            return str(self.record.base)
        remote = self.s.remote_dir
        result = self.ssh.run(f"mkdir -p {shlex.quote(remote)} && cd {shlex.quote(remote)} && pwd", timeout=60)
        base = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
        if result.exit_status != 0 or not base.startswith("/"):
            raise ProviderError(
                f"could not create {remote} on the pod: {result.stderr.strip()[-300:]}",
                "check the remote_dir setting of [providers.runpod]",
            )
        self.record.base = base
        self.record.save(self.ctx.state_dir)
        return base

    def runner(self, *args: str) -> str:
        import shlex

        return " ".join(shlex.quote(a) for a in (self.s.python, posixpath.join(self.base(), "runner.py"), *args))


def record_for(ctx: Any, instance: Any) -> Any:
    from runctl_runpod.compute import PodRecord

    record = PodRecord.load(ctx.state_dir, instance.id)
    if record is None:
        key = instance.details.get("ssh_key") or ""
        if not key:
            raise ProviderError(
                f"runctl has no SSH key for pod {instance.id}",
                "only pods runctl created in this RUNCTL_HOME can be reached; terminate it with "
                f"`runctl --provider runpod terminate {instance.id}`",
            )
        record = PodRecord(pod_id=instance.id, key_path=str(key), spot=instance.spot)
    return record


def connect(ctx: Any, instance: Any, pod: Any) -> PodAccess:
    """Access to a pod the API reports running with its SSH port mapped; else NotFoundError/ProviderError."""
    from runctl_core.errors import NotFoundError
    from runctl_runpod.compute import pod_state

    state, message = pod_state(pod)
    if pod is None or state.value != "running":
        raise NotFoundError(
            f"pod {instance.id} is not running ({message})",
            "create a new one (`runctl create`) or check `runctl status`",
        )
    endpoint = pod.ssh_endpoint()
    if endpoint is None:
        raise ProviderError(
            f"pod {instance.id} exposes no public SSH port", "the pod needs ports including 22/tcp and a public IP"
        )
    return PodAccess(ctx, record_for(ctx, instance), endpoint)


def cached(ctx: Any, instance: Any) -> PodAccess | None:
    """Access at the pod's last known address without asking the API; None if never seen."""
    from runctl_runpod.compute import PodRecord

    record = PodRecord.load(ctx.state_dir, instance.id)
    if record is None or len(record.ssh) != 2 or not Path(record.key_path).is_file():
        return None  # never seen, or ended by runctl (its key is deleted then)
    return PodAccess(ctx, record, (str(record.ssh[0]), int(record.ssh[1])))


class SshTransport:
    """runctl's :class:`runctl_core.remote.transport.Transport` over SSH/SFTP to a pod (what the core's
    remote-job layer runs jobs through). ``env`` goes on the command line as ``env K=V`` (the layer passes only
    non-secret variables this way; job variables travel in a 0600 file)."""

    def __init__(self, ssh: PodSsh) -> None:
        self.ssh = ssh

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        stdin: bytes | None = None,
    ) -> CommandResult:
        status, out, err = self.ssh.exec_bytes(shell_line(argv, env, cwd), stdin, timeout or 3600.0)
        return CommandResult(exit_code=status, stdout=out, stderr=err)

    def put(self, source: bytes | Path, path: str, *, mode: int = 0o644) -> None:
        self.ssh.put_atomic(source, path, mode)

    def get(self, path: str, dest: Path) -> None:
        self.ssh.get_file(path, dest)

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        return self.ssh.read(path, offset, length, missing_ok=False)

    def walk(self, path: str) -> list[RemoteFile]:
        return [RemoteFile(f.path, f.size, f.mtime) for f in self.ssh.walk(path)]

    def remove(self, path: str) -> None:
        self.ssh.run(f"rm -rf -- {shlex.quote(path)}", timeout=300)


def shell_command(ctx: Any, instance: Any, pod: Any, job_id: str | None, command: list[str], ports: list[Any]) -> Any:
    """``runctl ssh``: the system ``ssh`` with the pod's own key, its pinned host key, ``-L`` per forwarded port,
    in the job's directory (with ``RUNCTL_CHECKPOINT_DIR``) when a job is given."""
    import shutil

    from runctl_core.errors import PrerequisiteError
    from runctl_core.models import ShellCommand

    ssh = shutil.which("ssh")
    if ssh is None:
        raise PrerequisiteError(
            "runctl ssh needs the OpenSSH client (`ssh`) on this machine",
            "install it: apt-get install openssh-client (Debian/Ubuntu), brew install openssh (macOS)",
        )
    access = connect(ctx, instance, pod)
    base = access.base()
    host, port = access.ssh.target.host, access.ssh.target.port
    known = Path(ctx.state_dir) / "known_hosts" / f"{instance.id}"
    argv = [ssh, "-i", str(access.ssh.target.key_path), "-p", str(port), "-o", "IdentitiesOnly=yes"]
    if access.record.host_key:  # pinned at first contact: ssh checks it, never asks
        known.parent.mkdir(parents=True, exist_ok=True)
        known.write_text(f"[{host}]:{port} {access.record.host_key}\n")
        argv += ["-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes"]
    for forward in ports:
        argv += ["-L", f"{forward.local}:localhost:{forward.remote}"]
    remote: list[str] = []
    if job_id:
        job_dir = posixpath.join(base, "jobs", job_id)
        remote = [
            f"cd {shlex.quote(posixpath.join(base, 'project'))} &&",
            f"export RUNCTL_CHECKPOINT_DIR={shlex.quote(job_dir + '/checkpoints')} &&",
        ]
    if command:
        remote.append(shlex.join(command))
    elif remote:
        remote.append("exec ${SHELL:-/bin/sh} -l")
    if not command:
        argv.append("-t")
    argv.append(f"{access.s.ssh_user}@{host}")
    if remote:
        argv.append(" ".join(remote))
    return ShellCommand(argv=argv)
