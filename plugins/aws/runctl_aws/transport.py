"""The SSM + S3 implementation of the core's :class:`runctl_core.remote.transport.Transport` for an EC2 instance.

Each operation is one ``AWS-RunShellScript`` command running a small Python program on the instance (python3 is
on every image runctl uses); bytes travel through S3 with presigned URLs, because SSM carries at most 24,000
characters of output and its command parameters are kept in the account's command history:

* ``run``: the argument vector and ``cwd`` go in the command; ``stdin`` and ``env`` go through short-lived S3
  objects fetched with presigned GETs, never into the command text: SSM keeps a command's parameters in the
  account's command history (SendCommand's ``Parameters``, readable with ``ssm:ListCommands``), and runctl's
  bundles carry job environment files whose values may be secrets. Output up to ~8 KiB comes back in SSM's own
  output, larger output through a presigned PUT;
* the instance deletes each staged object as soon as it has read it (a presigned DELETE sent with the command), so
  no round trip of the laptop's is spent on it; the laptop deletes only what the instance did not report deleted;
* a path or argument that starts with ``$HOME/`` (``remote_dir`` may) means the home directory of the user SSM
  runs commands as (root), expanded on the instance as a shell would; SSM's agent runs AWS-RunShellScript commands
  without ``HOME`` (its environment is listed in https://github.com/aws/amazon-ssm-agent/issues/427: PWD=/usr/bin,
  no HOME), so it is taken from the password database then, and set for the command;
* ``prestage(data)``: the same S3 upload made ahead of time (while the instance boots, see the provider's
  ``stage`` hook); a later ``run`` whose ``stdin`` is the same bytes fetches that object instead of uploading;
* ``put``: the bytes are put in S3 and fetched by the instance with a presigned GET, written to a temporary file,
  ``chmod``-ed and renamed into place (whole or not at all);
* ``get`` / ``read_range`` / ``walk``: answered through a presigned PUT (large) or SSM output (small);
* ``remove``: ``shutil.rmtree`` / ``unlink``.

Staging objects live under ``PREFIX/_staging/INSTANCE/transport/`` and are gone after each call (see above). Errors
follow the protocol: SSM refusing the instance -> NotFoundError (from the client), a command over its timeout ->
TransientError, a missing file -> FileNotFoundError. No retries here: one retry layer per call path.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shlex
import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from runctl_aws.client import AwsClient
from runctl_core.errors import ProviderError
from runctl_core.remote.transport import CommandResult, RemoteFile

# SendCommand's parameters count against the document's size quota: "The content of the document must not exceed 64KB.
# This quota also includes the content specified for input parameters at runtime" (SSM API reference, CreateDocument's
# Content; MaxDocumentSizeExceeded: "The size limit of a document is 64 KB"). AWS-RunShellScript's own content takes
# part of it (how much is not documented: ~1 KB today); runctl keeps 4,000 bytes for it and refuses larger commands
# before sending them, rather than let SSM refuse or cut them.
SSM_DOCUMENT_LIMIT = 64_000
COMMAND_LIMIT = SSM_DOCUMENT_LIMIT - 4_000  # bytes of the JSON-encoded ``commands`` + ``executionTimeout`` parameters
INLINE_OUTPUT = 8000  # bytes of stdout/stderr returned in SSM's output (base64 stays under its 24,000 characters)
EXIT_MISSING = 44  # the program's answer for a missing file
BLOBS = ("stdout", "stderr", "data", "files")
# what prestage() uploaded and no run() has used yet: (bucket, instance, sha256 of the bytes) -> S3 key. In memory:
# ``run`` stages and syncs in one process; an entry a crash leaves is an object terminate deletes with the prefix
_PRESTAGED: dict[tuple[str, str, str], str] = {}


@dataclass(frozen=True)
class Answer:
    """What the program on the instance answered: plain fields, and byte strings."""

    fields: dict[str, object]
    blobs: dict[str, bytes]

    def blob(self, name: str) -> bytes:
        return self.blobs.get(name, b"")


# One program for every operation: reads its request (JSON, zlib, base64 in argv), answers one JSON line on stdout.
PROGRAM = r"""
import base64, json, os, shutil, subprocess, sys, urllib.request, zlib
req = json.loads(zlib.decompress(base64.b64decode(sys.argv[1])))
HOME = os.environ.get("HOME") or os.path.expanduser("~")
deleted = []
def here(value):
    if isinstance(value, str) and (value == "$HOME" or value.startswith("$HOME/")):
        return HOME + value[5:]
    return value
