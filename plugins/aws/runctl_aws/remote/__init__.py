"""Files that run on the EC2 instance: runctl's job runner (from runctl_core) and the AWS agent helper."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

from runctl_core.remote import runner_source

AGENT_PATH = Path(__file__).with_name("agent.py")


def tools_tarball() -> tuple[bytes, str]:
    """A deterministic gzipped tar of runner.py and agent.py, and a short hash of its content."""
    files = {"runner.py": runner_source().encode("utf-8"), "agent.py": AGENT_PATH.read_bytes()}
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name] + b"\0")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mode = 0o755
            info.mtime = 0
            tar.addfile(info, io.BytesIO(files[name]))
    return buffer.getvalue(), digest.hexdigest()[:16]
