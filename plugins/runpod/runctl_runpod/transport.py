"""How runctl reaches a pod it created: its local record (key, pinned host key, last address), the core's SSH
transport to it (:class:`runctl_core.remote.ssh.SshTransport`) and runctl's directory on it. :func:`connect` asks
the API where the pod is; :func:`cached` uses the last known address without an API round trip.

Host keys: a pod's sshd gets a host key generated when its container starts (RunPod's start.sh runs
``ssh-keygen -A``), and a pod's public address and port are reused by later pods, so no known_hosts file can
vouch for it. runctl trusts the key the pod offers at first contact (right after RunPod's API reported the pod
with runctl's own ``PUBLIC_KEY`` running), stores it in the pod's record, and refuses any other key afterwards
(policy ``"pinned"``; the user's ssh config, agent and known_hosts are not used: the pod's own key pair is).
"""

from __future__ import annotations

import posixpath
import shlex
from pathlib import Path
from typing import Any

from runctl_core.errors import ProviderError
from runctl_core.remote.ssh import SshTarget, SshTransport, generate_key_pair

__all__ = ["PodAccess", "cached", "connect", "generate_key_pair", "record_for"]


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

        target = SshTarget(
            endpoint[0],
            endpoint[1],
            self.s.ssh_user,
            key_file=Path(record.key_path),
            host_keys="pinned",
            host_key=record.host_key,
        )
        self.ssh = SshTransport(
            target, label=f"pod {record.pod_id}", connect_timeout=self.s.ssh_connect_timeout, on_host_key=pin
        )

    def base(self) -> str:
        """runctl's directory on the pod (``remote_dir``, made absolute once and remembered)."""
        if self.record.base:
            return str(self.record.base)
        remote = shlex.quote(self.s.remote_dir)
        result = self.ssh.run(["sh", "-c", f"mkdir -p {remote} && cd {remote} && pwd"], timeout=60)
        base = result.text.strip().splitlines()[-1] if result.text.strip() else ""
        if result.exit_code != 0 or not base.startswith("/"):
            raise ProviderError(
                f"could not create {self.s.remote_dir} on the pod: {result.error_text[-300:]}",
                "check the remote_dir setting of [providers.runpod]",
            )
        self.record.base = base
        self.record.save(self.ctx.state_dir)
        return base


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
    argv = [ssh, "-i", str(access.ssh.target.key_file), "-p", str(port), "-o", "IdentitiesOnly=yes"]
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