def fetch(url, name=None):
    with urllib.request.urlopen(url, timeout=120) as r:
        data = r.read()
    if name and req.get(name + "_delete"):
        try:
            urllib.request.urlopen(urllib.request.Request(req[name + "_delete"], method="DELETE"), timeout=30).read()
            deleted.append(name)
        except Exception:
            pass
    return data
def answer(doc, blobs):
    big = sum(len(b) for b in blobs.values()) > req["inline"]
    if big and req.get("put_url"):
        body = json.dumps({k: base64.b64encode(v).decode() for k, v in blobs.items()}).encode()
        headers = {"Content-Type": "application/octet-stream"}
        put = urllib.request.Request(req["put_url"], data=body, method="PUT", headers=headers)
        urllib.request.urlopen(put, timeout=300).read()
        doc["via_s3"] = True
    else:
        doc.update({k: base64.b64encode(v).decode() for k, v in blobs.items()})
    doc["deleted"] = deleted
    print(json.dumps(doc))
op = req["op"]
try:
    if op == "run":
        env = dict(os.environ, HOME=HOME)
        if req.get("env_url"):
            env.update(json.loads(fetch(req["env_url"], "env")))
        data = b""
        if req.get("stdin_url"):
            data = fetch(req["stdin_url"], "stdin")
        argv = [here(a) for a in req["argv"]]
        try:
            p = subprocess.run(
                argv, input=data, capture_output=True, cwd=here(req.get("cwd")), env=env, timeout=req.get("timeout")
            )
            answer({"code": p.returncode}, {"stdout": p.stdout, "stderr": p.stderr})
        except FileNotFoundError:
            answer({"code": 127}, {"stdout": b"", "stderr": (req["argv"][0] + ": command not found\n").encode()})
        except subprocess.TimeoutExpired:
            answer({"code": -1, "timeout": True}, {"stdout": b"", "stderr": b""})
    elif op == "put":
        target = here(req["path"])
        os.makedirs(os.path.dirname(target) or "/", exist_ok=True)
        tmp = target + ".tmp.runctl"
        with open(tmp, "wb") as fh:
            fh.write(fetch(req["url"], "url"))
        os.chmod(tmp, req["mode"])
        os.replace(tmp, target)
        answer({}, {})
    elif op == "read":
        with open(here(req["path"]), "rb") as fh:
            fh.seek(max(0, req["offset"]))
            size = os.fstat(fh.fileno()).st_size
            answer({}, {"data": fh.read(max(0, min(req["length"], size)))})
    elif op == "walk":
        found, top = [], here(req["path"])
        if os.path.isdir(top):
            for base, dirs, names in os.walk(top):
                dirs.sort()
                for name in names:
                    full = os.path.join(base, name)
                    if os.path.islink(full) or not os.path.isfile(full):
                        continue
                    st = os.stat(full)
                    found.append([os.path.relpath(full, top), st.st_size, st.st_mtime])
        answer({}, {"files": json.dumps(sorted(found)).encode()})
    elif op == "remove":
        target = here(req["path"])
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target, ignore_errors=True)
        elif os.path.lexists(target):
            os.unlink(target)
        answer({}, {})
except FileNotFoundError:
    sys.exit(44)
