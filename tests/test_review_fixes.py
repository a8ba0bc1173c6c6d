"""Defects found by a newcomer's review, each reproduced through the CLI: a job file or env file that is not
UTF-8 is a clear error (not an internal one); ``--provider auto`` names a provider whose offers were all filtered
out; an option meant for the script gets its corrected command line as a hint, also in JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def test_job_file_that_is_not_utf8_names_the_file(cli: Any, project: Path) -> None:
    (project / "runctl.yaml").write_bytes(b"script: examples/train.py\nname: \xff\xfe\n")
    result = cli("run", "--dry-run")
    assert result.code == 3, result.err
    assert "runctl.yaml" in result.err and "UTF-8" in result.err and "internal error" not in result.err
    error = cli("-o", "json", "run", "--dry-run").error()
    assert error["code"] == "config" and "UTF-8" in error["message"] and error["hint"]


def test_env_file_that_is_not_utf8_is_bad_input(cli: Any, project: Path) -> None:
    (project / "bad.env").write_bytes(b"NAME=\xff\n")
    result = cli("run", "examples/train.py", "--env-file", "bad.env")
    assert result.code == 2, result.err
    assert "bad.env" in result.err and "UTF-8" in result.err and "internal error" not in result.err


def test_forgotten_double_dash_keeps_runctl_options_and_hints_in_json(cli: Any, project: Path) -> None:
    result = cli("run", "examples/train.py", "--epochs", "3", "-o", "json", "--gpu", "RTX 4090")
    assert result.code == 2
    error = result.error()  # JSON: the corrected command is the hint, not part of the message
    assert error["message"] == "no such option: --epochs (options for the script go after `--`)"
    assert error["hint"] == "did you mean: runctl run examples/train.py -o json --gpu 'RTX 4090' -- --epochs 3"
    text = cli("run", "examples/train.py", "--epochs", "3", "--timeout=5m", "--", "--lr", "0.1")
    assert text.code == 2
    assert "did you mean: runctl run examples/train.py --timeout=5m -- --epochs 3 --lr 0.1" in text.err


def test_auto_names_a_provider_whose_offers_were_all_filtered_out(cli: Any, project: Path) -> None:
    env = {"RUNCTL_LOAD_PLUGINS": "aws,local"}
    # the README's example: AWS has A100 machines, but their spot price needs credentials -> exit 3, AWS named
    plan = cli(
        "-o", "json", "--provider", "auto", "run", "examples/train.py",
        "--gpu", "A100", "--spot", "--max-price", "2.50", "--dry-run", env=env,
    )  # fmt: skip
    assert plan.code == 3, plan.err
    error = plan.error()
    assert error["code"] == "credentials" and "aws: no spot price without credentials" in error["message"]
    # on-demand prices are bundled: an offer over --max-price is named with its price -> exit 2
    capped = cli(
        "-o", "json", "--provider", "auto", "run", "examples/train.py",
        "--gpu", "A100", "--max-price", "1", "--dry-run", env=env,
    )  # fmt: skip
    assert capped.code == 2, capped.err
    message = capped.error()["message"]
    assert "aws: the cheapest offer, p4d.24xlarge at $32.7726/h, is over --max-price $1.0/h" in message


def test_failed_run_json_document_masks_env_secrets(cli: Any, project: Path) -> None:
    (project / "leak.py").write_text("import os, sys\nprint('token', os.environ['MY_TOKEN'])\nsys.exit(3)\n")
    result = cli("-o", "json", "run", "leak.py", "--env", "MY_TOKEN=tok-abcdef123456")
    assert result.code == 1, result.err
    assert "token ****" in result.json()["log_tail"]
    assert "tok-abcdef123456" not in result.out + result.err


def test_api_refuses_a_string_where_a_list_of_arguments_goes(home: Path, project: Path) -> None:
    import pytest

    import runctl

    with pytest.raises(runctl.UsageError) as caught:
        runctl.run("examples/train.py", args="--epochs 1", dry_run=True)  # type: ignore[arg-type]
    assert "args=['--epochs', '1']" in caught.value.hint
    with pytest.raises(runctl.UsageError):
        runctl.train("local-x", "examples/train.py", setup="pip install numpy")  # type: ignore[arg-type]


def test_infinite_or_nan_max_price_in_a_job_file_is_refused(cli: Any, project: Path) -> None:
    for value in (".inf", ".nan", "1e400"):
        (project / "runctl.yaml").write_text(f"script: examples/train.py\nresources: {{max_price: {value}}}\n")
        result = cli("run", "--dry-run")
        assert result.code == 3, (value, result.out)
        assert "runctl.yaml:2: resources.max_price" in result.err


def test_config_set_says_the_file_was_not_changed_and_echoes_toml(cli: Any, project: Path) -> None:
    config = project / ".runctl.toml"
    before = config.read_text()
    for args in (["run.spto", "true"], ["run.max_restarts", "--", "-4"], ["providers.local.bogus", "1"]):
        result = cli("config", "set", *args)
        assert result.code == 3, (args, result.err)
        assert f"hint: nothing was written to {config}" in result.err and "fix it in" not in result.err
        assert config.read_text() == before
    done = cli("config", "set", "run.spot", "true")
    assert done.code == 0 and done.out.startswith("run.spot = true in ")


def test_help_names_every_in_repo_provider(cli: Any, project: Path) -> None:
    for args in (["--help"], ["run", "--help"]):
        text = " ".join(cli(*args).out.split())
        assert all(name in text for name in ("local", "aws", "runpod", "lyceum", "slurm")), text


def test_failed_run_with_output_id_still_prints_the_job_id(cli: Any, project: Path) -> None:
    result = cli("run", "examples/train.py", "--output", "id", "--", "--epochs", "2", "--fail-at-epoch", "1")
    assert result.code == 1, result.err
    job_id = result.out.strip()
    assert job_id.startswith("job-") and f"runctl logs {job_id}" in result.err
    assert cli("status", job_id).code == 0


def test_api_train_reads_timeout_like_the_cli(home: Path, project: Path) -> None:
    import math

    import pytest

    import runctl

    for bad in (math.nan, math.inf, -5, "soon"):
        with pytest.raises(runctl.UsageError) as caught:
            runctl.train("local-x", "examples/train.py", timeout=bad)  # type: ignore[arg-type]
        assert "timeout" in caught.value.message and "2h" in caught.value.hint
    instance = runctl.create(provider="local")
    try:
        job = runctl.train(instance.id, "examples/train.py", args=["--epochs", "1"], timeout="2h", wait=True)
        assert job.state == "succeeded"
    finally:
        runctl.terminate(instance.id)


def test_api_create_and_run_validate_their_options(home: Path, project: Path) -> None:
    import math

    import pytest

    import runctl

    bad: list[dict[str, Any]] = [
        {"max_price": math.nan}, {"max_price": math.inf}, {"gpu_cout": 2}, {"max_runtime": "soon"},
        {"wait_timeout": math.inf}, {"disk_gb": "big"},
    ]  # fmt: skip
    for options in bad:
        with pytest.raises(runctl.UsageError):
            runctl.create(provider="local", **options)
    assert runctl.status()["summary"]["instances_running"] == 0  # nothing was created
    with pytest.raises(runctl.UsageError) as caught:
        runctl.run("examples/train.py", env=["A=1"], dry_run=True)  # type: ignore[arg-type]
    assert "env" in caught.value.message


def test_resume_from_an_unknown_job_points_at_the_job_list(cli: Any, project: Path) -> None:
    result = cli("-o", "json", "run", "examples/train.py", "--resume-from", "job-nope")
    assert result.code == 2
    assert result.error()["hint"] == "list jobs with: runctl jobs --all"


def _wait_until(check: Any, timeout: float = 90) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def test_checkpoint_pull_to_a_directory_copies_without_repointing_the_job(cli: Any, project: Path) -> None:
    instance = cli("create", "-o", "id").out.strip()
    try:
        job_id = cli("train", instance, "examples/train.py", "-o", "id", "--", "--epochs", "2", "--sleep", "2")
        job_id = job_id.out.strip()
        cli("checkpoint", "pull", job_id, "early")  # while it runs: must not count as its final collection
        _wait_until(lambda: cli("jobs", instance, "-o", "json").json()["jobs"] == [])
        listed = cli("-o", "json", "checkpoint", "list", job_id).json()["checkpoints"]
        assert any(c["where"] == "local" and c["name"] == "metrics.json" for c in listed), listed
        pulled = cli("checkpoint", "pull", job_id, "copy")
        assert pulled.code == 0 and (project / "copy" / "metrics.json").is_file(), pulled.err
        info = cli("checkpoint", "info", job_id)
        assert str(project / "copy") not in info.out and str(project / "early") not in info.out, info.out
        (project / "copy" / "metrics.json").unlink()
        assert cli("checkpoint", "pull", job_id).code == 0
        assert not (project / "copy" / "metrics.json").exists()  # the plain pull went to the job's own directory
    finally:
        cli("terminate", instance, "--yes")


def test_an_unknown_provider_is_the_same_error_however_it_is_named(cli: Any, project: Path) -> None:
    (project / "runctl.yaml").write_text("script: examples/train.py\nprovider: [nosuch, local]\n")
    listed = cli("-o", "json", "run", "--dry-run")
    (project / "runctl.yaml").unlink()
    flag = cli("-o", "json", "--provider", "nosuch", "run", "examples/train.py", "--dry-run")
    assert listed.code == flag.code == 3, (listed.err, flag.err)
    assert listed.error()["code"] == flag.error()["code"] == "plugin"
    assert listed.error()["hint"] == flag.error()["hint"]
    assert "no provider named 'nosuch' is installed" in listed.error()["message"]


def test_a_shell_script_is_refused_before_anything_is_created(cli: Any, project: Path) -> None:
    (project / "go.sh").write_text("#!/bin/bash\necho hi\n")
    (project / "tool").write_text("#!/bin/sh\necho hi\n")
    (project / "pyentry").write_text("#!/usr/bin/env python3\nprint('fine')\n")
    for script in ("go.sh", "tool"):
        result = cli("-o", "json", "run", script)
        assert result.code == 2, result.err
        error = result.error()
        assert error["message"] == f"script {script} is not a Python script: runctl runs SCRIPT with Python"
        assert f"--setup 'bash {script}'" in error["hint"]
    assert cli("-o", "json", "status").json()["summary"]["instances_running"] == 0
    assert cli("jobs", "--all", "-o", "json").json()["jobs"] == []  # nothing was created
    assert cli("run", "pyentry").code == 0  # a Python script without .py still runs


def test_outputs_of_an_earlier_run_are_never_synced(cli: Any, project: Path) -> None:
    # examples/runctl.yaml's `outputs: ../outputs` puts them in the repository: a later plain run must not send them
    first = cli("-o", "json", "run", "examples/train.py", "--outputs", "outputs", "--", "--epochs", "1")
    assert first.code == 0 and any((project / "outputs").rglob("*.json")), first.err
    plan = cli("-o", "json", "run", "examples/train.py", "--dry-run").json()
    sync = next(c for c in plan["calls"] if c["step"] == "sync")
    assert sync["params"]["files"] == 2  # examples/train.py and .runctl.toml, not outputs/JOB_ID/
    ignored = (Path(__file__).resolve().parents[1] / ".gitignore").read_text().split()
    assert "outputs/" in ignored  # examples/runctl.yaml writes <repo>/outputs/


def test_dry_run_warns_about_an_unset_variable_in_the_job_files_env(cli: Any, project: Path) -> None:
    (project / "runctl.yaml").write_text(
        "script: examples/train.py\nenv: {A: '${NOPE_UNSET}/x', B: plain}\nsecrets: [NOPE_SECRET]\n"
    )
    for args in (["run", "--dry-run"], ["-o", "json", "run", "--dry-run"]):
        result = cli(*args)
        assert result.code == 0, result.err
        assert "warning: " in result.err and "env.A: ${NOPE_UNSET} is not set" in result.err, result.err
        assert "secret NOPE_SECRET is not set" in result.err
    assert cli("run").code == 2  # the real run refuses it


def test_schema_and_completion_take_output_after_the_command(cli: Any, project: Path) -> None:
    import json

    for args in (["schema", "-o", "json"], ["-o", "json", "schema"], ["schema", "--output", "text"]):
        result = cli(*args)
        assert result.code == 0, (args, result.err)
        assert json.loads(result.out)["title"]
    document = cli("completion", "bash", "-o", "json")
    assert document.code == 0, document.err
    assert document.json()["shell"] == "bash" and "_runctl_completion" in document.json()["script"]
    text = cli("completion", "zsh", "--output", "text")
    assert text.code == 0 and "compdef" in text.out and not text.out.startswith("{")


def test_local_terminate_says_what_it_keeps(cli: Any, project: Path) -> None:
    instance = cli("create", "-o", "id").out.strip()
    assert cli("train", instance, "examples/train.py", "--", "--epochs", "1").code == 0
    ended = cli("-o", "json", "terminate", instance, "--yes")
    assert ended.code == 0, ended.err
    message = ended.json()["message"]
    assert message.startswith("sandbox removed; job logs and checkpoints kept under "), message
    kept = Path(message.rsplit(" under ", 1)[1].split(" ")[0])
    assert kept.is_dir() and any(kept.iterdir())  # what it says is kept is there
    assert message in cli("terminate", instance, "--yes").out + cli("status", instance).out
