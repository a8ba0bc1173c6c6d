"""The project as an execution request: text files in ``import_files`` (a JSON string, as Lyceum's CLI sends them),
binary files base64-encoded in one extra import file, the bootstrap as ``code``, dependencies as
``requirements_content``. Refuses projects over the request size limit, saying what to do."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runctl_core.errors import UsageError
from runctl_lyceum.remote import bootstrap_source

BOOTSTRAP_NAME = "runctl_bootstrap.py"
BLOBS_FILE = ".runctl/blobs.json"
# Where Lyceum writes ``import_files`` is not documented, so the bootstrap finds the project by this file (which
# names the job), not by its own ``__file__`` or the working directory alone.
MARKER_FILE = ".runctl/project.json"
RESERVED = (BOOTSTRAP_NAME, BLOBS_FILE, MARKER_FILE)
# The bootstrap's exit code when checkpoints cannot leave the execution (no storage mount): the job fails loudly.
NO_STORAGE_RC = 219
_PEP723 = re.compile(r"(?m)^# /// script\s*$\n(?P<body>(^#(| .*)$\n)+?)^# ///\s*$")


@dataclass
class Bundle:
    """The files of a project ready to go into a request."""

    text: dict[str, str]
    binary: dict[str, str]  # path -> base64
    modes: dict[str, int]  # executable files only

    def blobs_json(self) -> str:
        return json.dumps(self.binary, sort_keys=True)

    def import_files(self) -> str:
        files = dict(self.text)
        files[MARKER_FILE] = marker("0" * 32)
        if self.binary:
            files[BLOBS_FILE] = self.blobs_json()
        return json.dumps(files, sort_keys=True)

    def sizes(self) -> list[tuple[int, str]]:
        """(bytes in the request, path), largest first."""
        sized = [(len(json.dumps(v)), k) for k, v in self.text.items()]
        sized += [(len(v), k) for k, v in self.binary.items()]
        return sorted(sized, reverse=True)


def marker(job_id: str) -> str:
    """The marker file's content: the job it belongs to (a project left by another job does not match)."""
    return json.dumps({"runctl": "lyceum-project", "job_id": job_id})


def bundle_files(root: Path, paths: list[tuple[str, int]]) -> Bundle:
    """Read ``paths`` ((relative path, mode) pairs) under ``root`` into a bundle."""
    text: dict[str, str] = {}
    binary: dict[str, str] = {}
    modes: dict[str, int] = {}
    for rel, mode in paths:
        if rel in RESERVED:
            raise UsageError(
                f"the project has a file named {rel}, which runctl-lyceum needs for itself",
                "rename it, or add it to .runctlignore",
            )
        data = (root / rel).read_bytes()
        try:
            text[rel] = data.decode("utf-8")
        except UnicodeDecodeError:
            binary[rel] = base64.b64encode(data).decode("ascii")
        if mode & 0o111:
            modes[rel] = mode & 0o777
    return Bundle(text=text, binary=binary, modes=modes)


def check_size(bundle: Bundle, limit: int) -> int:
    """Bytes the files add to a request; UsageError past ``limit`` naming the biggest files and what to do."""
    size = len(bundle.import_files().encode("utf-8")) + len(bootstrap_source()) + 4096
    if size > limit:
        biggest = ", ".join(f"{path} ({n / 2**20:.1f} MiB)" for n, path in bundle.sizes()[:5])
        raise UsageError(
            f"the project is too large for a Lyceum execution request: {size / 2**20:.1f} MiB encoded, the limit is "
            f"{limit / 2**20:.1f} MiB (largest: {biggest})",
            "list data, checkpoints and build output in .runctlignore; upload large inputs once to Lyceum storage "
            "(`lyceum storage upload DIR -r`) and read them from the storage mount (/mnt/s3) in the script",
        )
    return size


def requirements_for(root: Path, script: str, setting: str) -> str | None:
    """``requirements_content``: the script's PEP 723 dependencies plus requirements.txt (``auto``), a named file,
    or nothing (``none``)."""
    if setting == "none":
        return None
    lines: list[str] = []
    if setting != "auto":
        path = root / setting
        if not path.is_file():
            raise UsageError(
                f"requirements file {setting} (setting providers.lyceum.requirements) is not in the project",
                "fix the setting, or set it to 'auto' or 'none'",
            )
        lines = _requirement_lines(path.read_text(encoding="utf-8"))
    else:
        script_path = root / script
        if script_path.is_file():
            lines += pep723_dependencies(script_path.read_text(encoding="utf-8", errors="replace"))
        req = root / "requirements.txt"
        if req.is_file():
            lines += _requirement_lines(req.read_text(encoding="utf-8"))
    unique = list(dict.fromkeys(lines))
    return "\n".join(unique) if unique else None


def _requirement_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith(("#", "-"))]


def pep723_dependencies(source: str) -> list[str]:
    match = _PEP723.search(source)
    if not match:
        return []
    body = "\n".join(line[2:] if line.startswith("# ") else line[1:] for line in match.group("body").splitlines())
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        deps = tomllib.loads(body).get("dependencies", [])
    except ValueError:
        return []
    return [d for d in deps if isinstance(d, str)]


PLACEHOLDER = "RUNCTL_BOOTSTRAP: dict[str, Any] | None = None"


def bootstrap_code(config: dict[str, Any]) -> str:
    """The execution's ``code``: the bootstrap, with its settings line filled in."""
    source = bootstrap_source()
    lines = source.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line.startswith(PLACEHOLDER):
            literal = repr(json.dumps(config, sort_keys=True))
            lines[index] = f"RUNCTL_BOOTSTRAP: dict[str, Any] | None = __import__('json').loads({literal})\n"
            return "".join(lines)
    raise RuntimeError("runctl-lyceum's bootstrap has no settings line")  # pragma: no cover
