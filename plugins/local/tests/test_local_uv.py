"""The local provider runs scripts with `uv run` when uv exists, so PEP 723 inline dependencies are honoured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runctl_core.remote.runner import find_uv
from runctl_core.testing.cli import runctl_executable

RUNCTL = runctl_executable()
SCRIPT = """\
# /// script
# requires-python = ">=3.9"
# dependencies = ["six"]
# ///
import os, sys
import six
print("six", six.__version__, "in", sys.prefix)
open(os.path.join(os.environ["RUNCTL_CHECKPOINT_DIR"], "done.txt"), "w").write("ok")
"""


@pytest.mark.skipif(find_uv() is None, reason="uv is not installed (pip install uv)")
def test_uv_run_honours_inline_dependencies(tmp_path: Path) -> None:
    project = tmp_path / "p"
    project.mkdir()
    (project / "needs_six.py").write_text(SCRIPT)
    env = {**os.environ, "RUNCTL_HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    proc = subprocess.run(
        [RUNCTL, "-o", "json", "run", "needs_six.py"], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["job"]["state"] == "succeeded"
    log = subprocess.run(
        [RUNCTL, "logs", doc["job"]["job_id"]], cwd=project, env=env, capture_output=True, text=True, timeout=60
    ).stdout
    (line,) = [x for x in log.splitlines() if x.startswith("six ")]
    assert sys.prefix not in line  # ran in the job's own environment, not runctl's
    assert [Path(p).name for p in doc["checkpoints"]] == ["done.txt"]


def test_falls_back_to_python_without_uv(tmp_path: Path) -> None:
    project = tmp_path / "p"
    project.mkdir()
    (project / "plain.py").write_text("import sys; print('python', sys.executable)\n")
    (project / ".runctl.toml").write_text("[providers.local]\nuse_uv = false\n")
    env = {**os.environ, "RUNCTL_HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    proc = subprocess.run(
        [RUNCTL, "-o", "json", "run", "plain.py"], cwd=project, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    job = json.loads(proc.stdout)["job"]["job_id"]
    log = subprocess.run([RUNCTL, "logs", job], cwd=project, env=env, capture_output=True, text=True).stdout
    assert log.strip() == f"python {sys.executable}"
