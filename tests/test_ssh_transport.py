"""runctl_core.remote.ssh: the Transport contract over SSH, against an asyncssh server in this process and the real
OpenSSH sshd (runctl_core.testing.ssh_servers): every operation, the error cases, atomic put, a dropped connection, the
host-key policies, and no secret on a command line or in an error."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runctl_core.errors import AuthError, PrerequisiteError, ProviderError, TransientError
from runctl_core.remote import ssh as ssh_module
from runctl_core.remote.ssh import SshTarget, SshTransport, generate_key_pair
from runctl_core.remote.transport import Transport
from runctl_core.testing.ssh_servers import AsyncsshServer, OpensshServer, free_port

SECRET = "s3cr3t-'quoted' $HOME `x`\nsecond line"


def _required(program: str, package: str) -> str:
    found = shutil.which(program) or (f"/usr/sbin/{program}" if Path(f"/usr/sbin/{program}").exists() else None)
    if found is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{program} is missing: CI installs {package} (.ci/run)")
        pytest.skip(f"{program} is not installed (apt-get install {package})")
    return found


@pytest.fixture(params=["asyncssh", "openssh", "tcsh-login"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """The machine: an asyncssh server, OpenSSH's sshd, or an asyncssh server whose user's login shell is tcsh
    (as on HPC sites that default to it): sshd runs every command line with ``$SHELL -c``."""
    root = tmp_path / "server"
    root.mkdir()
    if request.param == "tcsh-login":
        started: Any = AsyncsshServer(root, login_shell=_required("tcsh", "tcsh")).start()
    elif request.param == "openssh":
        _required("sshd", "openssh-server")
        started = OpensshServer(root).start()
    else:
        started = AsyncsshServer(root).start()
    yield started
    ssh_module.close_all()
    started.stop()


def pinned(server: Any, **kw: Any) -> SshTransport:
    target = SshTarget(
        "127.0.0.1",
        server.port,
        server.user,
        key_file=server.client_key_file,
        host_keys="pinned",
        host_key=server.host_public,
    )
    return SshTransport(target, label="the test machine", **kw)


def test_every_operation_follows_the_protocol(server: Any, tmp_path: Path) -> None:
    t = pinned(server)
    assert isinstance(t, Transport)
    work = tmp_path / "work"
    work.mkdir()
    ran = t.run(
        ["sh", "-c", 'printf "%s|%s|" "$X" "$(pwd)"; cat; echo oops >&2; exit 3'],
        env={"X": "a b"},
        cwd=str(work),
        stdin=b"in\xff\n" * 3,
    )
    assert ran.exit_code == 3 and ran.stdout == f"a b|{work}|".encode() + b"in\xff\n" * 3, ran
    assert ran.error_text == "oops"
    assert t.run(["printf", "%s", "it's  two"]).stdout == b"it's  two"  # arguments quoted, spaces kept
    assert t.run(["sh", "-c", "exit 0"], env={"A": "1"}).exit_code == 0  # env with no stdin at all
    assert t.run(["no-such-program-xyz"]).exit_code == 127

    target = f"{work}/d/e/f.bin"
    t.put(b"0123456789", target, mode=0o600)
    assert (work / "d/e/f.bin").read_bytes() == b"0123456789"
    assert (work / "d/e/f.bin").stat().st_mode & 0o777 == 0o600
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(300_000))
    t.put(big, target, mode=0o755)  # replaces, from a local file, several chunks
    assert (work / "d/e/f.bin").read_bytes() == big.read_bytes()
    assert (work / "d/e/f.bin").stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in (work / "d/e").iterdir()) == ["f.bin"]  # no temporary file left
    t.put(b"", f"{work}/empty")
    assert (work / "empty").read_bytes() == b""

    assert t.read_range(target, 3, 4) == big.read_bytes()[3:7]
    assert t.read_range(target, 299_998, 10) == big.read_bytes()[-2:]
    assert t.read_range(target, 400_000, 4) == b""
    with pytest.raises(FileNotFoundError):
        t.read_range(f"{work}/missing", 0, 1)

    copy = tmp_path / "copy.bin"
    t.get(target, copy)
    assert copy.read_bytes() == big.read_bytes()
    with pytest.raises(FileNotFoundError):
        t.get(f"{work}/missing", tmp_path / "x")
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x*"))

    (work / "d" / "odd name\twith tab").write_text("z")
    os.symlink(work / "d/e/f.bin", work / "d" / "link")
    walked = t.walk(f"{work}/d")
    assert [f.path for f in walked] == ["e/f.bin", "odd name\twith tab"]  # sorted, symlinks not followed
    assert walked[0].size == 300_000 and abs(walked[0].mtime - (work / "d/e/f.bin").stat().st_mtime) < 1
    assert t.walk(f"{work}/none") == []

    t.remove(f"{work}/d")
    t.remove(f"{work}/d")  # missing: nothing happens
    assert not (work / "d").exists()
    with pytest.raises(ValueError):
        t.remove("/")


def test_arguments_a_login_shell_would_mangle_arrive_intact(server: Any, tmp_path: Path) -> None:
    """Newlines, ``!``, quotes, ``$`` and backslashes in arguments, paths and values reach the command as given,
    whatever the login shell (tcsh cannot take a newline or ``!`` on a command line)."""
    t = pinned(server)
    odd = ["a\nb", "wow!", "it's", '"q"', "$HOME", "back\\slash", "", " sp ", "*"]
    ran = t.run(["printf", "%s|", *odd])
    assert ran.exit_code == 0 and ran.stdout.decode() == "".join(f"{w}|" for w in odd), ran
    with_env = t.run(["sh", "-c", 'printf "%s|%s" "$V" "$1"', "sh", "x!\ny"], env={"V": "v!\n'w'"})
    assert with_env.stdout.decode() == "v!\n'w'|x!\ny", with_env
    names = {"n": "1", "l": "2", "b": "3", "nl": "4", "e": "5"}  # no clash with the prelude's own variables
    shown = t.run(["sh", "-c", 'printf "%s " "$n" "$l" "$b" "$nl" "$e"'], env=names)
    assert shown.text == "1 2 3 4 5 ", shown
    folder = tmp_path / "dir! with\nnewline"
    folder.mkdir()
    assert t.run(["pwd"], cwd=str(folder)).text == f"{folder}\n"
    t.put(b"data", f"{folder}/f!le")
    assert t.read_range(f"{folder}/f!le", 0, 10) == b"data"
    t.get(f"{folder}/f!le", tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == b"data"
    assert [f.path for f in t.walk(str(folder))] == ["f!le"]
    t.remove(str(folder))
    assert not folder.exists()


def test_walk_without_gnu_find(server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """BusyBox's find (Alpine images) has no -printf (its usage text lists none): walk falls back to stat -c."""
    if not isinstance(server, AsyncsshServer) or server.login_shell != "/bin/sh":
        pytest.skip("the in-process server runs commands with this process's PATH")
    fake = tmp_path / "busybox-like"
    fake.mkdir()
    real_find = shutil.which("find")
    (fake / "find").write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do [ "$a" = -printf ] && { echo "find: unrecognized: -printf" >&2; exit 1; }; done\n'
        f'exec {real_find} "$@"\n'
    )
    (fake / "find").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    tree = tmp_path / "tree"
    (tree / "a b").mkdir(parents=True)
    (tree / "a b" / "c d.txt").write_bytes(b"12345")
    (tree / "top").write_bytes(b"")
    walked = pinned(server).walk(str(tree))
    assert [(f.path, f.size) for f in walked] == [("a b/c d.txt", 5), ("top", 0)]
    assert abs(walked[0].mtime - (tree / "a b" / "c d.txt").stat().st_mtime) < 2


