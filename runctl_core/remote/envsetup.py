#!/usr/bin/env python3
"""runctl's environment step: prepares the Python environment a job runs in, on the machine that runs it.

Shipped next to ``runner.py`` (stdlib only, Python >= 3.8) and run by the supervisor before the script, so
every provider prepares environments the same way. What it does, in order:

1. **What the job declares**, first match wins: the script's PEP 723 header (``# /// script``); else
   ``requirements.txt`` at the project root; else ``pyproject.toml`` when it declares a project (``[project]`` or
   ``[build-system]``; installed editable).
   Plus ``setup`` commands (shell lines run in the project directory, once per environment) and an optional
   Python version. When nothing is declared, the job runs with the machine's Python as is.
2. **A cache key**: a hash of all of the above (file contents, commands, Python, tool). An environment with
   that key already built on this machine is reused ("environment: cached").
3. **The tool**: uv when it is on ``PATH`` or was installed by runctl before, otherwise installed into the
   runctl-owned tools directory (``python3 -m pip install --target``, else uv's standalone installer with
   ``curl``/``wget``). With uv disabled (``--no-uv``), or if it cannot be installed, ``python -m venv`` + pip
   do the same; declared dependencies are never silently ignored - when neither works the step fails and
   says what was tried.
4. **Build**: a virtual environment under ``ENVS/<key>``, dependencies installed, setup commands run with the
   environment activated; a marker file is written last, so a half-built environment is rebuilt.

Output goes to stdout (the job's log). The result is one JSON object written to ``--result``:
``{"state": "none"|"cached"|"installed", "python": PATH, "seconds": S, "summary": TEXT}`` or, on failure,
``{"state": "failed", "message": ..., "hint": ...}`` with exit code 3.

Usage::

    envsetup.py --project DIR --script REL --envs-dir DIR --tools-dir DIR --result FILE
                [--python 3.11] [--setup-file FILE.json] [--no-uv] [--base-python PATH]
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

EXIT_SETUP_FAILED = 3
MARKER = ".runctl-ready"
UV_INSTALLER = "https://astral.sh/uv/install.sh"


class SetupFailed(Exception):
    def __init__(self, message, hint):
        Exception.__init__(self, message)
        self.message = message
        self.hint = hint


def say(text):
    sys.stdout.write("runctl: environment: %s\n" % text)
    sys.stdout.flush()


# ------------------------------------------------------------------------------------------ what is declared

# (compiled on first use: the supervisor imports this module for its first check; see runner.py)
_HEADER = r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$"


def pep723_metadata(source):
    """The script's ``# /// script`` block as a dict (the regex of PEP 723's reference implementation), or None."""
    if "# /// script" not in source:  # no block can match: skip the regex over a long script
        return None
    blocks = [m for m in re.finditer(_HEADER, source) if m.group("type") == "script"]
    if not blocks:
        return None
    if len(blocks) > 1:
        raise SetupFailed("the script has more than one '# /// script' block", "keep one PEP 723 block")
    content = "".join(
        line[2:] if line.startswith("# ") else line[1:]
        for line in blocks[0].group("content").splitlines(True)
    )
    try:
        import tomllib  # Python >= 3.11

        return tomllib.loads(content)
    except ImportError:
        return _mini_toml(content)
    except ValueError as exc:
        raise SetupFailed("the script's PEP 723 block is not valid TOML: %s" % exc, "fix the '# /// script' block")


def _mini_toml(content):
    """Enough TOML for a PEP 723 block on Pythons without tomllib: top-level strings and string arrays."""
    import ast

    result = {}
    for match in re.finditer(r"(?ms)^([A-Za-z0-9_-]+)\s*=\s*(\[.*?\]|\"[^\"\n]*\"|'[^'\n]*')", content):
        try:
            result[match.group(1)] = ast.literal_eval(re.sub(r",\s*\]", "]", match.group(2)))
        except (ValueError, SyntaxError):
            raise SetupFailed("cannot read %s in the script's PEP 723 block" % match.group(1), "use plain strings")
    return result


def declared(project, script):
    """(kind, content, dependencies) of what the job declares; kind is "pep723", "requirements", "pyproject"
    or "none"."""
    try:
        with open(os.path.join(project, script), encoding="utf-8", errors="replace") as fh:
            meta = pep723_metadata(fh.read())
    except OSError:
        meta = None
    if meta is not None:
        deps = [str(d) for d in meta.get("dependencies", [])]
        return "pep723", json.dumps(meta, sort_keys=True), deps
    for kind, name in (("requirements", "requirements.txt"), ("pyproject", "pyproject.toml")):
        path = os.path.join(project, name)
        if os.path.isfile(path):
            with open(path, "rb") as fh:
                data = fh.read()
            # a pyproject.toml holding only tool settings ([tool.ruff]...) declares no installable project
            if kind == "pyproject" and not re.search(rb"(?m)^\[(project|build-system)\]", data):
                continue
            import hashlib

            return kind, hashlib.sha256(data).hexdigest(), []
    return "none", "", []


# ------------------------------------------------------------------------------------------ tools


def _run(argv, **kwargs):
    """Run a step with its output in the log; return its exit code (127 when the program is missing)."""
    sys.stdout.flush()
    try:
        return subprocess.call(argv, stdout=sys.stdout.fileno(), stderr=subprocess.STDOUT, **kwargs)
    except OSError as exc:
        say("cannot start %s: %s" % (argv[0], exc))
        return 127


def find_uv(tools_dir):
    for candidate in (shutil.which("uv"), os.path.join(tools_dir, "uv", "bin", "uv"), os.path.join(tools_dir, "uv")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def install_uv(tools_dir, base_python, tried):
    """Install uv into the runctl-owned tools directory: pip first, uv's standalone installer where pip is
    missing. Returns uv's path or None; ``tried`` collects what was attempted, for the error message."""
    target = os.path.join(tools_dir, "uv")
    os.makedirs(tools_dir, exist_ok=True)
    say("uv not found; installing it with %s -m pip into %s" % (base_python, target))
    code = _run([base_python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", target,
                 "uv"])
    tried.append("%s -m pip install --target %s uv (exit %d)" % (base_python, target, code))
    uv = find_uv(tools_dir)
    if code == 0 and uv:
        return uv
    fetch = (shutil.which("curl") and ["curl", "-LsSf", UV_INSTALLER]) or (shutil.which("wget") and [
        "wget", "-qO-", UV_INSTALLER])
    if fetch:
        say("installing uv with its standalone installer (%s)" % UV_INSTALLER)
        env = dict(os.environ, UV_INSTALL_DIR=target, UV_UNMANAGED_INSTALL=target, INSTALLER_NO_MODIFY_PATH="1")
        code = _run(["sh", "-c", '"$@" | sh', "sh"] + fetch, env=env)
        tried.append("uv's installer %s (exit %d)" % (UV_INSTALLER, code))
        uv = find_uv(tools_dir)
        if code == 0 and uv:
            return uv
    else:
        tried.append("uv's installer (neither curl nor wget is installed)")
    return None


