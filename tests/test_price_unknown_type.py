"""`runctl price --instance-type T` for a type no provider has: "not offered" per provider that answered, with
did-you-mean from that provider's own offers; never a row for it."""

from __future__ import annotations

from pathlib import Path


def test_unknown_type_is_not_offered_with_did_you_mean(cli, project: Path) -> None:
    text = cli("--provider", "local", "price", "--instance-type", "locl")
    assert text.code == 0, text.err
    assert "no offers match --instance-type locl" in text.out
    assert "not offered by local" in text.out and "did you mean: local" in text.out
    doc = cli("--provider", "local", "-o", "json", "price", "--instance-type", "locl").json()
    assert doc["offers"] == [] and doc["not_offered"] == [{"provider": "local", "suggestions": ["local"]}]
    far = cli("--provider", "local", "price", "--instance-type", "nosuch.big")
    assert "not offered by local" in far.out and "runctl --provider local price" in far.out  # how to see its offers


def test_slurm_offers_only_its_partition(cli, project: Path) -> None:
    (project / ".runctl.toml").write_text('[providers.slurm]\nhost = "login.invalid"\npartition = "gpu"\n')
    doc = cli("--provider", "slurm", "-o", "json", "price", "--instance-type", "nosuch.big").json()
    assert doc["offers"] == [] and doc["not_offered"][0]["provider"] == "slurm"
    assert doc["not_offered"][0]["suggestions"] == []
    own = cli("--provider", "slurm", "-o", "json", "price", "--instance-type", "gpu").json()
    assert [o["instance_type"] for o in own["offers"]] == ["gpu"]


def test_providers_without_credentials_are_one_line_with_their_suggestions(
    cli, project: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "RUNPOD_API_KEY", "LYCEUM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    text = cli("price", "--instance-type", "g5.xlarg")
    assert text.code == 0, text.err
    lines = text.out.splitlines()
    (quiet,) = [line for line in lines if line.startswith("not asked (no credentials)")]
    assert "aws" in quiet and "runpod" in quiet and "lyceum" in quiet and "runctl providers" in quiet
    assert "RUNPOD_API_KEY" not in text.out and "did you mean: g5.xlarge (aws)" in text.out
    doc = cli("-o", "json", "price", "--instance-type", "g5.xlarge").json()
    runpod = next(s for s in doc["skipped"] if s["provider"] == "runpod")
    assert runpod["credentials"] == "missing" and "RUNPOD_API_KEY" in runpod["hint"]  # JSON keeps the detail
    assert [o["instance_type"] for o in doc["offers"]] == ["g5.xlarge"]
