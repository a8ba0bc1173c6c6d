"""The remote-job layer's shared pieces: tags precedence, job-record mapping, atomic JSON, UTF-8-safe log chunks."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from runctl_core.models import InstanceSpec, JobState
from runctl_core.remote.records import (
    decode_log_chunk,
    job_status_from_record,
    read_json,
    runctl_tags,
    write_json_atomic,
)
from runctl_core.remote.transport import LocalTransport, Transport


def test_runctl_tags_cannot_be_spoofed_by_extra_tags() -> None:
    spec = InstanceSpec(
        intent_id="int-1", owner="me", job_id="job-1", tags={"runctl:owner": "evil", "team": "ml", "runctl:x": "y"}
    )
    tags = runctl_tags(spec, datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=timezone.utc))
    assert tags == {
        "team": "ml",
        "runctl:x": "y",
        "runctl:owner": "me",
        "runctl:intent": "int-1",
        "runctl:created": "2026-01-02T03:04:05+00:00",
        "runctl:job": "job-1",
    }
    assert "runctl:job" not in runctl_tags(InstanceSpec(intent_id="i", owner="me"))


def test_job_record_mapping() -> None:
    status = job_status_from_record(
        "job-1", {"state": "failed", "exit_code": 3, "started_at": "2026-01-01T00:00:00+00:00", "message": "m"}
    )
    assert status.state is JobState.FAILED and status.exit_code == 3 and status.message == "m"
    assert status.started_at is not None and status.started_at.tzinfo is not None
    assert job_status_from_record("job-1", {"state": "weird"}).state is JobState.LOST
    assert job_status_from_record("job-1", {}).state is JobState.LOST


def test_atomic_json(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b.json"
    write_json_atomic(path, {"x": 1})
    assert read_json(path) == {"x": 1}
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    path.write_text("{half")
    assert read_json(path, default={}) == {}
    assert not [p for p in path.parent.iterdir() if p.name != "b.json"]


def test_log_chunk_never_splits_a_character_and_always_progresses() -> None:
    euro = "€".encode()  # 3 bytes
    text, used = decode_log_chunk(b"ab" + euro[:2], final=False)
    assert (text, used) == ("ab", 2)  # the half character waits for the next read
    text, used = decode_log_chunk(euro + b"c", final=False)
    assert (text, used) == ("€c", 4)
    # one invalid byte at the start, then more text: replaced and consumed (this stalled readers before)
    text, used = decode_log_chunk(b"\xffhello", final=False)
    assert (text, used) == ("\ufffdhello", 6)
    # a lone continuation byte at the end is invalid, not incomplete: consumed too
    text, used = decode_log_chunk(b"x\x80", final=False)
    assert used == 2
    # the end of a finished log: an incomplete tail is replaced, never held forever
    text, used = decode_log_chunk(b"x" + euro[:1], final=True)
    assert (text, used) == ("x\ufffd", 2)


def test_local_transport_is_a_transport(tmp_path: Path) -> None:
    t = LocalTransport()
    assert isinstance(t, Transport)
    target = str(tmp_path / "d" / "f.bin")
    t.put(b"0123456789", target, mode=0o600)
    assert oct(os.stat(target).st_mode & 0o777) == oct(0o600)
    assert t.read_range(target, 3, 4) == b"3456" and t.read_range(target, 20, 4) == b""
    (tmp_path / "d" / "sub").mkdir()
    t.put(tmp_path / "d" / "f.bin", str(tmp_path / "d" / "sub" / "g.bin"))
    assert [f.path for f in t.walk(str(tmp_path / "d"))] == ["f.bin", "sub/g.bin"]
    assert t.walk(str(tmp_path / "missing")) == []
    result = t.run(["sh", "-c", 'echo "$X"; pwd; exit 3'], env={"X": "hi"}, cwd=str(tmp_path))
    assert result.exit_code == 3 and result.text.split() == ["hi", str(tmp_path)]
    assert t.run(["definitely-not-a-command-xyz"]).exit_code == 127
    t.get(target, tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == b"0123456789"
    t.remove(str(tmp_path / "d"))
    t.remove(str(tmp_path / "d"))
    assert not (tmp_path / "d").exists()


def test_environment_step_reads_what_the_job_declares(tmp_path: Path) -> None:
    from runctl_core.remote import envsetup

    (tmp_path / "s.py").write_text('# /// script\n# dependencies = ["numpy>=1", "six"]\n# ///\nprint(1)\n')
    (tmp_path / "plain.py").write_text("print(1)\n")
    assert envsetup.declared(str(tmp_path), "s.py")[0::2] == ("pep723", ["numpy>=1", "six"])
    assert envsetup.declared(str(tmp_path), "plain.py")[0] == "none"
    (tmp_path / "pyproject.toml").write_text("[tool.ruff]\nline-length = 100\n")  # tool settings only
    assert envsetup.declared(str(tmp_path), "plain.py")[0] == "none"
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "0"\n')
    assert envsetup.declared(str(tmp_path), "plain.py")[0] == "pyproject"
    (tmp_path / "requirements.txt").write_text("six\n")
    assert envsetup.declared(str(tmp_path), "plain.py")[0] == "requirements"
    assert envsetup.declared(str(tmp_path), "s.py")[0] == "pep723"  # the header wins
    # Pythons without tomllib read the header with a small parser
    assert envsetup._mini_toml('requires-python = ">=3.9"\ndependencies = [\n  "a",\n  "b",\n]\n') == {
        "requires-python": ">=3.9",
        "dependencies": ["a", "b"],
    }
