"""Two SSH servers on 127.0.0.1 for tests of runctl_core.remote.ssh and of providers that use it (needs
asyncssh: ``runctl[ssh]``), with the same handle (``port``, ``user``, ``client_key_file``, ``host_public``,
``drop()``, ``stop()``):

* :class:`AsyncsshServer` - an asyncssh server in this process: each exec request runs through
  ``LOGIN_SHELL -c`` (default ``/bin/sh``; e.g. tcsh) as OpenSSH's sshd does with the user's login shell
  (sshd(8), "LOGIN PROCESS": the command is run by the user's shell with ``-c``), stdin streamed and closed at
  the client's EOF, and no environment requests honoured (sshd_config(5) ``AcceptEnv``: none by default). It
  records each command line received and can drop its connections as a dying machine does.
* :class:`OpensshServer` - the real OpenSSH ``sshd`` (Debian's openssh-server, which CI installs), on a free
  port with its own host key and authorized key; its connections are dropped by killing the per-connection
  sshd processes it forked (children of the listener this fixture started).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import asyncssh


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_key(path: Path) -> asyncssh.SSHKey:
    key = asyncssh.generate_private_key("ssh-ed25519", comment="runctl-test")
    path.write_bytes(key.export_private_key())
    os.chmod(path, 0o600)
    return key


class AsyncsshServer:
    def __init__(self, root: Path, login_shell: str = "/bin/sh") -> None:
        self.root = root
        self.login_shell = login_shell
        self.client_key_file = root / "client_key"
        self.client_key = write_key(self.client_key_file)
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.host_public = self.host_key.export_public_key().decode().strip()
        self.commands: list[str] = []
        self.procs: set[int] = set()  # process groups of the commands running now
        self.connections = 0
        self.conns: list[Any] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.acceptor: Any = None
        self.port = 0
        self.user = "runctl"

    def start(self) -> AsyncsshServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self.loop).result(10)
        return self

    async def _listen(self) -> None:
        server = self
        authorized = asyncssh.import_authorized_keys(self.client_key.export_public_key().decode())

        class Server(asyncssh.SSHServer):
            def connection_made(self, conn: Any) -> None:
                server.connections += 1
                server.conns.append(conn)

        async def process_factory(process: asyncssh.SSHServerProcess) -> None:
            command = process.command or ""
            server.commands.append(command)
            proc = await asyncio.create_subprocess_exec(
                server.login_shell,
                "-c",
                command,
                cwd=server.root,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(server.root), "LANG": "C.UTF-8"},
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )

            async def feed() -> None:
                assert proc.stdin is not None
                try:
                    while data := await process.stdin.read(1 << 16):
                        proc.stdin.write(data)
                        await proc.stdin.drain()
                    proc.stdin.close()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            server.procs.add(proc.pid)
            feeder = asyncio.ensure_future(feed())
            try:
                assert proc.stdout is not None and proc.stderr is not None
                out, err, _ = await asyncio.gather(proc.stdout.read(), proc.stderr.read(), proc.wait())
            except asyncio.CancelledError:
                os.killpg(proc.pid, signal.SIGKILL)
                raise
            finally:
                feeder.cancel()
                server.procs.discard(proc.pid)
            process.stdout.write(out)
            process.stderr.write(err)
            process.exit(proc.returncode or 0)

        self.acceptor = await asyncssh.listen(
            "127.0.0.1",
            0,
            server_host_keys=[self.host_key],
            authorized_client_keys=authorized,
            server_factory=Server,
            process_factory=process_factory,
            password_auth=False,
            kbdint_auth=False,
            encoding=None,
        )
        self.port = self.acceptor.get_port()

    def drop(self) -> None:
        """Every open connection dies (the machine's network or sshd went away)."""
        for conn in list(self.conns):
            self.loop.call_soon_threadsafe(conn.abort)
        self.conns.clear()

    def stop(self) -> None:
        """Drop the connections, kill what their commands left running, stop listening and the loop."""
        self.drop()
        for pgid in list(self.procs):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while self.procs and time.monotonic() < deadline:  # their handlers reap them on the loop
            time.sleep(0.05)
        if self.acceptor is not None:
            self.loop.call_soon_threadsafe(self.acceptor.close)
        self.loop.call_soon_threadsafe(self.loop.stop)


class OpensshServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.client_key_file = root / "client_key"
        write_key(self.client_key_file)
        host_key = root / "host_key"
        write_key(host_key)
        public_host = asyncssh.read_private_key(host_key).export_public_key().decode().split()
        self.host_public = " ".join(public_host[:2])  # what a client sees: no comment
        public = asyncssh.read_private_key(self.client_key_file).export_public_key().decode()
        (root / "authorized_keys").write_text(public)
        os.chmod(root / "authorized_keys", 0o600)
        self.port = free_port()
        self.user = os.environ.get("USER") or "root"
        if os.geteuid() == 0:
            self.user = "root"
        (root / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
            f"AuthorizedKeysFile {root}/authorized_keys\n"
            "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            f"PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nPidFile {root}/sshd.pid\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OpensshServer:
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
        log = (self.root / "sshd.log").open("ab")
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        self.proc = subprocess.Popen(
            [sshd, "-D", "-e", "-f", str(self.root / "sshd_config")], stdout=log, stderr=log, start_new_session=True
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.root / 'sshd.log').read_text()[-1000:]}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.1)
        raise RuntimeError("sshd did not listen within 30 s")

    def _sessions(self) -> list[int]:
        """The per-connection sshd processes: children of the listener this fixture started."""
        assert self.proc is not None
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == self.proc.pid:
                    found.append(int(entry.name))
        return found

    def drop(self) -> None:
        for pid in self._sessions():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.drop()
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