def test_one_connection_serves_every_call(server: Any, tmp_path: Path) -> None:
    before = getattr(server, "connections", None)
    t = pinned(server)
    for _ in range(5):
        assert t.run(["true"]).exit_code == 0
    t.walk(str(tmp_path))
    assert pinned(server).run(["true"]).exit_code == 0  # another handle to the same machine: same connection
    if before is not None:
        assert server.connections - before == 1


def test_env_values_travel_on_stdin_not_on_the_command_line(server: Any) -> None:
    t = pinned(server)
    ran = t.run(["sh", "-c", 'printf "%s" "$TOKEN"; printf "|"; cat'], env={"TOKEN": SECRET}, stdin=b"rest")
    assert ran.stdout == SECRET.encode() + b"|rest"
    if isinstance(server, AsyncsshServer):  # the command lines the server received
        assert server.commands and not any("s3cr3t" in c for c in server.commands)
    # the command's own process tree never sees it in an argument vector either
    tree = t.run(["sh", "-c", "cat /proc/$PPID/cmdline /proc/$$/cmdline | tr '\\0' ' '"], env={"TOKEN": SECRET})
    assert tree.exit_code == 0 and "s3cr3t" not in tree.text
    with pytest.raises(ValueError, match="not a shell identifier"):
        t.run(["true"], env={"A-B": "x"})


