"""Before spending (issue 10, item 6) and a job file's list of providers, with third-party paid providers: on a
terminal `run` shows the price and asks `Proceed? [Y/n]`; `-y` skips it; scripts are never asked."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

from test_plugins import FAKE_GPU_PROVIDERS, _install

from runctl_core.testing.cli import runctl_executable


def _paid_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site-paid"
    for dist, name, cls in (("runctl-cheap", "cheap", "Cheap"), ("runctl-dear", "dear", "Dear")):
        _install(site, dist, name, "runctl_fake_gpus", FAKE_GPU_PROVIDERS, cls)
    return {"PYTHONPATH": str(site), "RUNCTL_LOAD_PLUGINS": "cheap,dear"}


def _on_a_terminal(args: list[str], env: dict[str, str], answer: str) -> tuple[int, str]:
    """Run runctl with stdin and stderr on a pseudo-terminal; answer the first question asked."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [runctl_executable(), *args], stdin=slave, stdout=subprocess.PIPE, stderr=slave, env={**os.environ, **env}
    )
    os.close(slave)
    seen, answered = b"", False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            if not answered and b"Proceed?" in seen:
                os.write(master, answer.encode())
                answered = True
        elif proc.poll() is not None:
            break
    code = proc.wait(timeout=120)
    os.close(master)
    return code, seen.decode(errors="replace")


def test_paid_run_asks_on_a_terminal(home: Path, project: Path, tmp_path: Path) -> None:
    env = _paid_env(tmp_path)
    args = ["--provider", "dear", "run", "examples/train.py", "--gpu", "A100", "--", "--epochs", "1"]
    code, screen = _on_a_terminal(args, env, "n\n")
    assert "dear dear.gpu costs $3.0000/h. Proceed? [Y/n]" in screen, screen
    assert code == 130 and "nothing was created" in screen
    code, screen = _on_a_terminal(args, env, "\n")  # Enter: yes
    assert code == 0, screen
    code, screen = _on_a_terminal([*args[:3], "--yes", *args[3:]], env, "n\n")
    assert code == 0 and "Proceed?" not in screen, screen


def test_job_file_provider_list_is_tried_in_order(cli, home: Path, project: Path, tmp_path: Path) -> None:
    env = _paid_env(tmp_path)
    (project / "runctl.yaml").write_text(
        "script: examples/train.py\nargs: ['--epochs', '1']\nresources: {gpu: A100}\nprovider: [dear, cheap]\n"
    )
    plan = cli("run", "--dry-run", "--output", "json", env=env).json()
    assert plan["provider"] == "dear" and [a["provider"] for a in plan["alternatives"]] == ["dear", "cheap"]
    ran = cli("run", "--output", "json", env=env)  # no terminal: no question
    assert ran.code == 0, ran.err
    assert ran.json()["job"]["provider"] == "dear"
