# runctl's bootstrap for a Lyceum execution (stdlib only, Python >= 3.8).
#
# runctl sends this file as the execution's ``code``, with the RUNCTL_BOOTSTRAP line below replaced by a dict (the
# job's script, args, env, storage paths). The project's files arrive as the request's ``import_files`` (binary
# files base64-encoded in .runctl/blobs.json), found by the marker file .runctl/project.json that names the job
# (where Lyceum writes import_files is undocumented), or, for Docker image executions, inline in
# RUNCTL_BOOTSTRAP["inline_files"] (image executions take no requirements_content: the bootstrap installs the
# job's requirements with the image's pip). It then:
#
# * sets RUNCTL_JOB_ID and RUNCTL_CHECKPOINT_DIR (a local directory) and the job's env;
# * copies what storage already holds for this job (resume files uploaded by runctl) into the checkpoint dir;
# * runs the script with this Python, in its own process group, output to this execution's output;
# * every ``sync_interval`` seconds and when the script ends, mirrors the checkpoint dir into the storage bucket
#   as it is mounted in the execution (``storage_mount``/``storage_path``): whole files copied, deletions
#   repeated, nothing renamed on the mount (object-storage mounts may not support rename);
# * SIGTERM/SIGINT (a graceful stop) is passed to the script, which gets ``grace`` seconds before SIGKILL;
# * exits with the script's exit code (128+N when it died of signal N), or with ``no_storage_rc`` when storage is not
#   mounted and the script wrote checkpoints (they cannot leave the execution: the job must not look successful).

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

RUNCTL_BOOTSTRAP: dict[str, Any] | None = None  # runctl replaces this line with the job's settings
CONFIG: dict[str, Any] = RUNCTL_BOOTSTRAP or {}


def log(message: str) -> None:
    sys.stdout.write(f"[runctl] {message}\n")
    sys.stdout.flush()


def _is_project(candidate: str, cfg: dict[str, Any]) -> bool:
    path = os.path.join(candidate, cfg.get("marker_file") or ".runctl/project.json")
    try:
        with open(path) as fh:
            found = json.load(fh)
    except (OSError, ValueError):
        return False
    return isinstance(found, dict) and found.get("job_id") == cfg.get("job_id")


def _search_roots() -> list[str]:
    roots = [os.getcwd(), os.path.expanduser("~"), tempfile.gettempdir(), "/workspace", "/app", "/code", "/home"]
    seen: list[str] = []
    for root in roots:
        if root and os.path.isdir(root) and root not in seen:
            seen.append(root)
    return seen


def project_root(cfg: dict[str, Any]) -> str | None:
    """Where the project's files are. Lyceum does not document where ``import_files`` land, so this looks for the
    marker file naming this job: in the working directory, then up to three levels below it and below a few usual
    places (never by this file's own location, which the service need not give)."""
    if cfg.get("inline_files") is not None:
        root = tempfile.mkdtemp(prefix="runctl-project-")
        for rel, data in cfg["inline_files"].items():
            target = os.path.join(root, rel)
            os.makedirs(os.path.dirname(target) or root, exist_ok=True)
            with open(target, "wb") as fh:
                fh.write(base64.b64decode(data))
        return root
    mount = os.path.abspath(cfg.get("storage_mount") or "/nonexistent")
    for top in _search_roots():
        base_depth = top.rstrip(os.sep).count(os.sep)
        for base, dirs, _names in os.walk(top):
            if _is_project(base, cfg):
                return base
            if base.count(os.sep) - base_depth >= 3 or os.path.abspath(base) == mount:
                dirs[:] = []
            else:
                dirs[:] = sorted(d for d in dirs if d not in ("proc", "sys", "dev", ".git", "node_modules"))
    return None


def unpack_blobs(root: str, cfg: dict[str, Any]) -> None:
    path = os.path.join(root, cfg.get("blobs_file") or ".runctl/blobs.json")
    if not os.path.isfile(path):
        return
    with open(path) as fh:
        blobs = json.load(fh)
    for rel, data in blobs.items():
        target = os.path.join(root, rel)
        os.makedirs(os.path.dirname(target) or root, exist_ok=True)
        with open(target, "wb") as fh:
            fh.write(base64.b64decode(data))


def apply_modes(root: str, cfg: dict[str, Any]) -> None:
    for rel, mode in (cfg.get("modes") or {}).items():
        try:
            os.chmod(os.path.join(root, rel), int(mode))
        except OSError:
            pass


def walk_files(top: str) -> dict[str, tuple[int, int]]:
    found = {}
    for base, _dirs, names in os.walk(top):
        for name in names:
            path = os.path.join(base, name)
            rel = os.path.relpath(path, top)
            try:
                st = os.stat(path)
            except OSError:
                continue
            found[rel] = (st.st_size, st.st_mtime_ns)
    return found