"""


def _comment(request: dict[str, object]) -> str:
    """The SSM command's comment (shown in its history; SendCommand allows 100 characters): the operation and the
    plain words of a command line, e.g. ``runctl run: python3 launch`` (never paths, ids or values)."""
    words = [str(request["op"])]
    argv = request.get("argv")
    if isinstance(argv, list):
        plain = [a for a in argv if isinstance(a, str) and _WORD.fullmatch(a)]
        words[0] += ":"
        words += plain[:4]
    return "runctl " + " ".join(words)[:90]


_WORD = re.compile(r"[a-z][a-z0-9]*(-[a-z]+)*")


def command_size(script: str) -> int:
    """Bytes SendCommand's parameters take for ``script`` (as :meth:`AwsClient.send_command` sends it)."""
    return len(json.dumps({"commands": [script], "executionTimeout": ["86400"]}).encode())


def check_command_size(script: str, op: str, instance_id: str) -> None:
    """Refuse, before anything is sent, a command SSM's document size quota would not take (see COMMAND_LIMIT)."""
    size = command_size(script)
    if size > COMMAND_LIMIT:
        raise ProviderError(
            f"the SSM command for {op} on {instance_id} would be {size:,} bytes; SSM takes at most "
            f"{SSM_DOCUMENT_LIMIT:,} bytes of document and parameters (runctl's limit: {COMMAND_LIMIT:,}); "
            "nothing was sent",
            "this is a runctl bug (what a command carries goes through S3): report it; shorten long command-line "
            "arguments of the job meanwhile",
        )


