#!/usr/bin/env python3
"""runctl's helper on an EC2 instance (stdlib only, Python >= 3.8). Sent by the AWS provider next to runner.py
and called by its SSM commands. The instance needs no AWS rights: it downloads through presigned GET URLs and
uploads through a presigned POST limited to the job's key prefix.

    agent.py sync --url URL --meta-url URL --dest DIR      unpack a project delta, delete removed files
    agent.py prepare --bundle-url URL --job-dir D          job env, upload policy, setup, resume checkpoints
    agent.py push --job-dir D [--checkpoint-dir C]         upload checkpoints, log and job record to S3
    agent.py read-log --job-dir D --offset N --max M       job record + log bytes from N (JSON, base64)
    agent.py ls --dir C                                    checkpoint files (JSON)
    agent.py spot-notice                                   exit 0 when IMDS announces a spot interruption
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
IMDS = os.environ.get("RUNCTL_IMDS_ENDPOINT", "http://169.254.169.254").rstrip("/")


def _get(url: str, timeout: float = 60) -> bytes:
    for attempt in range(5):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as reply:
                return reply.read()
        except urllib.error.HTTPError:
            raise
        except (urllib.error.URLError, OSError):
            if attempt == 4:
                raise
            time.sleep(0.5 * (2**attempt))
    return b""


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _unpack(data: bytes, dest: str) -> int:
    dest_real = os.path.realpath(dest)
    count = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for member in tar.getmembers():
            target = os.path.realpath(os.path.join(dest, member.name))
            if not member.isfile() or not target.startswith(dest_real + os.sep):
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            source = tar.extractfile(member)
            if source is None:
                continue
            tmp = target + ".runctl-tmp"
            with open(tmp, "wb") as fh:
                fh.write(source.read())
            os.chmod(tmp, member.mode & 0o777)
            os.replace(tmp, target)
            count += 1
    return count


def cmd_sync(opts: Any) -> int:
    os.makedirs(opts.dest, exist_ok=True)
    deleted = 0
    if opts.meta_url:
        meta = json.loads(_get(opts.meta_url).decode("utf-8"))
        dest_real = os.path.realpath(opts.dest)
        for rel in meta.get("delete", []):
            target = os.path.realpath(os.path.join(opts.dest, rel))
            if target.startswith(dest_real + os.sep) and os.path.isfile(target):
                os.unlink(target)
                deleted += 1
                parent = os.path.dirname(target)
                while parent != dest_real and parent.startswith(dest_real) and not os.listdir(parent):
                    os.rmdir(parent)
                    parent = os.path.dirname(parent)
        with open(os.path.join(opts.dest, ".runctl-manifest.json"), "w") as fh:
            json.dump(meta.get("manifest", {}), fh)
    unpacked = _unpack(_get(opts.url), opts.dest) if opts.url else 0
    print(json.dumps({"unpacked": unpacked, "deleted": deleted}))
    return 0


def cmd_prepare(opts: Any) -> int:
    if opts.bundle_url.startswith("data:"):  # given inline (no secrets in it): no download
        raw = base64.b64decode(opts.bundle_url.split(",", 1)[1])
    else:
        raw = _get(opts.bundle_url)
    bundle = json.loads(raw.decode("utf-8"))
    os.makedirs(opts.job_dir, exist_ok=True)
    _write_private(os.path.join(opts.job_dir, "env.json"), json.dumps(bundle.get("env", {})).encode())
    _write_private(os.path.join(opts.job_dir, "upload.json"), json.dumps(bundle.get("upload", {})).encode())
    if bundle.get("setup"):  # the job's setup shell lines, for the environment step (runner.py --setup-file)
        _write_private(os.path.join(opts.job_dir, "setup-commands.json"), json.dumps(bundle["setup"]).encode())
    if bundle.get("resume_url"):
        os.makedirs(os.path.join(opts.job_dir, "resume"), exist_ok=True)
        _unpack(_get(bundle["resume_url"]), os.path.join(opts.job_dir, "resume"))
    return 0


def _post(upload: dict[str, Any], key: str, data: bytes) -> None:
    boundary = uuid.uuid4().hex
    parts = []
    fields = dict(upload["fields"])
    fields["key"] = key
    for name, value in fields.items():
        parts.append((f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n').encode())
    parts.append(
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{os.path.basename(key)}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
    )
    body = b"".join(parts) + data + (f"\r\n--{boundary}--\r\n").encode()
    request = urllib.request.Request(
        upload["url"], data=body, method="POST", headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    for attempt in range(5):
        try:
            with urllib.request.urlopen(request, timeout=300) as reply:
                reply.read()
            return
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or attempt == 4:
                raise
        except (urllib.error.URLError, OSError):
            if attempt == 4:
                raise
        time.sleep(0.5 * (2**attempt))


def _files(directory: str) -> list[tuple[str, int, float, str]]:
    found = []
    for base, _dirs, names in os.walk(directory):
        for name in names:
            path = os.path.join(base, name)
            if name.endswith(".tmp") or name.endswith(".runctl-tmp"):
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue
            found.append((os.path.relpath(path, directory).replace(os.sep, "/"), st.st_size, st.st_mtime, path))
    return found


def cmd_push(opts: Any) -> int:
    with open(os.path.join(opts.job_dir, "upload.json")) as fh:
        upload = json.load(fh)
    prefix = upload["prefix"]
    checkpoint_dir = opts.checkpoint_dir or os.path.join(opts.job_dir, "checkpoints")
    files = sorted(_files(checkpoint_dir), key=lambda item: -item[2])  # newest first: a spot notice is short
    print(f"runctl: uploading {len(files)} checkpoint file(s) to S3", flush=True)
    failed = 0
    for rel, _size, _mtime, path in files:
        try:
            with open(path, "rb") as fh:
                _post(upload, prefix + "checkpoints/" + rel, fh.read())
        except Exception as exc:  # keep going: the other files are worth having
            failed += 1
            print(f"runctl: upload of {rel} failed: {type(exc).__name__}", flush=True)
    record = {}
    try:
        with open(os.path.join(opts.job_dir, "job.json")) as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        pass
    if os.environ.get("RUNCTL_JOB_STATE"):
        record["state"] = os.environ["RUNCTL_JOB_STATE"]
        record["ended_at"] = record.get("ended_at") or time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    if os.environ.get("RUNCTL_EXIT_CODE"):
        record["exit_code"] = int(os.environ["RUNCTL_EXIT_CODE"])
    try:
        with open(os.path.join(opts.job_dir, "log"), "rb") as fh:
            _post(upload, prefix + "log", fh.read())
    except OSError:
        pass
    if opts.final:
        _post(upload, prefix + "job.json", json.dumps(record).encode())
    return 1 if failed else 0


def cmd_read_log(opts: Any) -> int:
    sys.path.insert(0, HERE)
    import runner

    record = (
        runner.job_record(opts.job_dir) if os.path.isdir(opts.job_dir) else {"state": "lost", "message": "no such job"}
    )
    data = b""
    path = os.path.join(opts.job_dir, "log")
    try:
        with open(path, "rb") as fh:
            fh.seek(opts.offset)
            data = fh.read(opts.max)
    except OSError:
        pass
    size = record.get("log_size", 0)
    print(json.dumps({"record": record, "size": size, "data": base64.b64encode(data).decode("ascii")}))
    return 0


def cmd_ls(opts: Any) -> int:
    print(json.dumps([{"name": rel, "size": size, "mtime": mtime} for rel, size, mtime, _ in sorted(_files(opts.dir))]))
    return 0


def cmd_spot_notice(_opts: Any) -> int:
    try:
        token_request = urllib.request.Request(
            IMDS + "/latest/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}
        )
        with urllib.request.urlopen(token_request, timeout=2) as reply:
            token = reply.read().decode()
        notice = urllib.request.Request(
            IMDS + "/latest/meta-data/spot/instance-action", headers={"X-aws-ec2-metadata-token": token}
        )
        with urllib.request.urlopen(notice, timeout=2) as reply:
            body = reply.read()
        return 0 if body else 1
    except Exception:
        return 1  # 404 (no notice), or no IMDS: no interruption


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agent.py")
    sub = parser.add_subparsers(dest="cmd")
    p = sub.add_parser("sync")
    p.add_argument("--url", default="")
    p.add_argument("--meta-url", default="")
    p.add_argument("--dest", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--bundle-url", required=True)
    p.add_argument("--job-dir", required=True)
    p = sub.add_parser("push")
    p.add_argument("--job-dir", required=True)
    p.add_argument("--checkpoint-dir", default="")
    p.add_argument("--final", action="store_true")
    p = sub.add_parser("read-log")
    p.add_argument("--job-dir", required=True)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--max", type=int, default=12000)
    p = sub.add_parser("ls")
    p.add_argument("--dir", required=True)
    sub.add_parser("spot-notice")
    opts = parser.parse_args(argv)
    handlers = {
        "sync": cmd_sync,
        "prepare": cmd_prepare,
        "push": cmd_push,
        "read-log": cmd_read_log,
        "ls": cmd_ls,
        "spot-notice": cmd_spot_notice,
    }
    if opts.cmd not in handlers:
        parser.print_help()
        return 2
    return handlers[opts.cmd](opts)


if __name__ == "__main__":
    sys.exit(main())
