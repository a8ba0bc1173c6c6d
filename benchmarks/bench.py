"""runctl's figures, each beside its anchor, in one run (printed, never asserted; tests never time anything).

    .venv/bin/python benchmarks/bench.py [--runs N] [--json FILE] [--only local,resync]

Run it with bytecode compiled (PYTHONDONTWRITEBYTECODE unset: this script unsets it for what it starts) on a quiet
machine; medians of N runs. Figures (issue 15):

* ``runctl --help`` against ``python -c pass`` (and ``sky --help`` / ``dstack --help`` when installed);
* local ``run noop.py`` against ``python noop.py``;
* ``run --dry-run`` per installed provider, with the cloud SDKs it imported (``-X importtime``);
* time from ``run`` to the script's first log line, on local;
* re-sync of a one-file change in a 5,000-file project (bytes moved, seconds), on local;
* ``resources list`` over 200 Lyceum instances (API calls made, counted by the Lyceum stand-in);
* sequential provider round trips between "instance accepted" and "job started" (AWS, RunPod, Slurm, and a second
  job on a kept instance): read from the stand-ins' counters (AWS: its round-trip test's printed journal; RunPod:
  ``plugins/runpod/tests/roundtrips.py``), else a "not measured" row (Slurm: no stand-in, a real cluster).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
RUNCTL = str(Path(PYTHON).with_name("runctl"))
CLOUD_SDKS = ("boto3", "botocore", "httpx", "runpod", "paramiko", "asyncssh", "fastapi", "moto")
TARGETS = {"help": 100.0, "local_overhead": 150.0, "dry_run": 300.0}
FIGURES = ("local", "dry-run", "first-line", "resync", "resources", "round-trips")  # --only; --help always runs


class Bench:
    def __init__(self, runs: int, work: Path) -> None:
        self.runs = runs
        self.work = work
        self.rows: list[dict[str, Any]] = []
        self.cpu: list[float] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNCTL_", "AWS_", "LYCEUM_", "RUNPOD_"))}
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env.update(
            RUNCTL_HOME=str(work / "home"),
            XDG_CONFIG_HOME=str(work / "cfg"),
            AWS_EC2_METADATA_DISABLED="true",
            AWS_CONFIG_FILE=str(work / "no-aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(work / "no-aws-credentials"),
        )

    # ---------------------------------------------------------------------------------------------- helpers

    def time_cmd(self, cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> list[float]:
        """Wall-clock ms per run; the CPU ms (user + system of the command and what it waited for) of the same
        runs are kept in ``self.cpu`` - on a loaded machine they move much less than the wall clock."""
        samples = []
        self.cpu = []
        for _ in range(self.runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(cmd, cwd=cwd, env=env or self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            samples.append((time.perf_counter() - start) * 1000)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            self.cpu.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
        return samples

    def cpu_ms(self) -> float:
        return statistics.median(self.cpu)

    def row(self, figure: str, value: str, anchor: str = "", ratio: str = "", note: str = "") -> None:
        self.rows.append({"figure": figure, "value": value, "anchor": anchor, "ratio": ratio, "note": note})
        print(f"{figure:<44} {value:>14}  {anchor:<30} {ratio:>8}  {note}", flush=True)

    @staticmethod
    def ms(samples: list[float]) -> float:
        return statistics.median(samples)

    def warm(self, cwd: Path) -> None:  # compile bytecode once, outside the timings
        for tree in (REPO / "runctl_core", REPO / "runctl", REPO / "plugins"):
            subprocess.run([PYTHON, "-m", "compileall", "-q", str(tree)], env=self.env, capture_output=True)
        subprocess.run([RUNCTL, "--help"], cwd=cwd, env=self.env, capture_output=True)

    # ---------------------------------------------------------------------------------------------- figures

    def startup(self, project: Path) -> float:
        base = self.ms(self.time_cmd([PYTHON, "-c", "pass"], project))
        base_cpu = self.cpu_ms()
        helped = self.ms(self.time_cmd([RUNCTL, "--help"], project))
        self.row(
            "runctl --help",
            f"{helped:.0f} ms",
            f"python -c pass {base:.0f} ms",
            f"{helped / base:.1f}x",
            f"cpu {self.cpu_ms():.0f} ms vs {base_cpu:.0f} ms; " + target("help", helped),
        )
        for tool in ("sky", "dstack"):
            path = shutil.which(tool)
            if path is None:
                self.row(f"{tool} --help", "not installed", "", "", "(issue 15 measured 4.1 s / 2.9 s elsewhere)")
            else:
                other = self.ms(self.time_cmd([path, "--help"], project))
                self.row(
                    f"{tool} --help", f"{other:.0f} ms", f"runctl --help {helped:.0f} ms", f"{other / helped:.1f}x"
                )
        return base

    def local_run(self, project: Path) -> None:
        (project / "noop.py").write_text("pass\n")
        direct = self.ms(self.time_cmd([PYTHON, "noop.py"], project))
        direct_cpu = self.cpu_ms()
        via = self.ms(self.time_cmd([RUNCTL, "--provider", "local", "run", "noop.py"], project))
        overhead = via - direct
        self.row(
            "local run noop.py",
            f"{via:.0f} ms",
            f"python noop.py {direct:.0f} ms",
            f"{via / direct:.1f}x",
            f"overhead {overhead:.0f} ms; runctl's own cpu {self.cpu_ms():.0f} ms vs {direct_cpu:.0f} ms; "
            + target("local_overhead", overhead),
        )

    def dry_runs(self, project: Path, base: float) -> None:
        names = installed_providers(self.env, project)
        for name in names:
            cmd = [RUNCTL, "--provider", name, "run", "noop.py", "--dry-run"]
            took = self.ms(self.time_cmd(cmd, project))
            cpu = self.cpu_ms()
            imported = sdk_imports([PYTHON, "-X", "importtime", "-m", "runctl_core", *cmd[1:]], project, self.env)
            sdks = ", ".join(imported) or "no cloud SDK"
            self.row(
                f"{name}: run --dry-run",
                f"{took:.0f} ms",
                f"python -c pass {base:.0f} ms",
                f"{took / base:.1f}x",
                f"cpu {cpu:.0f} ms; {sdks}; " + target("dry_run", took),
            )

    def first_line(self, project: Path) -> None:
        (project / "first.py").write_text("import time\nprint(f'FIRST {time.time()}', flush=True)\n")
        direct: list[float] = []
        via: list[float] = []
        for _ in range(self.runs):
            direct.append(first_line_ms([PYTHON, "first.py"], project, self.env))
            via.append(first_line_ms([RUNCTL, "--provider", "local", "run", "first.py"], project, self.env))
        d, v = self.ms(direct), self.ms(via)
        self.row("local run: first log line after", f"{v:.0f} ms", f"python first.py {d:.0f} ms", f"{v / d:.1f}x")

    def resync(self, tmp: Path) -> None:
        big = tmp / "big"
        for i in range(5000):
            sub = big / f"pkg{i // 100:02d}"
            sub.mkdir(parents=True, exist_ok=True)
            (sub / f"mod{i:04d}.py").write_text(f"VALUE = {i}\n" + "# padding\n" * 20)
        (big / "train.py").write_text("print('hi')\n")
        (big / ".runctl.toml").write_text("[providers.local]\nuse_uv = false\n")
        created = cli_json(["--provider", "local", "-o", "json", "create"], big, self.env)
        iid = created["id"]
        try:
            start = time.perf_counter()
            first = cli_json(["--provider", "local", "-o", "json", "sync", iid], big, self.env)
            full = time.perf_counter() - start
            (big / "pkg07" / "mod0700.py").write_text("VALUE = 'changed'\n")
            samples = []
            result: dict[str, Any] = {}
            for n in range(max(3, self.runs // 2)):
                (big / "pkg07" / "mod0700.py").write_text(f"VALUE = 'changed {n}'\n")
                start = time.perf_counter()
                result = cli_json(["--provider", "local", "-o", "json", "sync", iid], big, self.env)
                samples.append(time.perf_counter() - start)
            again = self.ms(samples)
            self.row(
                "re-sync 1 changed file of 5,001",
                f"{again:.2f} s",
                f"first sync {full:.2f} s ({first['files_sent']} files)",
                f"{again / full:.2f}x",
                f"{result['files_sent']} file(s), {result['bytes_sent']} bytes moved; target 0.3 s "
                + ("met" if again <= 0.3 else f"missed by {again - 0.3:.2f} s"),
            )
        finally:
            subprocess.run(
                [RUNCTL, "--provider", "local", "terminate", iid, "--yes"], cwd=big, env=self.env, capture_output=True
            )

    def resources_200(self, tmp: Path) -> None:
        try:
            counted = lyceum_resources_list(tmp, self.env, 200)
        except Exception as exc:  # the Lyceum stand-in needs the test extras (fastapi, uvicorn, moto)
            self.row("resources list, 200 Lyceum instances", "not measured", "", "", f"{type(exc).__name__}: {exc}")
            return
        calls, took, listed = counted
        self.row(
            "resources list, 200 Lyceum instances",
            f"{calls} API call(s)",
            f"{listed} instances listed",
            "",
            f"{took:.2f} s wall (Lyceum stand-in on 127.0.0.1)",
        )

    def round_trips(self, tmp: Path) -> None:
        """Read from the counters the providers' stand-ins keep (issue 15.3): AWS's journal (its round-trip test
        prints the paths), RunPod's event log (``roundtrips.measure``); Slurm has no stand-in counter."""
        try:
            aws = aws_round_trips(self.env)
            for key, case in (("first_job", "accepted -> job started"), ("second_job_kept_instance", "2nd job, kept")):
                figure = aws[key]
                self.row(
                    f"aws: round trips, {case}",
                    f"{figure['distinct']} sequential",
                    f"{figure['calls']} calls",
                    "",
                    "repeated polls of one state counted once (AWS stand-in journal)",
                )
        except Exception as exc:  # moto and the stand-in come with the AWS plugin's test extras
            self.row("aws: round trips", "not measured", "", "", f"{type(exc).__name__}: {str(exc)[:120]}")
        try:
            sys.path.insert(0, str(REPO / "plugins" / "runpod" / "tests"))
            from roundtrips import measure

            paths = measure(tmp / "runpod-rt", RUNCTL, dict(self.env))
            for case, path in paths.items():
                polls = path.count("api:getPod")
                self.row(
                    f"runpod: round trips, {case}",
                    f"{len(path)} sequential",
                    f"{polls} of them boot polls",
                    "",
                    " ".join(path)[:90],
                )
        except Exception as exc:
            self.row("runpod: round trips", "not measured", "", "", f"{type(exc).__name__}: {str(exc)[:120]}")
        self.row(
            "slurm: round trips",
            "not measured",
            "",
            "",
            "no stand-in counter (a real slurmctld); by construction: train 2, sync 2, create 1 (its README)",
        )