class SsmTransport:
    """A :class:`Transport` to one EC2 instance through SSM Run Command and an S3 staging prefix."""

    def __init__(self, client: AwsClient, instance_id: str, bucket: str, staging: str, timeout: float = 600.0):
        self.client = client
        self.instance_id = instance_id
        self.bucket = bucket
        self.staging = staging.rstrip("/") + "/transport/"
        self.timeout = timeout

    # ------------------------------------------------------------------------------------------ plumbing

    def _key(self, what: str) -> str:
        return f"{self.staging}{uuid.uuid4().hex[:12]}-{what}"

    def _call(
        self, request: dict[str, object], timeout: float | None = None, staged: dict[str, str] | None = None
    ) -> Answer:
        """Run PROGRAM with ``request`` on the instance and return its answer. ``staged`` (request field -> S3 key)
        are the objects the command reads: the instance deletes them after reading; whatever it did not report
        deleted (it failed, or never ran) is deleted from here."""
        staged = dict(staged or {})
        try:
            return self._call_once(request, timeout, staged)
        finally:
            for key in staged.values():
                self.client.delete_object(self.bucket, key)

    def _call_once(self, request: dict[str, object], timeout: float | None, staged: dict[str, str]) -> Answer:
        answer_key = self._key("answer")
        request = {**request, "inline": INLINE_OUTPUT, "put_url": self.client.presign_put(self.bucket, answer_key)}
        for name, key in staged.items():
            request[f"{name}_delete"] = self.client.presign_delete(self.bucket, key)
        # compressed: a bundled command carries bootstrap.py's source in its argv (~11 KB as text, ~4 KB so)
        encoded = base64.b64encode(zlib.compress(json.dumps(request).encode(), 9)).decode()
        script = f"python3 - {shlex.quote(encoded)} <<'RUNCTL_TRANSPORT'\n{PROGRAM}\nRUNCTL_TRANSPORT\n"
        check_command_size(script, str(request["op"]), self.instance_id)
        limit = (timeout or self.timeout) + 30
        result = self.client.run_command(self.instance_id, script, timeout=limit, comment=_comment(request))
        if result.exit_code == EXIT_MISSING:
            raise FileNotFoundError(f"{self.instance_id}:{request.get('path')}")
        lines = result.stdout.strip().splitlines()
        if not result.ok or not lines:
            detail = self.client.scrub((result.stderr or result.stdout).strip()[-500:])
            raise ProviderError(
                f"{request['op']} on {self.instance_id} failed (SSM status {result.status}, exit {result.exit_code})"
                f": {detail}",
                "check that python3 runs on the instance; see the SSM command history",
            )
        fields: dict[str, object] = json.loads(lines[-1])
        reported = fields.pop("deleted", [])
        for name in reported if isinstance(reported, list) else []:
            staged.pop(str(name), None)
        encoded_blobs = {k: str(fields.pop(k)) for k in BLOBS if k in fields}
        if fields.pop("via_s3", False):
            raw = self.client.get_bytes(self.bucket, answer_key) or b"{}"
            self.client.delete_object(self.bucket, answer_key)
            encoded_blobs = {str(k): str(v) for k, v in json.loads(raw).items()}
        return Answer(fields, {k: base64.b64decode(v) for k, v in encoded_blobs.items()})

    def _staged(self, data: bytes, what: str) -> tuple[str, str]:
        key = self._key(what)
        self.client.put_bytes(self.bucket, key, data)
        return key, self.client.presign_get(self.bucket, key)

    def _stage_failed(self, keys: dict[str, str]) -> None:
        for key in keys.values():
            self.client.delete_object(self.bucket, key)

    # ------------------------------------------------------------------------------------------ Transport

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        stdin: bytes | None = None,
    ) -> CommandResult:
        staged: dict[str, str] = {}
        request: dict[str, object] = {"op": "run", "argv": list(argv), "cwd": cwd, "timeout": timeout}
        try:
            if env:  # through S3, never in the command text (SSM keeps command parameters in its history)
                staged["env"], request["env_url"] = self._staged(json.dumps(dict(env)).encode(), "env")
            if stdin:  # through S3 too: a bundle may hold a job's env file
                prestaged = _PRESTAGED.pop(self._prestage_id(stdin), None)
                if prestaged is not None:
                    staged["stdin"], request["stdin_url"] = prestaged, self.client.presign_get(self.bucket, prestaged)
                else:
                    staged["stdin"], request["stdin_url"] = self._staged(stdin, "stdin")
        except BaseException:
            self._stage_failed(staged)
            raise
        answer = self._call(request, timeout, staged)
        if answer.fields.get("timeout"):
            from runctl_core.errors import TransientError

            raise TransientError(
                f"{Path(argv[0]).name} did not finish within {timeout:g}s on {self.instance_id}",
                "the machine may be overloaded; try again",
            )
        code = answer.fields.get("code", -1)
        return CommandResult(
            exit_code=code if isinstance(code, int) else -1, stdout=answer.blob("stdout"), stderr=answer.blob("stderr")
        )

    def _prestage_id(self, data: bytes) -> tuple[str, str, str]:
        return (self.bucket, self.instance_id, hashlib.sha256(data).hexdigest())

    def prestage(self, data: bytes) -> None:
        """Upload ``data`` now, for a later ``run(..., stdin=data)`` of the same bytes (which then makes no upload
        of its own). Needs only S3, not the instance: the provider calls it while the instance boots."""
        ident = self._prestage_id(data)
        if ident not in _PRESTAGED:
            key = self._key("stdin")
            self.client.put_bytes(self.bucket, key, data)
            _PRESTAGED[ident] = key

    def put(self, source: bytes | Path, path: str, *, mode: int = 0o644) -> None:
        data = source if isinstance(source, bytes) else source.read_bytes()
        key, url = self._staged(data, "put")
        self._call({"op": "put", "path": path, "url": url, "mode": mode}, staged={"url": key})

    def get(self, path: str, dest: Path) -> None:
        dest.write_bytes(self.read_range(path, 0, 1 << 62))

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        return self._call({"op": "read", "path": path, "offset": offset, "length": length}).blob("data")

    def walk(self, path: str) -> list[RemoteFile]:
        rows = json.loads(self._call({"op": "walk", "path": path}).blob("files") or b"[]")
        return [RemoteFile(str(name), int(size), float(mtime)) for name, size, mtime in rows]

    def remove(self, path: str) -> None:
        self._call({"op": "remove", "path": path})
