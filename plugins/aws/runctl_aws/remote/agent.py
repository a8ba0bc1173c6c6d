#!/usr/bin/env python3
"""runctl's AWS helper on an EC2 instance (stdlib only, Python >= 3.8), installed by the core's remote-job layer
beside runner.py (``ROOT/bin``) and run by the job's supervisor. The instance needs no AWS rights: it uploads through
a presigned POST limited to the job's key prefix, given on the command line (base64 JSON: url, fields, prefix).

    agent.py push --job-dir D --upload B64 [--final]   upload checkpoints, log (and with --final the job record)
    agent.py spot-notice                               exit 0 when IMDS announces a spot interruption
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

IMDS = os.environ.get("RUNCTL_IMDS_ENDPOINT", "http://169.254.169.254").rstrip("/")


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
    upload = json.loads(base64.b64decode(opts.upload))
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
    p = sub.add_parser("push")
    p.add_argument("--job-dir", required=True)
    p.add_argument("--checkpoint-dir", default="")
    p.add_argument("--upload", required=True, help="the presigned POST, base64 JSON")
    p.add_argument("--final", action="store_true")
    sub.add_parser("spot-notice")
    opts = parser.parse_args(argv)
    handlers = {"push": cmd_push, "spot-notice": cmd_spot_notice}
    if opts.cmd not in handlers:
        parser.print_help()
        return 2
    return handlers[opts.cmd](opts)


if __name__ == "__main__":
    sys.exit(main())
