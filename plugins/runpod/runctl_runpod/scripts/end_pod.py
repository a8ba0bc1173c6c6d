"""Run on a RunPod pod by runctl: end this pod through RunPod's API (terminate), optionally after a delay.

    python3 end_pod.py --pod ID --api rest|graphql --url https://api.runpod.io [--after S] [--env-file F ...]

Non-interactive SSH sessions on RunPod do not have the container's environment: RunPod's images write the
RUNPOD_* variables (RUNPOD_POD_ID, the pod-scoped RUNPOD_API_KEY) to /etc/rp_environment and source it only
from ~/.bashrc (runpod/containers start.sh, export_env_vars). So the pod id is passed explicitly and the key
is read from the environment, else from the given files (``export K="v"`` lines, or NUL-separated
/proc/1/environ). Falls back to ``runpodctl remove pod ID`` with that key. Exit 1 when nothing worked.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any


def find_key(files: list[str]) -> str | None:
    if os.environ.get("RUNPOD_API_KEY"):
        return os.environ["RUNPOD_API_KEY"]
    for path in files:
        path = os.path.join(os.path.expanduser("~"), path)  # relative: below the login's home
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        for entry in data.split(b"\0") if b"\0" in data else data.splitlines():
            line = entry.decode("utf-8", "replace").strip()
            if line.startswith("export "):
                line = line[7:]
            name, sep, value = line.partition("=")
            if sep and name.strip() == "RUNPOD_API_KEY" and value.strip():
                return value.strip().strip("\"'")
    return None


def end(opts: Any, key: str) -> bool:
    headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
    if opts.api == "rest":
        request = urllib.request.Request(opts.url + "/v2/pods/" + opts.pod, method="DELETE", headers=headers)
    else:
        query = "mutation { podTerminate(input: {podId: " + json.dumps(opts.pod) + "}) }"
        body = json.dumps({"query": query}).encode()
        request = urllib.request.Request(opts.url + "/graphql", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read() or b"{}") if opts.api == "graphql" else {}
        return not (isinstance(answer, dict) and answer.get("errors"))
    except urllib.error.HTTPError as exc:
        return exc.code == 404  # already gone
    except (OSError, ValueError):
        return False


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pod", required=True)
    parser.add_argument("--api", choices=("rest", "graphql"), default="rest")
    parser.add_argument("--url", default="https://api.runpod.io")
    parser.add_argument("--after", type=float, default=0.0)
    parser.add_argument("--env-file", action="append", default=[])
    opts = parser.parse_args()
    if opts.after > 0:
        time.sleep(opts.after)
    key = find_key(opts.env_file)
    if not key:
        print("end_pod: no RUNPOD_API_KEY in the environment or " + ", ".join(opts.env_file), file=sys.stderr)
        return 1
    for attempt in range(5):
        if end(opts, key):
            print("end_pod: pod " + opts.pod + " terminated")
            return 0
        time.sleep(2**attempt)
    if shutil.which("runpodctl"):
        env = dict(os.environ, RUNPOD_API_KEY=key)
        if subprocess.run(["runpodctl", "remove", "pod", opts.pod], env=env).returncode == 0:
            return 0
    print("end_pod: could not terminate pod " + opts.pod, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
