"""The SSM + S3 Transport (runctl_aws.transport) against the stand-in: every operation of the core's Transport
protocol on a real (stand-in) instance, including output larger than SSM's 24,000 characters, stdin, a missing
file, and environment values that never appear in an SSM command's text."""

from __future__ import annotations

import time
from pathlib import Path

from aws_standin import AwsStandIn
from aws_testlib import BUCKET, aws_settings

from runctl_aws.client import AwsClient
from runctl_aws.settings import AwsSettings
from runctl_aws.transport import SsmTransport
from runctl_core.remote.transport import Transport


def _online(standin: AwsStandIn, client: AwsClient) -> str:
    reply = client.run_instances(
        {
            "ImageId": "ami-12c6146b",
            "InstanceType": "t3.micro",
            "MinCount": 1,
            "MaxCount": 1,
            "IamInstanceProfile": {"Name": "runctl-ssm"},
        }
    )
    deadline = time.monotonic() + 30
    while client.ping_status(reply.id) != "Online":
        assert time.monotonic() < deadline, "the stand-in instance never came online"
        time.sleep(0.05)
    return reply.id


def test_every_transport_operation_through_ssm_and_s3(standin: AwsStandIn, tmp_path: Path) -> None:
    client = AwsClient(AwsSettings.model_validate(aws_settings(standin.url)))
    instance_id = _online(standin, client)
    transport = SsmTransport(client, instance_id, BUCKET, f"runctl/_staging/{instance_id}")
    assert isinstance(transport, Transport)
    home = str(standin.instance_dir(instance_id))

    transport.put(b"hello\n" * 10_000, f"{home}/work/data.txt", mode=0o600)
    assert (standin.instance_dir(instance_id) / "work" / "data.txt").stat().st_mode & 0o777 == 0o600
    assert transport.read_range(f"{home}/work/data.txt", 6, 6) == b"hello\n"
    transport.get(f"{home}/work/data.txt", tmp_path / "copy.txt")  # 60,000 bytes: more than SSM's output
    assert (tmp_path / "copy.txt").read_bytes() == b"hello\n" * 10_000
    assert [f.path for f in transport.walk(f"{home}/work")] == ["data.txt"]
    assert transport.walk(f"{home}/nowhere") == []

    secret = "s3cr3t-value-never-in-ssm"
    ran = transport.run(
        ["python3", "-c", "import os, sys; sys.stdout.write(os.environ['TOKEN'][:3] + sys.stdin.read() * 3000)"],
        env={"TOKEN": secret},
        cwd=f"{home}/work",
        stdin=b"abcdefgh",
    )
    assert ran.exit_code == 0 and ran.stdout == b"s3c" + b"abcdefgh" * 3000  # 24,003 bytes
    # a path or argument starting with $HOME/ is under the home of the user SSM runs as (remote_dir may use it)
    homed = transport.run(["python3", "-c", "import sys; print(sys.argv[1])", "$HOME/work"], cwd="$HOME/work")
    assert homed.stdout.decode().strip() == f"{home}/work"
    assert transport.read_range("$HOME/work/data.txt", 0, 6) == b"hello\n"
    assert all(secret not in inv.script for inv in standin.invocations.values())
    bundle = b"JOB_TOKEN=" + secret.encode()  # stdin (a bundle holding an env file) is never in the command either
    echoed = transport.run(["python3", "-c", "import sys; sys.stdout.write(sys.stdin.read()[:9])"], stdin=bundle)
    assert echoed.stdout == b"JOB_TOKEN" and all(secret not in inv.script for inv in standin.invocations.values())
    failed = transport.run(["sh", "-c", "echo oops >&2; exit 3"])
    assert failed.exit_code == 3 and failed.stderr == b"oops\n"
    assert transport.run(["no-such-program-runctl"]).exit_code == 127

    try:
        transport.read_range(f"{home}/work/missing", 0, 10)
    except FileNotFoundError:
        pass
    else:
        raise AssertionError("a missing file must raise FileNotFoundError")
    transport.remove(f"{home}/work")
    transport.remove(f"{home}/work")  # nothing there: nothing happens
    assert not (standin.instance_dir(instance_id) / "work").exists()
    keys = [o["Key"] for o in client.list_objects(BUCKET, f"runctl/_staging/{instance_id}/transport/")]
    assert keys == []  # staging objects are removed after each call


def test_prestaged_stdin_is_not_uploaded_again(standin: AwsStandIn) -> None:
    """What ``prestage`` uploaded while the instance booted is what the later ``run`` with the same bytes fetches:
    that run's round trips are the SSM command alone (then the staged object is deleted)."""
    client = AwsClient(AwsSettings.model_validate(aws_settings(standin.url)))
    instance_id = _online(standin, client)
    transport = SsmTransport(client, instance_id, BUCKET, f"runctl/_staging/{instance_id}")
    payload = b"project bytes " * 10_000
    transport.prestage(payload)
    transport.prestage(payload)  # the same bytes again: no second upload
    assert [c for c in standin.calls if c == ("s3", "PutObject")] == [("s3", "PutObject")]
    standin.calls.clear()
    ran = transport.run(["python3", "-c", "import sys; print(len(sys.stdin.buffer.read()))"], stdin=payload)
    assert ran.stdout.strip() == str(len(payload)).encode()
    assert ("s3", "PutObject") not in standin.calls and ("ssm", "SendCommand") in standin.calls
    # the instance deleted the object after reading it (a presigned DELETE): no DeleteObject round trip from here
    assert ("s3", "DeleteObject") not in standin.calls
    assert list(client.list_objects(BUCKET, f"runctl/_staging/{instance_id}/transport/")) == []
    other = transport.run(["python3", "-c", "import sys; print(len(sys.stdin.buffer.read()))"], stdin=payload)
    assert other.stdout.strip() == str(len(payload)).encode()  # used once: a second run uploads its own copy
    assert ("s3", "PutObject") in standin.calls
    assert list(client.list_objects(BUCKET, f"runctl/_staging/{instance_id}/transport/")) == []
