"""Files that run on the EC2 instance: runctl's job tools from runctl_core (runner.py; envsetup.py, the environment
step the runner runs before the script; ranks.py) and the AWS agent helper."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

from runctl_core.remote.jobs import TOOLS

AGENT_PATH = Path(__file__).with_name("agent.py")


def tools_tarball() -> tuple[bytes, str]:
    """A deterministic gzipped tar of the core's job tools and agent.py, and a short hash of its content."""
    files = {path.name: path.read_bytes() for path in TOOLS}
    files["agent.py"] = AGENT_PATH.read_bytes()
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
