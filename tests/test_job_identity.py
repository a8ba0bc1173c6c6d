"""A healthy job is never recorded lost because the check ran before the kernel published its supervisor's
command line (long argument lists make that window wide): a terminal state only from a conclusive check."""

from __future__ import annotations

from pathlib import Path

COUNT_ARGS = "import sys\nprint('got', len(sys.argv) - 1, 'arguments', flush=True)\n"


def test_job_with_a_long_argument_list_is_not_lost(cli, project: Path) -> None:
    (project / "count.py").write_text(COUNT_ARGS)
    args = [f"a{i:07d}" for i in range(60_000)]
    for _ in range(3):
        result = cli("-o", "json", "run", "count.py", "--", *args, timeout=240)
        assert result.code == 0, result.err[-2000:]
        doc = result.json()
        assert doc["job"]["state"] == "succeeded", doc["job"]
