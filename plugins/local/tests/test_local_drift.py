"""Through the CLI on the local provider: a kept sandbox runs the config the laptop has, not the one a previous
job rewrote there (the independent review's repro: the second ``train`` printed ``lr 999``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runctl_core.testing.cli import isolate, run_runctl

SCRIPT = (
    "import json\n"
    "print('lr', json.load(open('cfg.json'))['lr'])\n"
    "json.dump({'lr': 999}, open('cfg.json', 'w'))\n"
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "t.py").write_text(SCRIPT)
    (root / "cfg.json").write_text(json.dumps({"lr": 0.1}))
    (root / ".runctl.toml").write_text('[providers.local]\nuse_uv = false\n')
    monkeypatch.chdir(root)
    isolate(monkeypatch, tmp_path / "home", tmp_path / "xdg-config")
    return root


def test_second_train_on_a_kept_sandbox_runs_the_laptops_config(project: Path) -> None:
    created = run_runctl("--provider", "local", "create", "--output", "id", timeout=120)
    assert created.code == 0, created.err
    instance = created.out.strip()
    try:
        for _ in range(2):
            trained = run_runctl("train", instance, "t.py", "--wait", timeout=180)
            assert trained.code == 0, trained.err
            printed = trained.out + trained.err  # the job's log is streamed to stderr
            assert "lr 0.1" in printed, printed
            assert "lr 999" not in printed
    finally:
        run_runctl("terminate", instance, "--yes", timeout=120)