# -------------------------------------------------------------------------------------------------- pieces


def target(name: str, value: float) -> str:
    limit = TARGETS[name]
    return f"target {limit:.0f} ms " + ("met" if value <= limit else f"missed by {value - limit:.0f} ms")


def installed_providers(env: dict[str, str], cwd: Path) -> list[str]:
    out = subprocess.run([RUNCTL, "-o", "json", "providers"], cwd=cwd, env=env, capture_output=True, text=True)
    try:
        return [p["name"] for p in json.loads(out.stdout)["providers"] if not str(p["status"]).startswith("error")]
    except (ValueError, KeyError):
        return ["local"]


def sdk_imports(cmd: list[str], cwd: Path, env: dict[str, str]) -> list[str]:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    found = set()
    for line in out.stderr.splitlines():
        if line.startswith("import time:"):
            name = line.rsplit("|", 1)[-1].strip()
            if name.split(".")[0] in CLOUD_SDKS:
                found.add(name.split(".")[0])
    return sorted(found)


def first_line_ms(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.time()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = float("nan")
    assert proc.stdout is not None
    for line in proc.stdout:
        if "FIRST" in line and seen != seen:
            seen = (time.time() - start) * 1000
    proc.wait()
    return seen


def cli_json(args: list[str], cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run([RUNCTL, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"runctl {' '.join(args)} failed: {out.stderr.strip()[-300:]}")
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def aws_round_trips(env: dict[str, str]) -> dict[str, Any]:
    """Run the AWS plugin's round-trip test (it drives runctl against the AWS stand-in) and read what it prints."""
    test = REPO / "plugins" / "aws" / "tests" / "test_aws_round_trips.py"
    out = subprocess.run(
        [PYTHON, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", str(test)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    marker = "AWS round trips:"
    if marker not in out.stdout:
        raise RuntimeError(f"the AWS round-trip test printed no figures (exit {out.returncode})")
    text = out.stdout[out.stdout.index(marker) + len(marker) :].lstrip()
    data, _end = json.JSONDecoder().raw_decode(text)
    return dict(data)


def lyceum_resources_list(tmp: Path, env: dict[str, str], count: int) -> tuple[int, float, int]:
    """``count`` Lyceum reservations recorded through runctl's own Python path, then ``runctl resources list``
    against the stand-in; returns (API calls the stand-in saw for the listing, seconds, instances listed)."""
    sys.path.insert(0, str(REPO / "plugins" / "lyceum" / "tests"))
    from lyceum_standin import API_KEY, StandIn

    standin = StandIn(
        api_key=API_KEY,
        work_dir=tmp / "ly-work",
        mount_dir=tmp / "ly-mnt",
        s3_endpoint="http://127.0.0.1:9",
        bucket="unused",
    )
    standin.start()
    try:
        project = tmp / "ly-project"
        project.mkdir()
        (project / ".runctl.toml").write_text(f'[providers.lyceum]\nbase_url = "{standin.url}"\n')
        lenv = {**env, "LYCEUM_API_KEY": API_KEY, "HOME": str(tmp / "ly-home")}
        code = (
            "import sys\n"
            "from runctl_core.cli.main import main\n"
            f"for _ in range({count}):\n"
            "    try:\n"
            "        main(['--provider', 'lyceum', '-o', 'id', '-q', 'create', '--instance-type', 'gpu.l40s'])\n"
            "    except SystemExit as exc:\n"
            "        assert not exc.code, exc.code\n"
        )
        made = subprocess.run([PYTHON, "-c", code], cwd=project, env=lenv, capture_output=True, text=True)
        if made.returncode != 0:
            raise RuntimeError(f"creating {count} reservations failed: {made.stderr.strip()[-300:]}")
        before = len(standin.requests)
        start = time.perf_counter()
        listed = cli_json(["--provider", "lyceum", "-o", "json", "resources", "list"], project, lenv)
        took = time.perf_counter() - start
        calls = len(standin.requests) - before
        rows = listed.get("resources", [])
        return calls, took, len(rows)
    finally:
        standin.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="runs per timed figure (median shown), e.g. --runs 7")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    parser.add_argument(
        "--only",
        metavar="NAMES",
        default="",
        help="comma-separated figures to measure (default: all): " + ",".join(FIGURES) + "; e.g. --only local,resync",
    )
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        project = tmp / "project"
        project.mkdir()
        (project / ".runctl.toml").write_text("[providers.local]\nuse_uv = false\n")
        bench = Bench(opts.runs, tmp)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(
            f"machine: {os.cpu_count()} cores, load {load:.1f}, python {sys.version.split()[0]}, "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; medians of {opts.runs}"
        )
        print(f"{'figure':<44} {'value':>14}  {'anchor':<30} {'ratio':>8}  note")
        bench.warm(project)
        wanted = {name.strip() for name in opts.only.split(",") if name.strip()} or set(FIGURES)
        unknown = wanted - set(FIGURES)
        if unknown:
            parser.error(f"unknown figure(s) {', '.join(sorted(unknown))}; choose from {', '.join(FIGURES)}")
        base = bench.startup(project)
        steps: dict[str, Callable[[], Any]] = {
            "local": lambda: bench.local_run(project),
            "dry-run": lambda: bench.dry_runs(project, base),
            "first-line": lambda: bench.first_line(project),
            "resync": lambda: bench.resync(tmp),
            "resources": lambda: bench.resources_200(tmp),
            "round-trips": lambda: bench.round_trips(tmp),
        }
        for name, step in steps.items():
            if name in wanted:
                step()
        if opts.json:
            opts.json.write_text(json.dumps({"load": load, "rows": bench.rows}, indent=1))


if __name__ == "__main__":
    main()
