"""A real, single-host Slurm cluster for the tests, built from the Debian packages (``slurm-wlm``, ``munge``).

It emulates two compute nodes on this machine: munged, slurmctld and two ``slurmd -N nodeK`` daemons, one per
``NodeName`` line (``NodeName=nodeK NodeHostname=<this host> Port=<its own port>``). That is what the packaged
build supports without ``--enable-multiple-slurmd`` as long as each node has its own port, spool directory and
pid file (``%n`` in ``SlurmdSpoolDir``/``SlurmdPidFile``/``SlurmdLogFile``; see slurm.conf(5)). Everything -
config, state, spool, logs, the munge key and socket - lives in one temporary directory, and clients find the
cluster through ``SLURM_CONF`` (slurm.conf(5): "The file location can be modified ... by setting the SLURM_CONF
environment variable").

An OpenSSH server on 127.0.0.1 (a high port, key authentication with a generated key) stands in for the
cluster's login node; ``SetEnv SLURM_CONF=...`` in its sshd_config gives remote sessions the same cluster.

Nothing here touches /etc: the daemons run in the foreground as children of the test session and are stopped
at its end (jobs cancelled first, then SIGTERM, then SIGKILL, including any ``slurmstepd`` left behind).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sshd", "sinfo", "sbatch", "squeue", "scancel", "srun", "ssh-keygen")
SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
START_TIMEOUT = 180.0  # a loaded 2-core machine may take a while to bring slurmd up and register it


class ClusterUnavailable(RuntimeError):
    """The cluster could not be started; the message says why (and what to install)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _which(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in SBIN:
        candidate = Path(directory) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


@dataclass
class SlurmCluster:
    """A running test cluster. ``env`` is what a Slurm client needs (``SLURM_CONF``)."""

    root: Path
    hostname: str
    user: str
    ssh_port: int
    ssh_key: Path
    known_hosts: Path
    partition: str = "debug"
    nodes: tuple[str, ...] = ("node1", "node2")
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _started: float = 0.0

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    @property
    def shared(self) -> Path:
        """A directory every node (all on this host) sees: the cluster's "shared filesystem"."""
        return self.root / "shared"

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=timeout)

    def queue(self) -> list[str]:
        """Job ids in squeue (any state that squeue still shows)."""
        out = self.run("squeue", "-h", "-o", "%i %T").stdout
        return [line.split()[0] for line in out.splitlines() if line.strip()]

    def node_states(self) -> dict[str, str]:
        out = self.run("sinfo", "-h", "-N", "-o", "%N %t").stdout
        return dict(line.split()[:2] for line in out.splitlines() if len(line.split()) >= 2)

    def ssh_config(self, alias: str) -> str:
        """An ``~/.ssh/config`` entry naming the login node by a host alias, as users write them."""
        return (
            f"Host {alias}\n  HostName 127.0.0.1\n  Port {self.ssh_port}\n  User {self.user}\n"
            f"  IdentityFile {self.ssh_key}\n  UserKnownHostsFile {self.known_hosts}\n"
        )

    def log_tail(self, lines: int = 15) -> str:
        parts = []
        for path in sorted((self.root / "log").glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)

    # ------------------------------------------------------------------------------------------ start / stop

    def start(self) -> None:
        missing = [name for name in DAEMONS if _which(name) is None]
        if missing:
            raise ClusterUnavailable(
                f"missing {', '.join(missing)}; install: apt-get install -y slurm-wlm munge openssh-server"
            )
        for sub in ("state", "spool", "log", "munge", "ssh", "shared"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for node in self.nodes:
            (self.root / "spool" / node).mkdir(exist_ok=True)
        os.chmod(self.root / "munge", 0o711)
        self._start_munge()
        self._write_slurm_conf()
        self._spawn("slurmctld", [_req("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._wait_for(lambda: self.run("sinfo", "-h", timeout=20).returncode == 0, "slurmctld to answer sinfo")
        self._started = time.monotonic()
        for node in self.nodes:
            self._spawn(f"slurmd-{node}", [_req("slurmd"), "-D", "-N", node, "-f", str(self.conf)])
        self._wait_for(self._nodes_idle, "both nodes to be idle in sinfo")
        self._start_sshd()

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.root / "log" / f"{name}.out").open("ab")
        self.procs[name] = subprocess.Popen(
            argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
        log.close()

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                out = (self.root / "log" / f"{name}.out").read_text(errors="replace")[-2000:]
                raise ClusterUnavailable(f"{name} exited with code {proc.returncode}: {out}\n{self.log_tail()}")

    def _wait_for(self, ready: object, what: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.1
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if ready():  # type: ignore[operator]
                    return
            except (subprocess.TimeoutExpired, OSError):
                pass
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)
        raise ClusterUnavailable(f"timed out after {timeout:g}s waiting for {what}\n{self.log_tail()}")

    def _nodes_idle(self) -> bool:
        states = self.node_states()
        broken = {node: state for node, state in states.items() if state.startswith(("inval", "drain", "down"))}
        if broken and time.monotonic() - self._started > 20:  # a node refused by slurmctld will not recover
            raise ClusterUnavailable(f"nodes not usable: {broken}\n{self.log_tail()}")
        return all(states.get(node, "").startswith("idle") for node in self.nodes)

    def _start_munge(self) -> None:
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o600)
        munge_dir = self.root / "munge"
        self._spawn(
            "munged",
            [
                _req("munged"),
                "-F",
                "--force",
                f"--socket={munge_dir / 'munge.sock'}",
                f"--key-file={key}",
                f"--log-file={self.root / 'log' / 'munged.log'}",
                f"--pid-file={munge_dir / 'munged.pid'}",
                f"--seed-file={munge_dir / 'munged.seed'}",
            ],
        )
        self._wait_for(lambda: (munge_dir / "munge.sock").exists(), "munged's socket", timeout=60)

    def _write_slurm_conf(self) -> None:
        root = self.root
        ctl_port = free_port()
        node_lines = "\n".join(
            f"NodeName={node} NodeHostname={self.hostname} NodeAddr=127.0.0.1 Port={free_port()} CPUs=1 "
            f"RealMemory=1000 Gres=gpu:a100:1 State=UNKNOWN"
            for node in self.nodes
        )
        # slurm.conf(5). proctrack/pgid and task/none need no cgroups (this may run in a container);
        # accounting is off, as on many small clusters, so sacct has nothing and the job record on the shared
        # filesystem is the source of exit codes. The GPUs are count-only GRES (no device files), enough for
        # the scheduler to place --gres=gpu:a100:N.
        self.conf.write_text(
            f"""ClusterName=runctltest
SlurmctldHost={self.hostname}(127.0.0.1)
SlurmctldPort={ctl_port}
SlurmUser={self.user}
SlurmdUser={self.user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root / "munge" / "munge.sock"}
StateSaveLocation={root / "state"}
SlurmdSpoolDir={root / "spool"}/%n
SlurmctldPidFile={root / "slurmctld.pid"}
SlurmdPidFile={root / "slurmd"}-%n.pid
SlurmctldLogFile={root / "log" / "slurmctld.log"}
SlurmdLogFile={root / "log"}/slurmd-%n.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
GresTypes=gpu
SlurmctldTimeout=60
SlurmdTimeout=120
MessageTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=30
{node_lines}
PartitionName={self.partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
        )
        gres = "".join(f"NodeName={n} Name=gpu Type=a100 File=/dev/null Count=1\n" for n in self.nodes)
        (root / "gres.conf").write_text(gres)  # gres.conf(5); /dev/null stands in for a GPU device file

    def _start_sshd(self) -> None:
        ssh = self.root / "ssh"
        for name in ("host_key", "user_key"):
            subprocess.run(
                [_req("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", "runctl-test", "-f", str(ssh / name)],
                check=True,
                capture_output=True,
            )
        (ssh / "authorized_keys").write_text((ssh / "user_key.pub").read_text())
        os.chmod(ssh / "authorized_keys", 0o600)
        host_pub = (ssh / "host_key.pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.ssh_port} {host_pub[0]} {host_pub[1]}\n")
        config = ssh / "sshd_config"
        config.write_text(
            f"""Port {self.ssh_port}
ListenAddress 127.0.0.1
HostKey {ssh / "host_key"}
AuthorizedKeysFile {ssh / "authorized_keys"}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile {ssh / "sshd.pid"}
SetEnv SLURM_CONF={self.conf}
"""
        )
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
        self._spawn("sshd", [_req("sshd"), "-D", "-e", "-f", str(config)])

        def listening() -> bool:
            with socket.socket() as sock:
                sock.settimeout(2)
                return sock.connect_ex(("127.0.0.1", self.ssh_port)) == 0

        self._wait_for(listening, "sshd to listen", timeout=60)

    def stop(self) -> None:
        """Cancel every job, then stop the daemons (SIGTERM, then SIGKILL), and any slurmstepd left behind."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            with contextlib.suppress(Exception):
                ids = self.queue()
                if ids:
                    self.run("scancel", *ids, timeout=30)
                    deadline = time.monotonic() + 30
                    while self.queue() and time.monotonic() < deadline:
                        time.sleep(0.5)
        order = [n for n in self.procs if n.startswith("slurmd-")] + ["slurmctld", "sshd", "munged"]
        for name in order:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for name in order:
            proc = self.procs.get(name)
            if proc is None:
                continue
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for pid in _stray_steps(self.root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _req(name: str) -> str:
    found = _which(name)
    if found is None:  # pragma: no cover - checked in start()
        raise ClusterUnavailable(f"{name} not found")
    return found


def _stray_steps(root: Path) -> list[int]:
    """slurmstepd processes of this cluster (their cwd or open files are inside ``root``)."""
    found = []
    marker = str(root)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not (entry / "cmdline").read_bytes().startswith(b"slurmstepd"):
                continue
            links = [os.readlink(entry / "cwd")] + [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue
        if any(link.startswith(marker) for link in links):
            found.append(int(entry.name))
    return found


def start_cluster(root: Path) -> SlurmCluster:
    """Start the cluster in ``root``; on failure everything started is stopped and ClusterUnavailable raised."""
    cluster = SlurmCluster(
        root=root,
        hostname=socket.gethostname().split(".")[0],
        user=getpass.getuser(),
        ssh_port=free_port(),
        ssh_key=root / "ssh" / "user_key",
        known_hosts=root / "ssh" / "known_hosts",
    )
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster
