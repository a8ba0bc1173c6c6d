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


IGNORE_LINES = [
    "*.log",
    "!keep.log",
    "build/",
    "/top-only.txt",
    "docs/**/draft*",
    "data/*.csv",
    "!data/small.csv",
    "**/cache",
    "a?c.py",
    "[Tt]emp*",
    "\\#literal",
    "# a comment",
    "",
    "trailing\\ ",
]
CANDIDATES = [
    "x.log",
    "keep.log",
    "sub/keep.log",
    "sub/y.log",
    "build/",
    "build/out.o",
    "src/build/",
    "src/build/x",
    "top-only.txt",
    "sub/top-only.txt",
    "docs/a/b/draft1.md",
    "docs/draft.md",
    "data/big.csv",
    "data/small.csv",
    "data/sub/c.csv",
    "cache",
    "x/cache",
    "x/cache/y",
    "abc.py",
    "a/abc.py",
    "abbc.py",
    "Temp1",
    "temp/x",
    "#literal",
    "trailing ",
    "train.py",
    "pkg/mod.py",
    ".env",
    "sub/.env.local",
    "key.pem",
    ".ssh/",
    ".ssh/id_rsa",
    ".config/gcloud/",
    "x/.config/gcloud/",
    ".kube/config",
    "x/.kube/config",
    "id_ed25519.pub",
    "ok/id_rsa_x",
]


def test_quick_rule_test_agrees_with_pathspec() -> None:
    """scan_project asks one joined regex before pathspec: for every path, with negations, anchors, directory
    patterns and globs, the answer is pathspec's own (the credential rules and an ignore file's)."""
    import pathspec

    from runctl_core.files import CREDENTIAL_PATTERNS, _Rules

    for lines in (IGNORE_LINES, list(CREDENTIAL_PATTERNS), [], ["!only-negation"]):
        spec = pathspec.GitIgnoreSpec.from_lines(lines)
        rules = _Rules(spec)
        assert rules.quick is not None  # the joined regex was built: the fast path is what is tested
        for path in CANDIDATES:
            expected = spec.check_file(path).include
            assert rules.check(path) == (None if expected is None else bool(expected)), (lines[:2], path)
            assert rules.matches(path) == bool(spec.match_file(path)), (lines[:2], path)


def test_quick_rule_test_falls_back_to_pathspec_when_regexes_cannot_be_joined() -> None:
    import re

    import pathspec
    from pathspec.pattern import RegexPattern

    from runctl_core.files import _Rules

    spec = pathspec.PathSpec([RegexPattern(re.compile("secret", re.IGNORECASE), include=True)])
    rules = _Rules(spec)
    assert rules.quick is None  # a flag the joined regex would lose: pathspec decides every path
    assert rules.matches("SECRET.txt") and not rules.matches("public.txt")
