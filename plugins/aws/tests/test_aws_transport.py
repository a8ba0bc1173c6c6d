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


def test_a_command_over_ssms_size_quota_is_refused_before_sending(standin: AwsStandIn) -> None:
    """SSM counts a command's parameters against its 64 KB document quota: refused here, loudly, with nothing sent."""
    import base64
    import os

    import pytest

    from runctl_aws.transport import COMMAND_LIMIT, command_size
    from runctl_core.errors import ProviderError

    client = AwsClient(AwsSettings.model_validate(aws_settings(standin.url)))
    instance_id = _online(standin, client)
    transport = SsmTransport(client, instance_id, BUCKET, f"runctl/_staging/{instance_id}")
    sent = len([c for c in standin.calls if c == ("ssm", "SendCommand")])
    big = base64.b64encode(os.urandom(80_000)).decode()  # does not compress: the command would be ~110 KB
    with pytest.raises(ProviderError, match="64,000 bytes") as refused:
        transport.run(["echo", big])
    assert "nothing was sent" in refused.value.message
    assert len([c for c in standin.calls if c == ("ssm", "SendCommand")]) == sent
    assert transport.run(["echo", big[:20_000]]).stdout.strip() == big[:20_000].encode()  # within it: runs
    largest = max(command_size(i.script) for i in standin.invocations.values())
    assert largest <= COMMAND_LIMIT


def test_a_bundled_command_carrying_bootstrap_stays_small(standin: AwsStandIn) -> None:
    """The first sync's command carries bootstrap.py's source in its argv: compressed, a fraction of the quota."""
    from runctl_aws.transport import COMMAND_LIMIT, command_size
    from runctl_core.remote.bundle import bootstrap_argv, bootstrap_source

    client = AwsClient(AwsSettings.model_validate(aws_settings(standin.url)))
    instance_id = _online(standin, client)
    transport = SsmTransport(client, instance_id, BUCKET, f"runctl/_staging/{instance_id}")
    argv = bootstrap_argv(["python3"], "$HOME/runctl", "t0ken", "0" * 16, 10, ["apply-sync", "--help"])
    transport.run(argv, stdin=b"x" * 10)
    (script,) = [i.script for i in standin.invocations.values()]
    # measured: 11.2 KB of command text when the request travelled as plain base64, 6.4 KB compressed (most of it
    # the transport's own program, kept readable in SSM's command history)
    assert bootstrap_source()[:200] not in script and command_size(script) < min(COMMAND_LIMIT // 7, 8_000)
