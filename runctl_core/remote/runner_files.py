"""runctl's job runner, part 4 of 5: files sent with a command and the project's manifest (stdlib only).

``bootstrap.py`` stages what a command brought under ``ROOT/.incoming/TOKEN``; these move it into place once
the command's checks passed (a refused command changes nothing). ``--expect-manifest DIGEST``: the sender's
idea of the machine's project; when ``manifest.json`` differs (another laptop synced), exit 19.

``manifest.json`` says what was sent, not what is there now: ``apply-sync`` also records each synced file's size,
mtime, ctime and inode in ``manifest-stats.json`` (beside it) once the files are in place, and a command with
``--expect-manifest`` compares them with the project's files (one ``lstat`` each). A synced file changed or
removed since (a job rewrote its config) is refused with exit 19 and ``{"drifted": [paths]}`` on stdout, so the
sender sends it again. Files nobody synced (a job's outputs) are not checked, and never deleted.
"""

import json
import os
import sys

# --expect-manifest: the machine's project is not the one the sender expected (another laptop synced to it)
EXIT_STALE_PROJECT = 19


def manifest_digest(path):
    """sha256 of the manifest file ``path`` as canonical JSON (a missing or unreadable one is ``{}``): what a
    sender that remembers the manifest expects (runctl_core.remote.hostcache.manifest_digest)."""
    import hashlib

    manifest = _load(path)
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def _load(path):
    """The JSON object in the file ``path`` (a missing, unreadable or other document: ``{}``)."""
    try:
        with open(path) as fh:
            loaded = json.load(fh)
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _stats_path(manifest):
    return os.path.join(os.path.dirname(manifest), "manifest-stats.json")


def _stamp(path):
    """What identifies the file ``path`` as written: size, mtime, ctime (no process can set it) and inode."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def record_stamps(dest, manifest, paths):
    """Record the stamp of each synced file ``paths`` under ``dest`` (beside the ``manifest`` file)."""
    stamps = dict((rel, _stamp(os.path.join(dest, rel))) for rel in paths)
    tmp = _stats_path(manifest) + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(json.dumps(stamps))
    os.replace(tmp, _stats_path(manifest))


def drifted_files(dest, manifest, skip=()):
    """The synced files (``manifest``'s paths) under ``dest`` whose stamp is not the one recorded when they were
    written: changed or removed since. No record at all (synced by an older runctl): all of them."""
    stamps = _load(_stats_path(manifest))
    return sorted(rel for rel in _load(manifest) if rel not in skip
                  and (stamps.get(rel) is None or _stamp(os.path.join(dest, rel)) != stamps[rel]))


def _stale(opts, dest, skip=()):
    """True (and a message on stderr) when ``--expect-manifest`` is given and the machine's manifest differs, or
    synced files under ``dest`` (but ``skip``) changed since they were written (their paths printed as JSON)."""
    if not opts.expect_manifest:
        return False
    if manifest_digest(opts.manifest) != opts.expect_manifest:
        sys.stderr.write("runctl: the project on this machine is not the one expected (%s holds another sync)\n"
                         % opts.manifest)
        return True
    drifted = drifted_files(dest, opts.manifest, skip)
    if not drifted:
        return False
    more = " and %d more" % (len(drifted) - 5) if len(drifted) > 5 else ""
    sys.stderr.write("runctl: synced files changed on this machine since they were synced (by a job?): %s%s\n"
                     % (", ".join(drifted[:5]), more))
    print(json.dumps({"drifted": drifted}))
    return True


def _move_entries(staged, dest):
    """Move every entry of the directory ``staged`` into ``dest`` (same file system: renames)."""
    if not staged or not os.path.isdir(staged):
        return
    import shutil

    os.makedirs(dest, exist_ok=True)
    for name in os.listdir(staged):
        target = os.path.join(dest, name)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        os.replace(os.path.join(staged, name), target)


def _move_files(staged, dest):
    """Move every file under the directory ``staged`` to the same relative path under ``dest`` (each replaced
    atomically; ``dest`` is a realpath)."""
    for base, _dirs, names in os.walk(staged):
        for name in names:
            source = os.path.join(base, name)
            target = os.path.realpath(os.path.join(dest, os.path.relpath(source, staged)))
            if not target.startswith(dest + os.sep) or os.path.islink(source):
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(source, target)


def apply_sync(opts):
    """Put the sent files into ``--dest`` (``--files``: a staged directory; ``--tar``: a tar, refusing absolute
    paths and ``..``), delete what ``--meta`` lists under "delete", then save its "manifest" to ``--manifest``
    (atomically) and remove the tar and meta. Exit 19, changing nothing, when ``--expect-manifest`` differs or a
    synced file this sync neither sends (its "sent" list) nor deletes changed since it was written."""
    with open(opts.meta) as fh:
        meta = json.load(fh)
    if _stale(opts, opts.dest, set(meta.get("sent", [])) | set(meta.get("delete", []))):
        return EXIT_STALE_PROJECT
    import shutil
    import tarfile

    dest = os.path.realpath(opts.dest)
    os.makedirs(dest, exist_ok=True)
    if opts.files:
        _move_files(opts.files, dest)
    if opts.tar:
        with tarfile.open(opts.tar, "r:*") as tar:
            for member in tar.getmembers():
                target = os.path.realpath(os.path.join(dest, member.name))
                if not member.isfile() or not target.startswith(dest + os.sep):
                    continue
                os.makedirs(os.path.dirname(target), exist_ok=True)
                source = tar.extractfile(member)
                tmp = target + ".runctl-tmp"
                with open(tmp, "wb") as out:
                    shutil.copyfileobj(source, out)
                os.chmod(tmp, member.mode & 0o777)
                os.replace(tmp, target)
        os.unlink(opts.tar)
    for rel in meta.get("delete", []):
        target = os.path.realpath(os.path.join(dest, rel))
        if target.startswith(dest + os.sep) and os.path.isfile(target):
            os.unlink(target)
    record_stamps(dest, opts.manifest, meta.get("manifest", {}))  # before the manifest, replaced last
    tmp = opts.manifest + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(json.dumps(meta.get("manifest", {})))  # one write: json.dump writes chunk by chunk
    os.replace(tmp, opts.manifest)
    os.unlink(opts.meta)
    print(json.dumps({"sent": len(meta.get("manifest", {})), "deleted": len(meta.get("delete", []))}))
    return 0