def _python_for(version, base_python):
    """An interpreter of ``version`` on this machine without uv: ``pythonX.Y`` on PATH, or the base one."""
    if not version:
        return base_python
    out = subprocess.run([base_python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         stdout=subprocess.PIPE, text=True).stdout.strip()
    if out == version or out.startswith(version + "."):
        return base_python
    found = shutil.which("python" + version)
    if found:
        return found
    raise SetupFailed("Python %s is not installed on this machine (%s is %s) and uv is not used" % (
        version, base_python, out), "install that Python on the machine, enable uv, or drop --python")


# ------------------------------------------------------------------------------------------ build


def build(opts, env_dir, kind, deps, uv):
    project = opts.project
    venv_python = os.path.join(env_dir, "bin", "python")
    if uv:
        argv = [uv, "venv", "--quiet", "--seed", env_dir]
        argv += ["--python", opts.python or opts.base_python]
        if _run(argv) != 0:
            raise SetupFailed("uv could not create a Python %s environment" % (opts.python or ""),
                              "check --python, or that the machine can reach the package index")
        install = [uv, "pip", "install", "--python", venv_python]
    else:
        python = _python_for(opts.python, opts.base_python)
        if _run([python, "-m", "venv", env_dir]) != 0:
            raise SetupFailed("%s -m venv failed (is the venv module installed? Debian: apt install python3-venv)"
                              % python, "install python3-venv on the machine's image, or enable uv")
        install = [venv_python, "-m", "pip", "install", "--disable-pip-version-check"]
    if kind == "pep723" and deps:
        say("installing the script's PEP 723 dependencies: %s" % ", ".join(deps))
        step = install + deps
    elif kind == "requirements":
        say("installing requirements.txt")
        step = install + ["-r", os.path.join(project, "requirements.txt")]
    elif kind == "pyproject":
        say("installing the project (pyproject.toml)")
        step = install + ["-e", project]
    else:
        step = None
    if step is not None and _run(step, cwd=project) != 0:
        raise SetupFailed("installing the job's dependencies (%s) failed; the installer's output is above" % kind,
                          "check the package names and versions in %s" % {
                              "pep723": "the script's '# /// script' block", "requirements": "requirements.txt",
                              "pyproject": "pyproject.toml"}[kind])
    env = dict(os.environ, VIRTUAL_ENV=env_dir, PATH=os.path.join(env_dir, "bin") + os.pathsep + os.environ.get(
        "PATH", ""))
    for command in opts.setup:
        say("setup: %s" % command)
        code = _run(["sh", "-c", command], cwd=project, env=env)
        if code != 0:
            raise SetupFailed("the setup command %r exited with code %d" % (command, code),
                              "fix the command (it runs in the project directory, environment activated)")
    return venv_python


NOTHING = {"state": "none", "python": "", "seconds": 0.0, "summary": "nothing to install; the machine's Python"}


def nothing_declared(kind, deps, setup, python):
    """The result when the job declares nothing to install (no dependencies, setup commands or Python version;
    a PEP 723 header without dependencies declares nothing, as ``uv run`` reads it), else None."""
    if kind in ("none", "pep723") and not deps and not setup and not python:
        return dict(NOTHING)
    return None


def prepare(opts):
    started = time.monotonic()
    kind, content, deps = declared(opts.project, opts.script)
    nothing = nothing_declared(kind, deps, opts.setup, opts.python)
    if nothing is not None:
        return nothing
    tried = []
    uv = None
    if opts.use_uv:
        uv = find_uv(opts.tools_dir) or install_uv(opts.tools_dir, opts.base_python, tried)
        if uv is None:
            say("uv could not be installed (%s); using venv + pip" % "; ".join(tried))
    tool = "uv" if uv else "pip"
    key_source = json.dumps([kind, content, deps, opts.setup, opts.python or opts.base_python, tool], sort_keys=True)
    import hashlib

    key = hashlib.sha256(key_source.encode()).hexdigest()[:16]
    env_dir = os.path.join(opts.envs_dir, key)
    os.makedirs(opts.envs_dir, exist_ok=True)
    lock = open(os.path.join(opts.envs_dir, key + ".lock"), "w")
    try:
        import fcntl

        fcntl.flock(lock, fcntl.LOCK_EX)  # a second job needing the same environment waits for the first
    except ImportError:  # pragma: no cover - not POSIX
        pass
    try:
        python = os.path.join(env_dir, "bin", "python")
        if os.path.isfile(os.path.join(env_dir, MARKER)) and os.path.exists(python):
            say("cached (%s, %s)" % (key, kind))
            return {"state": "cached", "python": python, "seconds": time.monotonic() - started, "key": key,
                    "summary": "cached (%s)" % kind}
        shutil.rmtree(env_dir, ignore_errors=True)
        say("preparing %s with %s (%s)" % (key, tool, kind))
        try:
            python = build(opts, env_dir, kind, deps, uv)
        except SetupFailed as exc:
            if tried:
                exc.message += " (tried: %s)" % "; ".join(tried)
            raise
        with open(os.path.join(env_dir, MARKER), "w") as fh:
            fh.write(key_source)
        seconds = time.monotonic() - started
        say("ready in %.1fs" % seconds)
        return {"state": "installed", "python": python, "seconds": seconds, "key": key,
                "summary": "installed with %s (%s)" % (tool, kind)}
    finally:
        lock.close()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="envsetup.py")
    parser.add_argument("--project", required=True)
    parser.add_argument("--script", required=True)
    parser.add_argument("--envs-dir", required=True)
    parser.add_argument("--tools-dir", required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--python", default="")
    parser.add_argument("--setup-file", default="")
    parser.add_argument("--no-uv", dest="use_uv", action="store_false")
    parser.add_argument("--base-python", default=os.environ.get("RUNCTL_PYTHON") or sys.executable or "python3")
    opts = parser.parse_args(argv)
    opts.setup = []
    if opts.setup_file:
        with open(opts.setup_file) as fh:
            opts.setup = [str(c) for c in json.load(fh)]
    started = time.monotonic()
    try:
        result = prepare(opts)
        code = 0
    except SetupFailed as exc:
        say("FAILED: %s" % exc.message)
        result = {"state": "failed", "message": exc.message, "hint": exc.hint,
                  "seconds": time.monotonic() - started}
        code = EXIT_SETUP_FAILED
    tmp = opts.result + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(result, fh)
    os.replace(tmp, opts.result)
    return code


if __name__ == "__main__":
    sys.exit(main())
