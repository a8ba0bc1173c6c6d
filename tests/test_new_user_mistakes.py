"""What a new user types wrong, through the CLI: every message says what went wrong and what to do next (an
example of the command or option), in text and in JSON."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("args", "example"),
    [
        (("terminate",), "e.g. runctl terminate i-0abc123 --yes"),
        (("logs",), "e.g. runctl logs job-7f3a9c"),
        (("sync",), "e.g. runctl sync local-1a2b3c4d"),
        (("train", "local-x"), "e.g. runctl train local-1a2b3c4d examples/train.py --wait -- --epochs 3"),
        (("config", "set", "run.spot"), "e.g. runctl config set run.spot true"),
    ],
)
def test_a_missing_argument_gets_an_example(cli, project: Path, args: tuple[str, ...], example: str) -> None:
    text = cli(*args)
    assert text.code == 2 and "Missing argument" in text.err and f"hint: {example}" in text.err, text.err
    error = cli(*args, "--output", "json").error()
    assert error["code"] == "usage" and example in error["hint"], error


def test_a_bad_option_value_gets_the_option_s_example(cli, project: Path) -> None:
    bad_env = cli("run", "examples/train.py", "--env", "BAD")
    assert bad_env.code == 2 and "hint: --env: e.g. --env WANDB_API_KEY=$WANDB_API_KEY" in bad_env.err, bad_env.err
    bad_timeout = cli("-o", "json", "run", "examples/train.py", "--timeout", "abc").error()
    assert "--timeout" in bad_timeout["message"] and "2h" in bad_timeout["hint"], bad_timeout


def test_jobs_of_an_unknown_instance_is_an_error(cli, project: Path) -> None:
    result = cli("jobs", "nosuch")
    assert (
        result.code == 2 and "runctl has no instance 'nosuch'" in result.err and "runctl resources list" in result.err
    )


def test_a_group_without_its_command_in_json_names_the_commands(cli, project: Path) -> None:
    error = cli("-o", "json", "checkpoint").error()
    assert error["message"] == "missing command: one of info, list, pull", error
    assert error["hint"] == "every command: runctl checkpoint --help"
    typo = cli("-o", "json", "stauts").error()
    assert "Did you mean: status?" in typo["message"] and typo["hint"] == "every command: runctl --help"


def test_terminating_what_has_already_ended_needs_no_confirmation(cli, project: Path) -> None:
    run = cli("run", "examples/train.py", "--output", "json", "--", "--epochs", "1", "--samples", "50")
    assert run.code == 0, run.err
    job, instance = run.json()["job"]["job_id"], run.json()["instance"]["id"]
    again = cli("terminate", job)
    assert again.code == 0 and "had already ended" in again.out, again.err
    assert cli("terminate", instance).code == 0
    live = cli("create", "--output", "id").out.strip()
    refused = cli("terminate", live)  # alive: a script must still say --yes
    assert refused.code == 2 and "--yes" in refused.err
    assert cli("terminate", live, "--yes").code == 0


def test_a_global_option_after_the_command_says_where_it_goes(cli, project: Path) -> None:
    quiet = cli("run", "examples/train.py", "-q")
    assert quiet.code == 2 and "runctl -q run examples/train.py" in quiet.err, quiet.err
    verbose = cli("status", "-v")
    assert verbose.code == 2 and "goes before the command" in verbose.err and "runctl -v status" in verbose.err
    error = cli("-o", "json", "status", "--no-progress").error()
    assert "runctl --no-progress -o json status" in error["hint"], error


def test_a_missing_script_of_a_job_file_says_where_it_is_looked_for(cli, project: Path) -> None:
    (project / "runctl.yaml").write_text("script: nosuch.py\n")
    result = cli("run", "--dry-run")
    assert result.code == 2 and "nosuch.py does not exist" in result.err and "job file's directory" in result.err


def test_checkpoint_pull_into_an_unwritable_dest_is_a_clear_error(cli, project: Path) -> None:
    run = cli("run", "examples/train.py", "--output", "json", "--", "--epochs", "1", "--samples", "50")
    job = run.json()["job"]["job_id"]
    (project / "afile").write_text("x")
    refused = cli("checkpoint", "pull", job, "afile/sub")
    assert refused.code == 2 and "cannot write DEST" in refused.err and "internal error" not in refused.err
    assert f"runctl checkpoint pull {job} ./ckpt" in refused.err
    assert cli("checkpoint", "pull", job, "ckpt").code == 0 and (project / "ckpt" / "metrics.json").is_file()


def test_auto_dry_run_lists_a_few_alternatives_and_each_provider_s_note_once(
    cli, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "RUNPOD_API_KEY", "LYCEUM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    plan = cli("--provider", "auto", "run", "examples/train.py", "--dry-run")
    assert plan.code == 0, plan.err
    rows = plan.out.split("alternatives, in the order they are tried:")[1].splitlines()
    aws_rows = [r for r in rows if r.strip().startswith("aws ")]
    assert 0 < len(aws_rows) <= 10, plan.out
    assert sum("bundled table" in r for r in rows) == 1 and any("more (--output json lists" in r for r in rows)
    doc = cli("--provider", "auto", "-o", "json", "run", "examples/train.py", "--dry-run").json()
    assert len(doc["alternatives"]) > 10  # JSON keeps every one


def test_logs_of_a_rank_the_job_does_not_have(cli, project: Path) -> None:
    run = cli("run", "examples/train.py", "--output", "json", "--", "--epochs", "1", "--samples", "50")
    job = run.json()["job"]["job_id"]
    refused = cli("logs", job, "--rank", "3")
    assert refused.code == 2 and "has 1 rank(s), 0 to 0" in refused.err and "hint: --rank: e.g. --rank 1" in refused.err
