"""Round trips on RunPod's critical path, counted by the stand-in (issue 15.3): API requests, SSH commands and
SFTP sessions (none since the core SSH transport) between "pod accepted" (createPod answered) and "job started"
(the launcher ran), for a first job and for a second job on a kept pod. Used by test_runpod_roundtrips.py and
benchmarks/bench.py."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

from runpod_standin import StandIn

from runctl_core.testing.counting import label as command_label

REPO = Path(__file__).resolve().parents[3]
API_KEY = "rpa_STANDINSECRET0123456789"
SETTINGS = {
    "remote_dir": "runctl",
    "use_uv": False,
    "poll_interval": 0.05,
    "container_env_files": ["etc/rp_environment"],
}


def _ssh_label(command: str) -> str:
    """An SSH command's name: the runner command it runs (``launch``, ``apply-sync``...), else its program."""
    try:
        return command_label(shlex.split(command))
    except ValueError:  # not a shell line runctl wrote
        return command.split()[0]


def label(kind: str, what: str) -> str:
    return f"{kind}:{_ssh_label(what)}" if kind == "ssh" else f"{kind}:{what if kind == 'api' else 'session'}"


def path_between(events: list[tuple[float, str, str]], start_op: str | None) -> list[str]:
    """The events after ``start_op`` (an API operation; None: from the first) up to the job's launch."""
    start = 0 if start_op is None else next(i for i, e in enumerate(events) if e[1:] == ("api", start_op)) + 1
    end = next(i for i, e in enumerate(events) if e[1] == "ssh" and _ssh_label(e[2]) == "launch")
    return [label(kind, what) for _t, kind, what in events[start : end + 1]]


def measure(tmp: Path, runctl: str, env: dict[str, str]) -> dict[str, list[str]]:
    """Run a job on a new pod (kept), then a second job on it; return both critical paths."""
    standin = StandIn(tmp / "standin", API_KEY).start()
    try:
        project = tmp / "project"
        (project / "examples").mkdir(parents=True)
        shutil.copy(REPO / "examples" / "train.py", project / "examples" / "train.py")
        lines = ["[providers.runpod]"] + [f"{k} = {json.dumps(v)}" for k, v in SETTINGS.items()]
        (project / ".runctl.toml").write_text("\n".join(lines) + "\n")
        renv = {**env, "RUNPOD_API_KEY": API_KEY, "RUNPOD_API_BASE_URL": standin.url, "RUNCTL_HOME": str(tmp / "home")}

        def cli(*args: str) -> dict[str, object]:
            out = subprocess.run(
                [runctl, "--provider", "runpod", "-o", "json", *args],
                cwd=project,
                env=renv,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if out.returncode != 0:
                raise RuntimeError(f"runctl {args[0]} failed: {out.stderr.strip()[-300:]}")
            result: dict[str, object] = json.loads(out.stdout)
            return result

        first = cli("run", "examples/train.py", "--gpu", "RTX 4090", "--keep", "--", "--epochs", "1")
        paths = {"accepted -> job started": path_between(standin.events, "createPod")}
        pod_id = str(first["instance"]["id"])  # type: ignore[index]
        mark = len(standin.events)
        cli("train", pod_id, "examples/train.py", "--wait", "--", "--epochs", "1")
        paths["2nd job on kept instance"] = path_between(standin.events[mark:], None)
        cli("terminate", pod_id, "--yes")
        return paths
    finally:
        standin.stop()