class Mirror:
    """Copies changed files of the local checkpoint dir to the storage mount, and repeats deletions."""

    def __init__(self, local: str, remote: str) -> None:
        self.local = local
        self.remote = remote
        self.sent: dict[str, tuple[int, int]] = {}
        self.lock = threading.Lock()
        self.warned = False

    def pull(self) -> int:
        count = 0
        for rel in walk_files(self.remote):
            target = os.path.join(self.local, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(os.path.join(self.remote, rel), target)
            count += 1
        # what came from storage is already there: do not send it back
        self.sent = walk_files(self.local)
        return count

    def push(self) -> int:
        with self.lock:
            try:
                now = walk_files(self.local)
                for rel, sig in sorted(now.items()):
                    if self.sent.get(rel) == sig or rel.endswith(".tmp"):
                        continue
                    target = os.path.join(self.remote, rel)
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    shutil.copyfile(os.path.join(self.local, rel), target)
                    self.sent[rel] = sig
                for rel in sorted(set(self.sent) - set(now)):
                    try:
                        os.remove(os.path.join(self.remote, rel))
                    except OSError:
                        pass
                    del self.sent[rel]
            except OSError as exc:
                if not self.warned:
                    self.warned = True
                    log(f"warning: could not copy checkpoints to storage: {exc}")
            return len(self.sent)


def main(cfg: dict[str, Any]) -> int:
    root = project_root(cfg)
    if root is None:
        log(f"error: {cfg.get('script')} is not among the files of this execution (cwd {os.getcwd()})")
        return 2
    os.chdir(root)
    unpack_blobs(root, cfg)
    apply_modes(root, cfg)
    checkpoint_dir = os.path.join(root, ".runctl", "checkpoints")
    os.makedirs(checkpoint_dir, exist_ok=True)

    mirror = None
    mount = cfg.get("storage_mount") or ""
    if mount and os.path.isdir(mount):
        remote = os.path.join(mount, cfg["storage_path"])
        try:
            os.makedirs(remote, exist_ok=True)
            mirror = Mirror(checkpoint_dir, remote)
            pulled = mirror.pull()
            if pulled:
                log(f"restored {pulled} checkpoint file(s) from storage")
        except OSError as exc:
            log(f"warning: storage mount {mount} is not usable ({exc}); checkpoints stay in this execution")
            mirror = None
    else:
        log(f"warning: Lyceum storage is not mounted at {mount}; checkpoints cannot leave this execution")
        if cfg.get("expect_resume"):
            log("error: the job resumes from checkpoints in storage, which is not mounted here")
            return int(cfg.get("no_storage_rc") or 219)

    requirements = cfg.get("requirements") or []
    if requirements:
        req_file = os.path.join(root, ".runctl", "requirements.txt")
        with open(req_file, "w") as fh:
            fh.write("\n".join(requirements) + "\n")
        log(f"installing {len(requirements)} requirement(s) with pip")
        sys.stdout.flush()
        code = subprocess.call([sys.executable, "-m", "pip", "install", "--quiet", "-r", req_file])
        if code != 0:
            log(f"error: installing the job's requirements failed (pip exited with {code})")
            return 2

    env = dict(os.environ)
    env.update(cfg.get("env") or {})
    env["RUNCTL_JOB_ID"] = cfg.get("job_id", "")
    env["RUNCTL_CHECKPOINT_DIR"] = checkpoint_dir
    env.setdefault("PYTHONUNBUFFERED", "1")
    command = [sys.executable, cfg["script"], *(cfg.get("args") or [])]
    if cfg.get("use_uv") and shutil.which("uv"):
        command = ["uv", "run", cfg["script"], *(cfg.get("args") or [])]
    sys.stdout.flush()
    proc = subprocess.Popen(command, cwd=root, env=env, start_new_session=True)

    stopping: dict[str, float | None] = {"at": None}

    def on_signal(signum: int, _frame: Any) -> None:
        if stopping["at"] is None:
            stopping["at"] = time.time()
            log(f"received signal {signum}: stopping the script (grace {float(cfg.get('grace', 10)):.0f}s)")
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except OSError:
                pass

    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(signum, on_signal)
        except ValueError:  # not the main thread (the service may run this code in one): stops end the script
            log("note: cannot handle signals here (not the main thread); a stop ends the script directly")
            break

    done = threading.Event()

    def sync_loop() -> None:
        interval = float(cfg.get("sync_interval") or 30)
        while not done.wait(interval):
            assert mirror is not None
            mirror.push()

    if mirror is not None:
        threading.Thread(target=sync_loop, name="runctl-checkpoint-sync", daemon=True).start()

    while True:
        try:
            rc = proc.wait(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            started = stopping["at"]
            if started is not None and time.time() - started > float(cfg.get("grace", 10)):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
    done.set()
    if rc < 0:
        rc = 128 - rc
    if mirror is not None:
        count = mirror.push()
        log(f"script exited with code {rc}; {count} checkpoint file(s) in storage under {cfg['storage_path']}")
    else:
        log(f"script exited with code {rc}")
        left = walk_files(checkpoint_dir)
        if left:
            # never report success with nothing collected: the job fails loudly (runctl maps this code)
            log(
                f"error: the script wrote {len(left)} checkpoint file(s) but Lyceum storage is not mounted at "
                f"{mount}; they are lost with this execution"
            )
            return int(cfg.get("no_storage_rc") or 219)
    return rc


if CONFIG:
    sys.exit(main(CONFIG))
