"""A stand-in for AWS on 127.0.0.1: moto's server app (EC2, S3, IAM, SSM, STS) wrapped in a WSGI middleware
that adds what moto does not do, so that what runctl sends to an instance really runs:

* EC2 instances start ``pending`` and become ``running`` after ``boot_delay``; at "boot" their user data runs
  with bash in a per-instance sandbox directory (the instance's filesystem, ``$HOME``).
* ``RunInstances`` honours ``ClientToken`` (same token + same parameters -> the same reservation; other
  parameters -> ``IdempotentParameterMismatch``), which moto ignores.
* SSM: ``DescribeInstanceInformation`` reports an instance ``Online`` ``ssm_delay`` seconds after it runs (only
  with an instance profile, as on AWS); ``SendCommand`` with ``AWS-RunShellScript`` really runs the commands
  with bash in the sandbox (pipes are read to EOF, so a background process that keeps them open hangs the
  command, as with the real agent); ``GetCommandInvocation``/``ListCommandInvocations`` report status, exit code
  and output truncated like SSM's (24,000 characters).
* Commands on an instance see a bare machine: ``PATH`` of system directories (its ``python3`` is the system one:
  no uv, no numpy), the sandbox as ``$HOME``, and this machine's network settings (to reach PyPI).
* ``shutdown`` on the instance's PATH is a fake that halts the instance: terminated or stopped according to its
  ``InstanceInitiatedShutdownBehavior``; ``shutdown -h +N`` waits N "minutes" of ``minute_seconds`` each.
* An IMDSv2 stand-in per instance at ``/_imds/INSTANCE/`` (handed to the instance as ``RUNCTL_IMDS_ENDPOINT``),
  serving ``spot/instance-action`` when a spot interruption is announced.
* Eventual consistency, as AWS documents it for the EC2 API
  (https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html): right after RunInstances, a call
  using the new instance id may fail with ``InvalidInstanceID.NotFound`` although the instance exists; the page
  names DescribeInstances and TerminateInstances, and warns that this error from TerminateInstances does not
  mean the instance is (or will be) terminated. For ``consistency_window`` seconds after RunInstances (default
  1 s, on in every test) EC2 calls naming a new instance by id answer ``InvalidInstanceID.NotFound`` and do
  nothing. (Unfiltered listings are not affected here.)
* S3 is region-bound: a request signed for another region than the bucket's is not served. A presigned GET or
  POST (query or form credential scope) answers ``307 TemporaryRedirect`` with a ``Location`` on the bucket's
  regional endpoint, which urllib does not follow for POST (S3's documented redirect for requests that reach the
  wrong region or a new bucket's global name: https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingRouting.html
  and https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html, TemporaryRedirect); a signed
  HeadBucket answers ``301`` with ``x-amz-bucket-region`` (HeadBucket API reference); other signed requests
  answer ``400 AuthorizationHeaderMalformed`` naming the expected region.
* Faults: throttling (``RequestLimitExceeded``/``ThrottlingException``) for the next N calls of an operation,
  spot capacity refused, a response lost after the call succeeded, a spot interruption (notice, then
  termination with ``Server.SpotInstanceTermination``), realistic spot prices.

When an instance ends, every process that ran "on" it is killed (found by its environment marker).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

ACCOUNT = "123456789012"
SSM_OUTPUT_LIMIT = 24000
EC2_NS = "http://ec2.amazonaws.com/doc/2016-11-15/"
DLAMI_ID = "ami-0d1a0d1a0d1a0d1a0"
DLAMI_ARM_ID = "ami-0a64a64a64a64a64a"

# The instance's own programs: the system directories only, so its ``python3`` is the machine's bare one (no uv,
# no numpy, not runctl's virtualenv) - as on the AMIs runctl picks (the Deep Learning Base AMIs carry the GPU
# driver and CUDA; Python packages are the job's environment step's to install). ``fakebin`` adds ``shutdown``.
BARE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# how this test machine reaches the package index (mirror, proxy, CA bundle): a real instance reaches PyPI
# directly; here its commands get the same network settings as the machine running the tests, and nothing else
NETWORK = {
    k: v
    for k, v in os.environ.items()
    if k.startswith(("PIP_", "UV_", "SSL_CERT_"))
    or k in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
    or k.lower() in ("http_proxy", "https_proxy", "no_proxy")
}

FAKE_SHUTDOWN = r"""#!/bin/sh
# stand-in for shutdown(8): ask the stand-in to halt this instance ("now" or "+MINUTES"; -c cancels)
exec "$STANDIN_PYTHON" - "$@" <<'EOF'
import os, sys, urllib.parse, urllib.request
args = sys.argv[1:]
when = "now"
if "-c" in args:
    when = "cancel"
