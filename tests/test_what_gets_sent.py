"""What `run`/`sync` send, and bad numbers and bytes refused before anything is created."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from runctl_core import files as files_module
from runctl_core.files import scan_project
from runctl_core.testing.cli import run_runctl

CREDENTIALS = (".ssh/id_rsa", ".aws/credentials", ".netrc", ".env", ".env.production", "certs/server.pem")


def _home_like(root: Path) -> None:
    for rel in CREDENTIALS:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("secret\n")


def test_credential_files_are_never_sent(cli, project: Path) -> None:
    _home_like(project)
    (project / ".runctlignore").write_text("!.env\n!.netrc\n")  # an ignore file cannot bring them back
    instance_id = cli("-o", "id", "create").out.strip()
    synced = cli("-o", "json", "sync", instance_id)
    assert synced.code == 0, synced.err
    sent = {p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file()}
    assert synced.json()["files_total"] == len(sent) - len(CREDENTIALS)
    project_names = {f.path for f in scan_project(project).files}
    assert not project_names & set(CREDENTIALS)
    cli("terminate", instance_id, "--yes")


def test_a_credential_file_is_sent_only_when_listed_explicitly(project: Path) -> None:
    _home_like(project)
    names = {f.path for f in scan_project(project, allow_credentials=[".env", ".aws/config"]).files}
    assert ".env" in names and ".env.production" not in names and ".aws/credentials" not in names


def test_home_directory_or_root_is_not_a_default_project(cli, project: Path, tmp_path: Path) -> None:
    home_like = tmp_path / "fake-home"
    home_like.mkdir()
    (home_like / "train.py").write_text("print('hi')\n")
    _home_like(home_like)
    env = {"HOME": str(home_like)}
    result = run_runctl("-o", "json", "run", "train.py", "--dry-run", env=env, cwd=home_like)
    assert result.code == 2, result.err
    assert "home directory" in result.error()["message"] and "--project" in result.error()["hint"]
    explicit = run_runctl("-o", "json", "run", "train.py", "--dry-run", "--project", ".", env=env, cwd=home_like)
    assert explicit.code == 0, explicit.err


def test_special_files_are_skipped_not_read(project: Path) -> None:
    fifo = project / "pipe"
    os.mkfifo(fifo)
    found: list[str] = []
    worker = threading.Thread(target=lambda: found.extend(f.path for f in scan_project(project).files), daemon=True)
    worker.start()
    worker.join(30)
    if worker.is_alive():  # unblock the reader so the test run can end
        with open(fifo, "w"):
            pass
        pytest.fail("scanning the project blocked on a FIFO")
    assert "pipe" not in found and "examples/train.py" in found


def test_a_large_project_is_said_before_it_is_sent(cli, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = project / "data"
    data.mkdir()
    for i in range(files_module.WARN_FILES + 5):
        (data / f"{i}.txt").write_text("x")
    result = cli("-o", "json", "run", "examples/train.py", "--dry-run")
    assert result.code == 0, result.err
    assert "about to send 10" in result.err and ".runctlignore" in result.err


def test_unreadable_project_file_is_named(invoke, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "locked.bin").write_text("x")
    real = files_module.sha256_file

    def unreadable(path: Path) -> str:
        if path.name == "locked.bin":  # as for a file without read permission (tests may run as root)
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(files_module, "sha256_file", unreadable)
    result = invoke("-o", "json", "run", "examples/train.py", "--dry-run")
    assert result.code == 2, result.err
    assert "locked.bin" in result.err and "Permission denied" in result.err and ".runctlignore" in result.err


@pytest.mark.parametrize(
    "args",
    [
        ("run", "examples/train.py", "--timeout", "nan"),
        ("run", "examples/train.py", "--timeout", "inf"),
        ("run", "examples/train.py", "--max-runtime", "1e400"),
        ("run", "examples/train.py", "--max-price", "nan"),
        ("run", "examples/train.py", "--max-price", "inf"),
        ("resources", "cleanup", "--older-than", "nan", "--dry-run"),
        ("resources", "cost", "--since", "1e400"),
    ],
)
def test_non_finite_numbers_are_usage_errors(cli, project: Path, args: tuple[str, ...]) -> None:
    result = cli("-o", "json", *args)
    assert result.code == 2, (args, result.err)
    assert result.error()["code"] == "usage"


def test_script_named_like_an_option_runs(cli, project: Path) -> None:
    (project / "-x.py").write_text("print('dash script ran', flush=True)\n")
    result = cli("-o", "json", "run", "./-x.py")
    assert result.code == 0, result.err
    assert result.json()["job"]["state"] == "succeeded"


def test_non_utf8_config_is_named(cli, project: Path) -> None:
    (project / ".runctl.toml").write_bytes(b"default_provider = \"loc\xe9l\"\n")
    result = cli("-o", "json", "status")
    assert result.code == 3, result.err
    assert ".runctl.toml" in result.error()["message"] and "UTF-8" in result.error()["message"]


def test_unwritable_outputs_is_refused_before_anything_is_created(cli, home: Path, project: Path) -> None:
    (project / "not-a-dir").write_text("a file where a directory should be")
    result = cli("-o", "json", "run", "examples/train.py", "--outputs", "not-a-dir/out")
    assert result.code == 2, result.err
    assert "outputs" in result.error()["message"]
    assert not list(home.glob("providers/local/instances/*")), "an instance was created before the check"