def test_put_is_atomic_when_the_transfer_is_cut(server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = pinned(server)
    target = tmp_path / "model.bin"
    t.put(b"old content", str(target))
    source = tmp_path / "new.bin"
    source.write_bytes(b"x" * 200_000)

    async def cut(path: Path, size: int, header: bytes = b"") -> Any:  # the connection ends mid-transfer: the
        yield header  # remote `cat` sees EOF early
        with path.open("rb") as fh:
            yield fh.read(size // 2)

    monkeypatch.setattr(ssh_module, "_file_chunks", cut)
    with pytest.raises(ProviderError, match="could not write"):
        t.put(source, str(target))
    assert target.read_bytes() == b"old content"
    assert sorted(p.name for p in tmp_path.iterdir() if "runctl-tmp" in p.name) == []


def test_timeout_is_transient_and_names_the_program_only(server: Any) -> None:
    t = pinned(server)
    with pytest.raises(TransientError) as caught:
        t.run(["sh", "-c", "sleep 30"], env={"TOKEN": SECRET}, timeout=1)
    assert "`sh` did not finish within 1s on the test machine" in caught.value.message
    assert "sleep" not in caught.value.message and "s3cr3t" not in str(caught.value) + caught.value.hint
    assert t.run(["echo", "after"]).text == "after\n"  # the connection is still usable


def test_dropped_connection(server: Any) -> None:
    t = pinned(server)
    assert t.run(["true"]).exit_code == 0
    server.drop()  # dropped while idle: the next call finds it dead before its command starts, reconnects
    assert t.run(["echo", "again"]).text == "again\n"

    errors: list[BaseException] = []

    def long_command() -> None:
        try:
            t.run(["sleep", "30"], env={"TOKEN": SECRET}, timeout=60)
        except BaseException as exc:
            errors.append(exc)

    commands = getattr(server, "commands", None)  # the asyncssh servers record what they receive
    before = len(commands) if commands is not None else 0
    thread = threading.Thread(target=long_command)
    thread.start()
    _wait_until(lambda: commands is None or len(commands) > before)
    for _ in range(50):  # dropped during the command: TransientError (a command is never run twice)
        server.drop()
        thread.join(0.2)
        if not thread.is_alive():
            break
    thread.join(30)
    assert len(errors) == 1 and isinstance(errors[0], TransientError), errors
    assert "the test machine" in errors[0].message and "s3cr3t" not in str(errors[0]) + errors[0].hint
    assert "127.0.0.1" in errors[0].hint  # what to try: the equivalent ssh command
    assert t.run(["echo", "back"]).text == "back\n"  # the next call connects again


def test_connection_errors(server: Any, tmp_path: Path) -> None:
    closed = SshTransport(
        SshTarget("127.0.0.1", free_port(), "u", key_file=server.client_key_file, host_keys="pinned"),
        label="pod p1",
        connect_timeout=5,
    )
    with pytest.raises(TransientError) as unreachable:
        closed.run(["true"])
    assert "could not reach pod p1 over SSH" in unreachable.value.message and "ssh -p" in unreachable.value.hint

    other_key = tmp_path / "other"
    generate_key_pair(other_key, "other")
    refused = SshTarget("127.0.0.1", server.port, server.user, key_file=other_key, host_keys="pinned")
    with pytest.raises(AuthError, match="refused runctl's SSH key"):
        SshTransport(refused).run(["true"])

    with pytest.raises(PrerequisiteError, match="is missing"):
        SshTransport(SshTarget("127.0.0.1", server.port, key_file=tmp_path / "nope", host_keys="pinned")).run(["x"])

    impostor = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBu5OTC2l6ZgMWuiLQe7u2KVlM3eZWrPaLn6RWsCxKRr"
    changed = SshTarget(
        "127.0.0.1", server.port, server.user, key_file=server.client_key_file, host_keys="pinned", host_key=impostor
    )
    with pytest.raises(AuthError, match="not the one runctl saw first"):
        SshTransport(changed).run(["true"])


def test_first_contact_pins_the_host_key_and_in_memory_keys_stay_secret(server: Any) -> None:
    seen: list[str] = []
    text = server.client_key_file.read_text()
    target = SshTarget("127.0.0.1", server.port, server.user, private_key=text, host_keys="pinned")
    assert "PRIVATE" not in repr(target) and "PRIVATE" not in str(target)
    t = SshTransport(target, on_host_key=seen.append)
    assert t.run(["true"]).exit_code == 0
    assert seen == [server.host_public]
    bad = SshTarget("127.0.0.1", server.port, server.user, private_key=text[:60], host_keys="pinned")
    with pytest.raises(PrerequisiteError) as caught:
        SshTransport(bad).run(["true"])
    assert text[40:60] not in str(caught.value) + caught.value.hint


def test_user_policy_reads_ssh_config_and_known_hosts(
    server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    (home / ".ssh" / "config").write_text(
        f"Host login\n  HostName 127.0.0.1\n  Port {server.port}\n  User {server.user}\n"
        f"  IdentityFile {server.client_key_file}\n"
    )
    t = SshTransport(SshTarget.parse("login"), label="the login node login")
    with pytest.raises(AuthError, match="not in your known_hosts") as caught:
        t.run(["true"])
    assert "ssh login" in caught.value.hint
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{server.port} {server.host_public}\n")
    assert t.run(["echo", "hi"]).text == "hi\n"


def test_parse_addresses() -> None:
    assert SshTarget.parse("alice@hpc.example.org:2222") == SshTarget("hpc.example.org", 2222, "alice")
    assert SshTarget.parse("hpc") == SshTarget("hpc")
    assert str(SshTarget.parse("a@h")) == "a@h"


def test_asyncssh_is_imported_only_when_a_connection_is_made() -> None:
    code = (
        "import sys, runctl_core.remote.ssh as s, runctl_core.remote.jobs;"
        "s.SshTransport(s.SshTarget('h'));"
        "assert 'asyncssh' not in sys.modules, 'asyncssh imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def _wait_until(condition: Any, timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.05)


def test_the_remote_job_layer_runs_a_job_over_ssh(server: Any, tmp_path: Path) -> None:
    """JobHost (sync, launch, status, logs, checkpoints, collect) through the SSH transport; ``env`` on every
    runner command goes through the stdin prelude, and the job's own secret never reaches a command line."""
    import time

    from runctl_core.files import scan_project
    from runctl_core.models import JobSpec, JobState
    from runctl_core.remote.jobs import JobHost

    project = tmp_path / "project"
    project.mkdir()
    (project / "job.py").write_text(
        "import os\nprint('token', len(os.environ['TOKEN']), os.environ['RUNCTL_MARK'], flush=True)\n"
        "open(os.path.join(os.environ['RUNCTL_CHECKPOINT_DIR'], 'ck.txt'), 'w').write('1')\n"
    )
    host = JobHost(pinned(server), str(tmp_path / "machine"), python=sys.executable, env={"RUNCTL_MARK": "m 1"})
    assert host.sync(scan_project(project)).files_sent == 1
    job = JobSpec(job_id="job-ssh001", script="job.py", env={"TOKEN": SECRET, "RUNCTL_MARK": "m 1"})
    assert host.launch(job, use_uv=False).state is not JobState.LOST
    deadline = time.monotonic() + 120
    while not (status := host.status("job-ssh001")).state.terminal:
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.2)
    assert status.state is JobState.SUCCEEDED, host.logs("job-ssh001", 0).data
    assert f"token {len(SECRET)} m 1" in host.logs("job-ssh001", 0).data
    assert [c.name for c in host.checkpoints("job-ssh001")] == ["ck.txt"]
    assert [p.name for p in host.collect("job-ssh001", tmp_path / "out").files] == ["ck.txt"]
    if isinstance(server, AsyncsshServer):
        assert not any("s3cr3t" in c for c in server.commands)