for arg in args:
    if arg == "now" or arg.startswith("+"):
        when = arg
query = urllib.parse.urlencode({"instance": os.environ["STANDIN_INSTANCE"], "when": when})
urllib.request.urlopen(os.environ["STANDIN_URL"] + "/_standin/shutdown?" + query, data=b"", timeout=10).read()
print("Shutdown scheduled (%s)" % when)
EOF
"""


@dataclass
class Invocation:
    command_id: str
    instance_id: str
    script: str
    requested: float
    status: str = "Pending"
    code: int = -1
    stdout: str = ""
    stderr: str = ""
    comment: str = ""


@dataclass
class Machine:
    """What the stand-in knows about one instance beyond moto's record."""

    id: str
    region: str
    sandbox: Path
    user_data: str
    has_profile: bool
    spot: bool
    boot_at: float
    ssm_at: float
    visible_at: float = 0.0  # EC2 calls naming it by id answer NotFound until then (eventual consistency)
    booted: bool = False
    ended: bool = False
    halt_at: float | None = None
    notice: dict[str, str] | None = None
    reclaim_at: float | None = None


@dataclass
class Faults:
    throttle: dict[str, int] = field(default_factory=dict)  # operation -> how many more calls to refuse
    refuse_spot: int = 0  # how many more spot RunInstances to refuse
    refuse_spot_code: str = "InsufficientInstanceCapacity"
    lose_response: dict[str, int] = field(default_factory=dict)  # operation -> succeed, then answer 500
    html_errors: dict[str, int] = field(default_factory=dict)  # operation -> answer a 503 HTML page (a proxy's)
    profile_not_propagated: int = 0  # how many more RunInstances answer "Invalid IAM Instance Profile name"


