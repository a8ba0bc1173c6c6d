"""Issue 15.3 for RunPod: the sequential round trips between "pod accepted" (createPod answered) and "job
started" (the launcher ran), counted by the stand-in: API requests, SSH commands and SFTP sessions. The
figures are printed (run with -s); the bound only guards against regressions of the count, not of time."""

from __future__ import annotations

from collections.abc import Callable

from runpod_standin import StandIn

from runctl_core.testing.cli import CliResult


def critical_path(standin: StandIn, since: int = 0) -> list[str]:
    events = standin.events[since:]
    start = next(i for i, e in enumerate(events) if e[1:] == ("api", "createPod")) + 1
    end = next(i for i, e in enumerate(events) if e[1] == "ssh" and "launch.sh" in e[2])
    # the boot itself is waited for by polling: count the polls that saw it not ready as one wait
    path = [f"{kind}:{what.split()[0] if kind == 'ssh' else what}" for _t, kind, what in events[start : end + 1]]
    return path


def test_round_trips_from_pod_accepted_to_job_started(cli: Callable[..., CliResult], standin: StandIn) -> None:
    first = cli("-o", "json", "run", "examples/train.py", "--gpu", "RTX 4090", "--keep", "--", "--epochs", "1")
    assert first.code == 0, first.err
    path = critical_path(standin)
    print(f"\nRunPod round trips, pod accepted -> job started: {len(path)}: {path}")
    # before issue 15.3: 17 (2 boot polls, readiness + timer 3, sync 5, train 7); now 2 boot polls + 5
    assert len(path) - path.count("api:getPod") <= 5
    pod_id = first.json()["instance"]["id"]
    mark = len(standin.events)
    again = cli("-o", "json", "train", pod_id, "examples/train.py", "--wait", "--", "--epochs", "1")
    assert again.code == 0, again.err
    events = standin.events[mark:]
    second = [f"{k}:{w.split()[0] if k == 'ssh' else w}" for _t, k, w in events]
    end = next(i for i, e in enumerate(events) if e[1] == "ssh" and "launch.sh" in e[2])
    print(f"second job on the kept pod, command -> job started: {end + 1}: {second[: end + 1]}")
    assert end + 1 <= 3  # before: 11 (two pod lookups, separate SFTP sessions per file)
    assert cli("terminate", pod_id, "--yes").code == 0
