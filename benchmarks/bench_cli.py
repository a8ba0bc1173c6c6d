"""Start-up and overhead figures (printed, never asserted).

    .venv/bin/python benchmarks/bench_cli.py [--runs N]

1. `runctl --help` wall time against `python -c pass` (target: <= 100 ms).
2. `runctl --provider local run examples/train.py` against `python examples/train.py` (target: <= 150 ms
   overhead), with the same interpreter and uv off, so the difference is runctl alone; then with uv on.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNCTL = str(Path(sys.executable).with_name("runctl"))


def timed(cmd: list[str], runs: int, env: dict[str, str], cwd: Path) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def line(name: str, samples: list[float]) -> str:
    return (f"{name:<48} median {statistics.median(samples):7.1f} ms   min {min(samples):7.1f} ms   "
            f"max {max(samples):7.1f} ms   (n={len(samples)})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        (project / "examples").mkdir(parents=True)
        (project / "examples" / "train.py").write_text((REPO / "examples" / "train.py").read_text())
        env = {**os.environ, "RUNCTL_HOME": str(Path(tmp) / "home"), "XDG_CONFIG_HOME": str(Path(tmp) / "cfg")}
        env.pop("RUNCTL_CONFIG", None)
        print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
        base = timed([sys.executable, "-c", "pass"], opts.runs, env, project)
        helped = timed([RUNCTL, "--help"], opts.runs, env, project)
        print(line("python -c pass", base))
        print(line("runctl --help", helped))
        startup = statistics.median(helped) - statistics.median(base)
        print(f"{'runctl --help minus interpreter start':<48} {startup:7.1f} ms")

        args = ["examples/train.py", "--epochs", "1"]
        direct = timed([sys.executable, *args], opts.runs, env, project)
        (project / ".runctl.toml").write_text("[providers.local]\nuse_uv = false\n")
        via = timed([RUNCTL, "--provider", "local", "run", args[0], "--", *args[1:]], opts.runs, env, project)
        print(line("python examples/train.py --epochs 1", direct))
        print(line("runctl run examples/train.py (python)", via))
        overhead = statistics.median(via) - statistics.median(direct)
        print(f"{'local run overhead (median difference)':<48} {overhead:7.1f} ms")
        (project / ".runctl.toml").write_text("[providers.local]\nuse_uv = true\n")
        uv = timed([RUNCTL, "--provider", "local", "run", args[0], "--", *args[1:]], opts.runs, env, project)
        print(line("runctl run examples/train.py (uv run)", uv))


if __name__ == "__main__":
    main()