class AwsStandIn:
    def __init__(
        self,
        root: Path,
        *,
        boot_delay: float = 0.2,
        ssm_delay: float = 0.3,
        minute_seconds: float = 1.0,
        invocation_delay: float = 0.05,
        consistency_window: float = 1.0,
    ) -> None:
        self.root = root
        self.boot_delay = boot_delay
        self.ssm_delay = ssm_delay
        self.minute_seconds = minute_seconds
        self.invocation_delay = invocation_delay
        self.consistency_window = consistency_window
        self._defaults = {"minute_seconds": minute_seconds, "consistency_window": consistency_window}
        self.faults = Faults()
        self.spot_prices: dict[str, float] = {}
        self.refused_keys: set[str] = set()  # access key ids STS answers InvalidClientTokenId for (test control)
        self.list_prices: dict[tuple[str, str], float] = {}  # (region, type) -> on-demand USD/h (Price List API)
        self.calls: list[tuple[str, str]] = []
        self.journal: list[tuple[float, str, str, str]] = []  # (when, service, operation, comment/path)
        self.machines: dict[str, Machine] = {}
        self.invocations: dict[tuple[str, str], Invocation] = {}
        self.tokens: dict[tuple[str, str], tuple[str, bytes]] = {}
        self.lock = threading.RLock()
        self.url = ""
        self._server: Any = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.fakebin = root / "fakebin"

    # ------------------------------------------------------------------------------------------ lifecycle

    def start(self) -> AwsStandIn:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        self.fakebin.mkdir(parents=True, exist_ok=True)
        shutdown = self.fakebin / "shutdown"
        shutdown.write_text(FAKE_SHUTDOWN)
        shutdown.chmod(0o755)
        self._moto = DomainDispatcherApplication(create_backend_app)
        self._server = make_server("127.0.0.1", 0, self, threaded=True, request_handler=MotoRequestHandler)
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        serve = threading.Thread(target=self._server.serve_forever, daemon=True, name="aws-standin")
        serve.start()
        ticker = threading.Thread(target=self._tick_loop, daemon=True, name="aws-standin-tick")
        ticker.start()
        self._threads += [serve, ticker]
        return self

    def stop(self) -> None:
        self._stop.set()
        with self.lock:
            for machine in self.machines.values():
                self._kill_processes(machine.id, grace=0)
        if self._server is not None:
            self._server.shutdown()

    def reset(self) -> None:
        """Forget everything (moto's state too) and kill what ran on the instances."""
        import urllib.request

        with self.lock:
            for machine in self.machines.values():
                self._kill_processes(machine.id, grace=0)
            self.machines.clear()
            self.invocations.clear()
            self.tokens.clear()
            self.calls.clear()
            self.journal.clear()
            self.faults = Faults()
            self.spot_prices = {}
            self.refused_keys = set()
            self.list_prices = {}
            self.minute_seconds = self._defaults["minute_seconds"]
            self.consistency_window = self._defaults["consistency_window"]
        urllib.request.urlopen(urllib.request.Request(self.url + "/moto-api/reset", data=b"", method="POST")).read()

    # ------------------------------------------------------------------------------------------ test controls

    def interrupt(self, instance_id: str, notice_seconds: float = 1.0) -> None:
        """Announce a spot interruption on IMDS now; terminate the instance ``notice_seconds`` later."""
        with self.lock:
            machine = self.machines[instance_id]
            when = datetime.fromtimestamp(time.time() + notice_seconds, timezone.utc)
            machine.notice = {"action": "terminate", "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
            machine.reclaim_at = time.monotonic() + notice_seconds

    def instance_dir(self, instance_id: str) -> Path:
        return self.machines[instance_id].sandbox

    def ec2_instance(self, instance_id: str, region: str = "us-east-1") -> Any:
        from moto.backends import get_backend

        return get_backend("ec2")[ACCOUNT][region].get_instance(instance_id)

    def live_processes(self, instance_id: str) -> list[int]:
        return _pids_with_marker(f"STANDIN_INSTANCE={instance_id}")

    # ------------------------------------------------------------------------------------------ WSGI

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_imds/"):
            return self._imds(environ, start_response, path)
        if path.startswith("/_standin/shutdown"):
            return self._shutdown_request(environ, start_response)
        self.tick()
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        service, region = _service_region(environ)
        wrong = self._wrong_s3_region(environ, service, region, body)
        if wrong is not None:
            return wrong(start_response)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target == "AWSPriceListService.GetProducts":
            self._record("pricing", "GetProducts")
            return self._get_products(start_response, json.loads(body or b"{}"))
        if target.startswith("AmazonSSM."):
            operation = target.split(".", 1)[1]
            self._record("ssm", operation, json.loads(body or b"{}").get("Comment", ""))
            if self._take(self.faults.throttle, operation):
                return _json(start_response, 400, {"__type": "ThrottlingException", "message": "Rate exceeded"})
            handler = getattr(self, f"_ssm_{operation}", None)
            if handler is not None:
                result = handler(start_response, json.loads(body or b"{}"), region)
                if result is not None:
                    return result
        elif service == "ec2" and body:
            params = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
            action = params.get("Action", "")
            self._record("ec2", action)
            if self._take(self.faults.throttle, action):
                return _ec2_error(start_response, 503, "RequestLimitExceeded", "Request limit exceeded.")
            if self._take(self.faults.html_errors, action):
                return _html_error(start_response)
            if action == "RunInstances":
                return self._run_instances(environ, start_response, params, region, body)
            unseen = self._not_yet_visible(params)
            if unseen:
                return _ec2_error(
                    start_response, 400, "InvalidInstanceID.NotFound", f"The instance ID '{unseen}' does not exist"
                )
            if action == "DescribeSpotPriceHistory" and self.spot_prices:
                return self._spot_price_history(start_response, params, region)
            if action == "TerminateInstances":
                result = self._moto(environ, start_response)
                self.tick()
                return result
        elif service in ("iam", "sts") and body:
            action = parse_qs(body.decode(), keep_blank_values=True).get("Action", [""])[0]
            self._record(service, action)
            key_id = re.search(r"Credential=([A-Z0-9]+)/", environ.get("HTTP_AUTHORIZATION", ""))
            if service == "sts" and key_id and key_id.group(1) in self.refused_keys:
                # an unknown or deactivated access key: STS answers 403 InvalidClientTokenId, "The security token
                # included in the request is invalid." (STS API reference, GetCallerIdentity, Common Errors)
                return _sts_error(start_response, 403, "InvalidClientTokenId")
        elif service == "s3":
            self._record("s3", _s3_operation(environ.get("REQUEST_METHOD", ""), path, environ), path)
        elif service:
            self._record(service, environ.get("REQUEST_METHOD", "") + " " + path)
        return self._moto(environ, start_response)

    def _wrong_s3_region(self, environ: dict[str, Any], service: str, region: str, body: bytes) -> Any:
        """S3's answer to a request signed for a region other than the bucket's, or None when it is right."""
        path = environ.get("PATH_INFO", "")
        bucket_name = path.strip("/").split("/", 1)[0]
        if not bucket_name or service not in ("s3", ""):
            return None
        query = parse_qs(environ.get("QUERY_STRING", ""))
        presigned = ""
        if "X-Amz-Credential" in query:
            presigned = query["X-Amz-Credential"][0]
        elif service == "" and environ.get("REQUEST_METHOD") == "POST":
            match = re.search(rb'name="x-amz-credential"\r\n\r\n([^\r]+)', body)
            presigned = match.group(1).decode() if match else ""
        if service == "" and not presigned:
            return None
        signed = presigned.split("/")[2] if presigned.count("/") >= 3 else region
        bucket_region = self.bucket_region(bucket_name)
        if bucket_region is None or signed == bucket_region:
            return None
        regional = f"{bucket_name}.s3.{bucket_region}.amazonaws.com"
        if presigned:
            return lambda start: _s3_error(
                start,
                "307 Temporary Redirect",
                "TemporaryRedirect",
                "Please re-send this request to the "
                "specified temporary endpoint. Continue to use the original request endpoint for future requests.",
                [("Location", f"https://{regional}{path}")],
                f"<Endpoint>{regional}</Endpoint>",
            )
        if environ.get("REQUEST_METHOD") == "HEAD" and "/" not in path.strip("/"):
            return lambda start: _s3_error(
                start, "301 Moved Permanently", "PermanentRedirect", "", [("x-amz-bucket-region", bucket_region)], ""
            )
        return lambda start: _s3_error(
            start,
            "400 Bad Request",
            "AuthorizationHeaderMalformed",
            f"The authorization header is malformed; the region '{signed}' is wrong; expecting '{bucket_region}'",
            [("x-amz-bucket-region", bucket_region)],
            f"<Region>{bucket_region}</Region>",
        )

    def bucket_region(self, name: str) -> str | None:
        from moto.backends import get_backend

        try:
            return str(get_backend("s3")[ACCOUNT]["aws"].buckets[name].region_name)
        except KeyError:
            return None

    def _not_yet_visible(self, params: dict[str, str]) -> str:
        """The first instance id named in the call that EC2 does not show yet (eventual consistency), or ""."""
        now = time.monotonic()
        with self.lock:
            for key, value in params.items():
                if key.startswith("InstanceId."):
                    machine = self.machines.get(value)
                    if machine is not None and now < machine.visible_at:
                        return value
        return ""

    def _record(self, service: str, operation: str, note: str = "") -> None:
        """Count one request runctl made (the round trips of issue 15 are counted from this journal)."""
        self.calls.append((service, operation))
        self.journal.append((time.monotonic(), service, operation, note))

    def _take(self, counters: dict[str, int], operation: str) -> bool:
        with self.lock:
            if counters.get(operation, 0) > 0:
                counters[operation] -= 1
                return True
        return False

    # ------------------------------------------------------------------------------------------ EC2

    def _run_instances(
        self, environ: dict[str, Any], start_response: Any, params: dict[str, str], region: str, body: bytes
    ) -> Any:
        spot = params.get("InstanceMarketOptions.MarketType") == "spot"
        token = params.get("ClientToken", "")
        fingerprint = json.dumps({k: v for k, v in params.items() if k != "ClientToken"}, sort_keys=True)
        with self.lock:
            if token and (region, token) in self.tokens:
                seen, reply = self.tokens[(region, token)]
                if seen != fingerprint:
                    return _ec2_error(
                        start_response,
                        400,
                        "IdempotentParameterMismatch",
                        "The client token you have provided is associated with a resource that is "
                        "already deleted or has different parameters.",
                    )
                start_response("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(reply)))])
                return [reply]
            if self.faults.profile_not_propagated > 0 and params.get("IamInstanceProfile.Name"):
                # IAM is eventually consistent: a just-created instance profile may not be usable by EC2 yet
                # (https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html, "Changes that I make
                # are not always immediately visible"); EC2 answers RunInstances with this InvalidParameterValue
                self.faults.profile_not_propagated -= 1
                name = params["IamInstanceProfile.Name"]
                return _ec2_error(
                    start_response,
                    400,
                    "InvalidParameterValue",
                    f"Value ({name}) for parameter iamInstanceProfile.name is invalid. "
                    "Invalid IAM Instance Profile name",
                )
            if spot and self.faults.refuse_spot > 0:
                self.faults.refuse_spot -= 1
                return _ec2_error(
                    start_response,
                    500,
                    self.faults.refuse_spot_code,
                    "There is no Spot capacity available that matches your request.",
                )
        status_headers: list[Any] = []

        def capture(status: str, headers: list[Any], exc_info: Any = None) -> Any:
            status_headers[:] = [status, headers]
            return lambda data: None

        reply = b"".join(self._moto(environ, capture))
        status = status_headers[0]
        if not status.startswith("200"):
            start_response(status, status_headers[1])
            return [reply]
        text = reply.decode()
        text = re.sub(
            r"<instanceState>\s*<code>16</code>\s*<name>running</name>\s*</instanceState>",
            "<instanceState><code>0</code><name>pending</name></instanceState>",
            text,
        )
        reply = text.encode()
        ids = re.findall(r"<instanceId>(i-[0-9a-f]+)</instanceId>", text)
        user_data = base64.b64decode(params.get("UserData", "")).decode() if params.get("UserData") else ""
        has_profile = bool(params.get("IamInstanceProfile.Name") or params.get("IamInstanceProfile.Arn"))
        now = time.monotonic()
        with self.lock:
            for instance_id in dict.fromkeys(ids):
                instance = self.ec2_instance(instance_id, region)
                instance._state.name, instance._state.code = "pending", 0
                sandbox = self.root / "instances" / instance_id
                sandbox.mkdir(parents=True, exist_ok=True)
                self.machines[instance_id] = Machine(
                    id=instance_id,
                    region=region,
                    sandbox=sandbox,
                    user_data=user_data,
                    has_profile=has_profile,
                    spot=spot,
                    boot_at=now + self.boot_delay,
                    ssm_at=now + self.boot_delay + self.ssm_delay,
                    visible_at=now + self.consistency_window,
                )
            if token:
                self.tokens[(region, token)] = (fingerprint, reply)
            lost = self._take(self.faults.lose_response, "RunInstances")
        if lost:
            return _ec2_error(start_response, 500, "InternalError", "An internal error has occurred.")
        headers = [(k, v) for k, v in status_headers[1] if k.lower() != "content-length"]
        start_response(status, [*headers, ("Content-Length", str(len(reply)))])
        return [reply]

    def _spot_price_history(self, start_response: Any, params: dict[str, str], region: str) -> Any:
        types = [v for k, v in params.items() if k.startswith("InstanceType.")]
        items = "".join(
            f"<item><instanceType>{kind}</instanceType><productDescription>Linux/UNIX</productDescription>"
            f"<spotPrice>{price:.6f}</spotPrice><timestamp>{datetime.now(timezone.utc).isoformat()}</timestamp>"
            f"<availabilityZone>{region}{zone}</availabilityZone></item>"
            for kind, price in self.spot_prices.items()
            if not types or kind in types
            for zone, price in (("a", price), ("b", price * 1.1))
        )
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><DescribeSpotPriceHistoryResponse xmlns="{EC2_NS}">'
            f"<requestId>{uuid.uuid4()}</requestId><spotPriceHistorySet>{items}</spotPriceHistorySet>"
            "</DescribeSpotPriceHistoryResponse>"
        ).encode()
        start_response("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
        return [body]

    # ------------------------------------------------------------------------------------------ Price List

    def _get_products(self, start_response: Any, request: dict[str, Any]) -> Any:
        """The Price List Query API's GetProducts (moto has none): products as JSON strings in the aws_v1 format
        (https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_pricing_GetProducts.html), built
        from ``list_prices`` ((region, type) -> USD/h) for TERM_MATCH filters on instanceType and regionCode."""
        wanted = {f["Field"]: f["Value"] for f in request.get("Filters", []) if f.get("Type") == "TERM_MATCH"}
        items = []
        for (region, kind), price in self.list_prices.items():
            if wanted.get("instanceType", kind) != kind or wanted.get("regionCode", region) != region:
                continue
            sku = uuid.uuid5(uuid.NAMESPACE_DNS, f"{region}/{kind}").hex[:16].upper()
            attributes = {
                "instanceType": kind,
                "regionCode": region,
                "operatingSystem": "Linux",
                "tenancy": "Shared",
                "preInstalledSw": "NA",
                "capacitystatus": "Used",
            }
            dimension = {"unit": "Hrs", "pricePerUnit": {"USD": f"{price:.10f}"}, "description": f"{kind} Linux"}
            term = {"sku": sku, "priceDimensions": {f"{sku}.JRTCKXETXF.6YS6EN2CT7": dimension}}
            product = {
                "product": {"productFamily": "Compute Instance", "attributes": attributes, "sku": sku},
                "serviceCode": "AmazonEC2",
                "terms": {"OnDemand": {f"{sku}.JRTCKXETXF": term}},
                "version": "20261101000000",
                "publicationDate": "2026-11-01T00:00:00Z",
            }
            items.append(json.dumps(product))
        return _json(start_response, 200, {"FormatVersion": "aws_v1", "PriceList": items})

    # ------------------------------------------------------------------------------------------ SSM

    def _ssm_GetParameter(self, start_response: Any, request: dict[str, Any], region: str) -> Any:
        name = request.get("Name", "")
        if name.startswith("/aws/service/deeplearning/"):  # public parameters moto does not carry
            value = DLAMI_ARM_ID if "/arm64/" in name else DLAMI_ID
            return _json(
                start_response,
                200,
                {"Parameter": {"Name": name, "Type": "String", "Value": value, "Version": 1, "DataType": "text"}},
            )
        return None  # everything else: moto

    def _ssm_DescribeInstanceInformation(self, start_response: Any, request: dict[str, Any], region: str) -> Any:
        wanted: set[str] = set()
        for item in request.get("Filters", []):
            if item.get("Key") == "InstanceIds":
                wanted.update(item.get("Values", []))
        for item in request.get("InstanceInformationFilterList", []):
            if item.get("key") == "InstanceIds":
                wanted.update(item.get("valueSet", []))
        found = []
        with self.lock:
            for machine in self.machines.values():
                if machine.region != region or (wanted and machine.id not in wanted):
                    continue
                state = self._ping(machine)
                if state is None:
                    continue
                found.append(
                    {
                        "InstanceId": machine.id,
                        "PingStatus": state,
                        "PlatformType": "Linux",
                        "PlatformName": "Amazon Linux",
                        "AgentVersion": "3.3.0.0",
                        "ResourceType": "EC2Instance",
                        "LastPingDateTime": time.time(),
                        "IsLatestVersion": True,
                    }
                )
        return _json(start_response, 200, {"InstanceInformationList": found})

    def _ping(self, machine: Machine) -> str | None:
        if not machine.has_profile or not machine.booted:
            return None
        if machine.ended:
            return "ConnectionLost"
        return "Online" if time.monotonic() >= machine.ssm_at else None

    def _ssm_SendCommand(self, start_response: Any, request: dict[str, Any], region: str) -> Any:
        if request.get("DocumentName") != "AWS-RunShellScript":
            return _json(start_response, 400, {"__type": "InvalidDocument", "message": "only AWS-RunShellScript"})
        ids = request.get("InstanceIds", [])
        parameters = request.get("Parameters", {})
        script = "\n".join(parameters.get("commands", []))
        timeout = float((parameters.get("executionTimeout") or ["3600"])[0])
        with self.lock:
            bad = [i for i in ids if i not in self.machines or self._ping(self.machines[i]) != "Online"]
            if not ids or bad:
                return _json(
                    start_response,
                    400,
                    {"__type": "InvalidInstanceId", "message": f"Instances {bad} not in a valid state for account"},
                )
            command_id = str(uuid.uuid4())
            for instance_id in ids:
                invocation = Invocation(
                    command_id, instance_id, script, time.monotonic(), comment=request.get("Comment", "")
                )
                self.invocations[(command_id, instance_id)] = invocation
                thread = threading.Thread(target=self._execute, args=(invocation, timeout), daemon=True)
                thread.start()
        return _json(
            start_response,
            200,
            {
                "Command": {
                    "CommandId": command_id,
                    "DocumentName": "AWS-RunShellScript",
                    "InstanceIds": ids,
                    "Status": "Pending",
                    "Comment": request.get("Comment", ""),
                    "RequestedDateTime": time.time(),
                }
            },
        )

    def _ssm_GetCommandInvocation(self, start_response: Any, request: dict[str, Any], region: str) -> Any:
        key = (request.get("CommandId", ""), request.get("InstanceId", ""))
        with self.lock:
            invocation = self.invocations.get(key)
            if invocation is None or time.monotonic() - invocation.requested < self.invocation_delay:
                return _json(start_response, 400, {"__type": "InvocationDoesNotExist", "message": ""})
            return _json(start_response, 200, self._invocation_record(invocation))

    def _ssm_ListCommandInvocations(self, start_response: Any, request: dict[str, Any], region: str) -> Any:
        with self.lock:
            found = [
                self._invocation_record(inv)
                for (cid, iid), inv in self.invocations.items()
                if (not request.get("CommandId") or cid == request["CommandId"])
                and (not request.get("InstanceId") or iid == request["InstanceId"])
            ]
        return _json(start_response, 200, {"CommandInvocations": found})

    def _invocation_record(self, invocation: Invocation) -> dict[str, Any]:
        return {
            "CommandId": invocation.command_id,
            "InstanceId": invocation.instance_id,
            "DocumentName": "AWS-RunShellScript",
            "Status": invocation.status,
            "StatusDetails": invocation.status,
            "ResponseCode": invocation.code,
            "Comment": invocation.comment,
            "StandardOutputContent": invocation.stdout[:SSM_OUTPUT_LIMIT],
            "StandardErrorContent": invocation.stderr[:SSM_OUTPUT_LIMIT],
        }

    def _env(self, machine: Machine) -> dict[str, str]:
        return {
            "PATH": f"{self.fakebin}:{BARE_PATH}",
            "HOME": str(machine.sandbox),
            "LANG": "C.UTF-8",
            "STANDIN_INSTANCE": machine.id,
            "STANDIN_URL": self.url,
            "STANDIN_PYTHON": sys.executable,
            "RUNCTL_IMDS_ENDPOINT": f"{self.url}/_imds/{machine.id}",
            **NETWORK,
        }

    def _execute(self, invocation: Invocation, timeout: float) -> None:
        machine = self.machines[invocation.instance_id]
        workdir = machine.sandbox / ".ssm" / invocation.command_id
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "_script.sh").write_text(invocation.script)
        invocation.status = "InProgress"
        proc = subprocess.Popen(
            ["bash", str(workdir / "_script.sh")],
            cwd=workdir,
            env=self._env(machine),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
            status = "Success" if proc.returncode == 0 else "Failed"
        except subprocess.TimeoutExpired:
            _killpg(proc.pid)
            out, err = proc.communicate()
            status = "TimedOut"
        with self.lock:
            invocation.stdout = out.decode("utf-8", errors="replace")
            invocation.stderr = err.decode("utf-8", errors="replace")
            invocation.code = proc.returncode if proc.returncode >= 0 else -1
            invocation.status = status

    # ------------------------------------------------------------------------------------------ instance life

    def _tick_loop(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.tick()
            except Exception:  # pragma: no cover - keep ticking; a test will show the failure
                pass

    def tick(self) -> None:
        """Advance every instance's life: boot, scheduled halts, spot reclaims, ended instances."""
        now = time.monotonic()
        with self.lock:
            for machine in list(self.machines.values()):
                if machine.ended:
                    continue
                try:
                    instance = self.ec2_instance(machine.id, machine.region)
                except Exception:
                    machine.ended = True  # moto was reset
                    continue
                if instance.state in ("terminated", "stopped", "shutting-down", "stopping"):
                    self._end(machine)
                    continue
                if not machine.booted and now >= machine.boot_at:
                    instance._state.name, instance._state.code = "running", 16
                    machine.booted = True
                    self._boot(machine)
                if machine.reclaim_at is not None and now >= machine.reclaim_at:
                    from moto.ec2.models.instances import StateReason

                    instance.terminate()
                    instance.state_reason = StateReason(
                        "Server.SpotInstanceTermination: Spot instance termination", "Server.SpotInstanceTermination"
                    )
                    self._end(machine)
                elif machine.halt_at is not None and now >= machine.halt_at:
                    from moto.ec2.models.instances import StateReason

                    if instance.instance_initiated_shutdown_behavior == "terminate":
                        instance.terminate()
                    else:
                        instance.stop()
                    instance.state_reason = StateReason(
                        "Client.InstanceInitiatedShutdown: Instance initiated shutdown",
                        "Client.InstanceInitiatedShutdown",
                    )
                    self._end(machine)

    def _boot(self, machine: Machine) -> None:
        if not machine.user_data.strip():
            return
        script = machine.sandbox / ".cloud-init" / "user-data"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(machine.user_data)
        with (script.parent / "output.log").open("ab") as log:
            subprocess.Popen(
                ["bash", str(script)],
                cwd=machine.sandbox,
                env=self._env(machine),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def _end(self, machine: Machine) -> None:
        machine.ended = True
        threading.Thread(target=self._kill_processes, args=(machine.id, 0.5), daemon=True).start()

    def _kill_processes(self, instance_id: str, grace: float) -> None:
        """What a halt does to the processes of the machine: SIGTERM, a moment, SIGKILL."""
        marker = f"STANDIN_INSTANCE={instance_id}"
        pids = _pids_with_marker(marker)
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = _pids_with_marker(marker)
        for pid in _pids_with_marker(marker):
            _signal(pid, signal.SIGKILL)

    def _shutdown_request(self, environ: dict[str, Any], start_response: Any) -> Any:
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        with self.lock:
            machine = self.machines.get(query.get("instance", ""))
            if machine is None:
                return _json(start_response, 404, {"error": "no such instance"})
            when = query.get("when", "now")
            if when == "cancel":
                machine.halt_at = None
            elif when == "now":
                machine.halt_at = time.monotonic()
            else:
                machine.halt_at = time.monotonic() + float(when.lstrip("+")) * self.minute_seconds
        return _json(start_response, 200, {"ok": True})

    # ------------------------------------------------------------------------------------------ IMDS

    def _imds(self, environ: dict[str, Any], start_response: Any, path: str) -> Any:
        parts = path.split("/", 3)  # "", "_imds", instance, rest
        machine = self.machines.get(parts[2]) if len(parts) > 3 else None
        rest = "/" + parts[3] if len(parts) > 3 else "/"
        if machine is None or machine.ended:
            return _text(start_response, 404, "")
        if rest == "/latest/api/token":
            if environ.get("REQUEST_METHOD") != "PUT" or not environ.get("HTTP_X_AWS_EC2_METADATA_TOKEN_TTL_SECONDS"):
                return _text(start_response, 400, "")
            return _text(start_response, 200, f"token-{machine.id}")
        if environ.get("HTTP_X_AWS_EC2_METADATA_TOKEN") != f"token-{machine.id}":
            return _text(start_response, 401, "")  # IMDSv2 only
        if rest == "/latest/meta-data/spot/instance-action":
            if machine.notice is None:
                return _text(start_response, 404, "Not Found")
            return _text(start_response, 200, json.dumps(machine.notice))
        if rest == "/latest/meta-data/instance-id":
            return _text(start_response, 200, machine.id)
        return _text(start_response, 404, "Not Found")


def _s3_operation(method: str, path: str, environ: dict[str, Any]) -> str:
    """The S3 API operation of a path-style REST request (the names of the S3 API reference)."""
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    on_object = len(path.strip("/").split("/", 1)) == 2
    if method == "HEAD":
        return "HeadObject" if on_object else "HeadBucket"
    if method == "GET":
        if on_object:
            return "GetObject"
        if "location" in query:
            return "GetBucketLocation"
        return "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects"
    if method == "PUT":
        return "PutObject" if on_object else "CreateBucket"
    if method == "DELETE":
        return "DeleteObject" if on_object else "DeleteBucket"
    if method == "POST":
        return "DeleteObjects" if "delete" in query else "PostObject"
    return f"{method} {path}"


def _service_region(environ: dict[str, Any]) -> tuple[str, str]:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    match = re.search(r"Credential=[^/]+/\d+/([^/]+)/([^/]+)/", auth)
    if match:
        return match.group(2), match.group(1)
    return "", "us-east-1"


def _json(start_response: Any, status: int, payload: dict[str, Any]) -> list[bytes]:
    body = json.dumps(payload, default=str).encode()
    start_response(
        f"{status} {'OK' if status == 200 else 'Error'}",
        [
            ("Content-Type", "application/x-amz-json-1.1"),
            ("Content-Length", str(len(body))),
            ("x-amzn-RequestId", str(uuid.uuid4())),
        ],
    )
    return [body]


def _text(start_response: Any, status: int, text: str) -> list[bytes]:
    body = text.encode()
    start_response(
        f"{status} {'OK' if status == 200 else 'Error'}",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _ec2_error(start_response: Any, status: int, code: str, message: str) -> list[bytes]:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
        f"<Message>{message}</Message></Error></Errors><RequestID>{uuid.uuid4()}</RequestID></Response>"
    ).encode()
    start_response(f"{status} Error", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
    return [body]


def _sts_error(start_response: Any, status: int, code: str) -> list[bytes]:
    body = (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>The security token included in the request is invalid.</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    ).encode()
    start_response(f"{status} Forbidden", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
    return [body]


def _s3_error(
    start_response: Any, status: str, code: str, message: str, headers: list[tuple[str, str]], extra: str
) -> list[bytes]:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>{extra}'
        f"<RequestId>{uuid.uuid4().hex[:16]}</RequestId></Error>"
    ).encode()
    if status.startswith("301") and code == "PermanentRedirect" and not message:
        body = b""  # a HEAD answer has no body
    start_response(status, [("Content-Type", "application/xml"), ("Content-Length", str(len(body))), *headers])
    return [body]


def _html_error(start_response: Any) -> list[bytes]:
    """What a load balancer or proxy in front of an endpoint answers: an HTML page, not the service's XML."""
    body = (
        b"<!DOCTYPE html><html><head><title>503 Service Unavailable</title></head>"
        b"<body><h1>Service Unavailable</h1><p>The server is temporarily unable to service your request.</p>"
        b"</body></html>"
    )
    start_response("503 Service Unavailable", [("Content-Type", "text/html"), ("Content-Length", str(len(body)))])
    return [body]


def _pids_with_marker(marker: str) -> list[int]:
    found = []
    needle = marker.encode() + b"\0"
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if needle in fh.read() + b"\0":
                    with open(f"/proc/{entry}/stat") as stat:
                        if stat.read().split(")")[-1].split()[0] == "Z":
                            continue
                    found.append(int(entry))
        except OSError:
            continue
    return found


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
