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
