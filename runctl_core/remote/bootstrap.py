"""runctl's bundle bootstrap: the first thing a bundled command runs on the machine (stdlib only, Python >= 3.8).

:class:`runctl_core.remote.jobs.JobHost` sends the files a command needs WITH the command, in one round trip::

    python3 -c "<this file>" ROOT TOKEN TOOLS_HASH SIZE RUNNER-ARGS...     (stdin: SIZE bytes, a tar.gz)

This program reads the bundle from stdin (exactly SIZE bytes; 0: none) and, with umask 077:

* installs its ``bin/*`` members (runctl's tools, a provider's own helpers) into ``ROOT/bin`` with mode 0755,
  each replaced atomically, then writes the marker ``ROOT/bin/.tools-TOOLS_HASH`` (other versions' markers are
  removed first: the marker always names what ``bin/`` holds);
* stages every other member under ``ROOT/.incoming/TOKEN/`` (a 0700 directory; each file keeps the mode it has in
  the bundle: a project file its own, an env file 0600, as :class:`runctl_core.remote.bundle.Bundle` sets it), for
  the runner command to move into place once its checks pass (a refused command changes nothing);
* refuses with exit 20 when ``ROOT/bin`` does not hold the tools of TOOLS_HASH and the bundle brought none (the
  sender then sends them);
* runs ``ROOT/bin/runner.py RUNNER-ARGS`` in this same process and removes the staging directory afterwards.
"""

import sys

if __name__ == "__main__" and sys.path and sys.path[0] in ("", "."):
    del sys.path[0]  # run as ``python3 -c``: never import a stdlib module's namesake from the current directory

import io  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tarfile  # noqa: E402

EXIT_NEED_TOOLS = 20


def _inside(base, name):
    """``base/name`` when it stays inside ``base`` (no absolute path, no ``..``), else None."""
    target = os.path.realpath(os.path.join(base, name))
    return target if target.startswith(os.path.realpath(base) + os.sep) else None


def _write(target, source, mode):
    os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
    tmp = "%s.runctl-tmp.%d" % (target, os.getpid())
    with open(tmp, "wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
    os.chmod(tmp, mode)
    os.replace(tmp, target)


def unpack(root, token, tools_hash, data):
    """Install the bundle's tools and stage the rest; return the staging directory (``ROOT/.incoming/TOKEN``)."""
    bin_dir = os.path.join(root, "bin")
    staging = os.path.join(root, ".incoming", token)
    if not data:
        return staging
    os.makedirs(staging, mode=0o700, exist_ok=True)
    tools = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as bundle:
        for member in bundle.getmembers():
            if not member.isfile():
                continue
            if member.name.startswith("bin/") and "/" not in member.name[4:]:
                tools.append(member)
                continue
            target = _inside(staging, member.name)
            if target is not None:
                _write(target, bundle.extractfile(member), member.mode & 0o777)
        if tools:
            os.makedirs(bin_dir, mode=0o755, exist_ok=True)
            marker = os.path.join(bin_dir, ".tools-" + tools_hash)
            if not os.path.exists(marker):  # another command may have installed this version already
                for name in os.listdir(bin_dir):
                    if name.startswith(".tools-"):
                        os.unlink(os.path.join(bin_dir, name))
                for member in tools:
                    _write(os.path.join(bin_dir, member.name[4:]), bundle.extractfile(member), 0o755)
                with open(marker, "w"):
                    pass
    return staging


def main(argv, runner_main=None, data=None):
    """Run one bundled command (see the module docstring). Inline mode (the machine is this one): ``data`` is
    the bundle and ``runner_main`` the already imported runner's ``main``."""
    root, token, tools_hash, size = argv[0], argv[1], argv[2], int(argv[3])
    if data is None:
        data = sys.stdin.buffer.read(size) if size else b""
    if len(data) != size:
        sys.stderr.write("runctl: the bundle arrived truncated (%d of %d bytes)\n" % (len(data), size))
        return 1
    staging = os.path.join(root, ".incoming", token)
    try:
        old_umask = os.umask(0o077)  # the bundle's files are the owner's only (the job's own umask is kept)
        try:
            unpack(root, token, tools_hash, data)
        finally:
            os.umask(old_umask)
        # inline (runner_main given): runctl's own runner runs in this process, no tools are needed on disk
        if runner_main is None and not os.path.exists(os.path.join(root, "bin", ".tools-" + tools_hash)):
            sys.stderr.write("runctl: the tools of version %s are not installed in %s/bin\n" % (tools_hash, root))
            return EXIT_NEED_TOOLS
        if runner_main is None:
            sys.path.insert(0, os.path.join(root, "bin"))
            import runner  # noqa: E402  (ROOT/bin/runner.py, installed above or earlier)

            runner_main = runner.main
        return runner_main(argv[4:])
    finally:
        shutil.rmtree(staging, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
