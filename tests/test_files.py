from __future__ import annotations

from pathlib import Path

from runctl_core.files import changed_files, pack_tar, scan_project, unpack_tar


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_ignore_files_nested_and_negated(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            ".gitignore": "*.log\ndata/\n!keep.log\n",
            ".runctlignore": "secrets.env\n",
            "train.py": "x",
            "run.log": "x",
            "keep.log": "x",
            "secrets.env": "x",
            "data/big.bin": "x",
            "src/mod.py": "x",
            "src/.gitignore": "generated.py\n",
            "src/generated.py": "x",
            ".git/config": "x",
            ".venv/bin/python": "x",
            "__pycache__/a.pyc": "x",
        },
    )
    names = {f.path for f in scan_project(tmp_path).files}
    assert names == {".gitignore", ".runctlignore", "train.py", "keep.log", "src/mod.py", "src/.gitignore"}


def test_manifest_diff_and_tar_roundtrip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src, {"a.py": "1", "b/c.py": "2"})
    (src / "a.py").chmod(0o755)
    first = scan_project(src)
    send, delete = changed_files(first, {})
    assert {f.path for f in send} == {"a.py", "b/c.py"} and delete == []
    (src / "b" / "c.py").write_text("3")
    (src / "new.py").write_text("4")
    second = scan_project(src)
    send, delete = changed_files(second, {**first.manifest(), "gone.py": "abc"})
    assert {f.path for f in send} == {"b/c.py", "new.py"} and delete == ["gone.py"]
    dest = tmp_path / "dest"
    dest.mkdir()
    assert sorted(unpack_tar(pack_tar(second), dest)) == ["a.py", "b/c.py", "new.py"]
    assert (dest / "b" / "c.py").read_text() == "3" and (dest / "a.py").stat().st_mode & 0o777 == 0o755


def test_unpack_refuses_paths_outside(tmp_path: Path) -> None:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in ("../evil.py", "/abs.py", "ok.py"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    dest = tmp_path / "d"
    dest.mkdir()
    assert unpack_tar(buffer.getvalue(), dest) == ["ok.py"]
    assert not (tmp_path / "evil.py").exists()


def test_hash_cache_skips_rehashing_unchanged_files(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Issue 15.4: an unchanged file is not read again (size + mtime + inode match the cache)."""
    import runctl_core.files as files

    root = tmp_path / "p"
    root.mkdir()
    (root / "a.py").write_text("print(1)\n")
    (root / "b.py").write_text("print(2)\n")
    cache = tmp_path / "cache.json"
    first = files.scan_project(root, hash_cache=cache)
    hashed: list[str] = []
    real = files.sha256_file
    monkeypatch.setattr(files, "sha256_file", lambda p: hashed.append(p.name) or real(p))
    (root / "b.py").write_text("print(22)\n")  # changes size: rehashed
    second = files.scan_project(root, hash_cache=cache)
    assert hashed == ["b.py"]
    assert second.manifest()["a.py"] == first.manifest()["a.py"]
    assert second.manifest()["b.py"] == real(root / "b.py")
