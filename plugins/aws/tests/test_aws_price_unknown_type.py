"""`runctl price --instance-type` with a type AWS does not have: never a made-up row. With credentials the Price
List API's empty answer means AWS does not offer it there ("not offered", with did-you-mean from the core); without
credentials the provider cannot know (its bundled table has only some types), and says so."""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_standin import AwsStandIn
from aws_testlib import aws_settings

from runctl_core.testing.cli import isolate, make_project, run_runctl

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, standin: AwsStandIn) -> Path:
    root = make_project(tmp_path / "project", REPO / "examples" / "train.py", "aws", aws_settings(standin.url))
    monkeypatch.chdir(root)
    isolate(monkeypatch, tmp_path / "home", tmp_path / "xdg-config")
    return root


def test_unknown_type_is_not_offered_with_suggestions(project: Path, standin: AwsStandIn) -> None:
    listed = run_runctl("--provider", "aws", "-o", "json", "price", "--instance-type", "g5.xlarg")
    assert listed.code == 0, listed.err
    doc = listed.json()
    assert doc["offers"] == []
    (missing,) = doc["not_offered"]
    assert missing["provider"] == "aws" and "g5.xlarge" in missing["suggestions"]
    assert ("pricing", "GetProducts") in standin.calls  # AWS's own price list was asked, and listed no such product
    text = run_runctl("--provider", "aws", "price", "--instance-type", "g5.xlarg")
    assert "not offered by aws" in text.out and "did you mean" in text.out and "g5.xlarge" in text.out
    assert "g5.xlarg " not in text.out  # no row for it


def test_without_credentials_an_unknown_type_is_said_unknown_not_priced(
    project: Path, standin: AwsStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    doc = run_runctl("-o", "json", "price", "--instance-type", "nosuch.big").json()
    assert [o for o in doc["offers"] if o["provider"] == "aws"] == []
    aws = next(s for s in doc["skipped"] if s["provider"] == "aws")
    assert "bundled" in aws["reason"] and "credentials" in aws["reason"]
    known = run_runctl("-o", "json", "price", "--instance-type", "g5.xlarge").json()  # in the table: priced
    assert [o["on_demand_hourly"] for o in known["offers"] if o["provider"] == "aws"] == [1.006]


def test_run_with_an_unknown_type_is_refused_before_anything_is_created(project: Path, standin: AwsStandIn) -> None:
    refused = run_runctl("--provider", "aws", "run", "examples/train.py", "--instance-type", "g5.xlarg")
    assert refused.code == 2, (refused.code, refused.err)
    assert "aws has no offer for --instance-type g5.xlarg" in refused.err and "g5.xlarge" in refused.err
    assert ("ec2", "RunInstances") not in standin.calls
    created = run_runctl("--provider", "aws", "-o", "json", "create", "--instance-type", "g5.xlarg")
    assert created.code == 2 and "did you mean" in created.error()["hint"]
    assert ("ec2", "RunInstances") not in standin.calls
