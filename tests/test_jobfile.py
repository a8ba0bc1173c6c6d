"""The job file runctl.yaml through the CLI: runs end to end on local, flags override it, mistakes name the
file, the line and the key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from runctl_core.jobfile import STARTER, Job

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def example(project: Path) -> Path:
    """The repository's examples/ directory (train.py + runctl.yaml) inside the test project."""
    shutil.copy(REPO / "examples" / "runctl.yaml", project / "examples" / "runctl.yaml")
    return project / "examples" / "runctl.yaml"


@pytest.mark.slow
def test_example_job_file_runs_end_to_end_on_local(cli, project: Path, example: Path) -> None:
    result = cli("run", "-f", "examples/runctl.yaml", "--output", "json")
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["job"]["state"] == "succeeded" and doc["job"]["args"] == ["--epochs", "3", "--samples", "400"]
    outputs = project / "outputs" / doc["job"]["job_id"]  # `outputs: ../outputs`, relative to the file
    assert doc["outputs_dir"] == str(outputs)
    assert (outputs / "metrics.json").is_file() and sorted(p.name for p in outputs.glob("ckpt-*.json"))


@pytest.mark.slow
def test_run_without_script_reads_runctl_yaml_and_flags_override(cli, project: Path, example: Path) -> None:
    (project / "examples" / "runctl.yaml").rename(project / "runctl.yaml")
    text = (project / "runctl.yaml").read_text().replace("script: train.py", "script: examples/train.py")
    (project / "runctl.yaml").write_text(text)
    plan = cli("run", "--dry-run", "--timeout", "5m", "--output", "json")
    assert plan.code == 0, plan.err
    doc = plan.json()
    assert doc["job"]["timeout"] == 300.0 and doc["job"]["script"] == "examples/train.py"
    assert doc["job"]["name"] == "logistic-regression" and doc["provider"] == "local"
    text_plan = cli("run", "--dry-run")
    assert "job (job file and flags merged):" in text_plan.out and "logistic-regression" in text_plan.out
    result = cli("run", "--output", "json", "--", "--epochs", "1", "--samples", "100")
    assert result.code == 0, result.err
    assert result.json()["job"]["args"] == ["--epochs", "1", "--samples", "100"]


def test_no_script_and_no_job_file_says_what_to_do(cli, project: Path) -> None:
    result = cli("run")
    assert result.code == 2 and "runctl.yaml" in result.err and "runctl init" in result.err


def test_mistakes_name_the_file_the_line_and_the_key(cli, project: Path) -> None:
    (project / "runctl.yaml").write_text("name: x\nscript: examples/train.py\nresources:\n  gpu_cout: 2\n")
    result = cli("run", "--dry-run")
    assert result.code == 3, result.err
    assert "runctl.yaml:4: resources.gpu_cout: unknown key (did you mean 'gpu_count'?)" in result.err
    (project / "runctl.yaml").write_text("script: examples/train.py\ntimeout: soon\nmax_restarts: -1\n")
    result = cli("run", "--dry-run", "--output", "json")
    message = result.error()["message"]
    assert "runctl.yaml:2: timeout:" in message and "runctl.yaml:3: max_restarts:" in message
    (project / "runctl.yaml").write_text("script: [unclosed\n")
    assert "not valid YAML" in cli("run", "--dry-run").err


def test_env_takes_local_values_and_secrets_are_read_at_run_time(cli, home: Path, project: Path) -> None:
    (project / "show_env.py").write_text(
        "import os\n"
        "print('greeting', os.environ['GREETING'])\n"
        "print('secret ok' if os.environ.get('MY_TOKEN') == 'tok-123' else 'secret missing')\n"
        "print('file', os.environ['FROM_FILE'])\n"
    )
    (project / ".env").write_text("# a comment\nexport FROM_FILE='from the file'\n")
    (project / "runctl.yaml").write_text(
        "script: show_env.py\nenv:\n  GREETING: hello ${WHO}\nenv_file: .env\nsecrets: [MY_TOKEN]\n"
    )
    missing = cli("run", env={"WHO": "world"})
    assert missing.code == 2 and "secret MY_TOKEN is not set" in missing.err
    result = cli("run", "--output", "json", env={"WHO": "world", "MY_TOKEN": "tok-123"})
    assert result.code == 0, result.err
    job_id = result.json()["job"]["job_id"]
    log = cli("logs", job_id).out
    assert "greeting hello world" in log and "secret ok" in log and "file from the file" in log
    stored = [p for p in home.rglob("*") if p.is_file() and b"tok-123" in p.read_bytes()]
    assert stored == [], stored  # a secret's value is never written under RUNCTL_HOME
    dry = cli("run", "--dry-run", "--output", "json", env={"WHO": "world", "MY_TOKEN": "tok-123"})
    assert "tok-123" not in dry.out and json.loads(dry.out)["job"]["secrets"] == ["MY_TOKEN"]


def test_schema_and_init(cli, project: Path) -> None:
    schema = cli("schema")
    assert schema.code == 0
    doc = json.loads(schema.out)
    assert {"script", "resources", "secrets", "provider"} <= set(doc["properties"])
    assert cli("init").code == 0
    assert (project / "runctl.yaml").read_text() == STARTER
    again = cli("init")
    assert again.code == 2 and "already exists" in again.err
    Job.from_file(project / "runctl.yaml")  # the starter is a valid job


def test_unsupported_keys_are_refused_not_dropped(cli, project: Path) -> None:
    (project / "runctl.yaml").write_text("script: examples/train.py\nresources:\n  nodes: 2\n")
    result = cli("run", "--dry-run")
    from runctl_core.models import JobSpec

    if "nodes" not in JobSpec.model_fields:
        assert result.code == 2 and "multi-node" in result.err
    else:
        assert result.code == 0, result.err


@pytest.mark.slow
def test_setup_key_runs_before_the_script(cli, project: Path) -> None:
    (project / "uses_setup.py").write_text("from pathlib import Path\nprint(Path('made-by-setup.txt').read_text())\n")
    (project / "runctl.yaml").write_text("script: uses_setup.py\nsetup:\n  - echo prepared > made-by-setup.txt\n")
    result = cli("run", "--output", "json")
    assert result.code == 0, result.err
    assert "prepared" in cli("logs", result.json()["job"]["job_id"]).out
