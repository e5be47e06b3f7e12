"""The AWS boundary (jwksd/aws/): every botocore exception mapped, and calls to moto, direct or through faults."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from itertools import pairwise
from typing import Any

import boto3
import botocore.exceptions as bx
import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from jwksd import aws
from jwksd.aws.retry import NO_RETRIES, Retries
from jwksd.errors import AwsError
from jwksd.metrics import AWS_COMMON_CODES, Metrics
from tests.conftest import REGION, closed_endpoint
from tests.fault_proxy import FaultProxy, start_proxy

RETRIES = Retries(max_retries=2, retry_base_s=0.02, retry_cap_s=0.05)
Opener = Callable[..., Awaitable[aws.Client[Any]]]


def boto(service: str, endpoint: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def make_secret(endpoint: str) -> str:
    name = f"jwksd-test/{uuid.uuid4()}"
    boto("secretsmanager", endpoint).create_secret(Name=name, SecretString="{}")
    return name


def make_table(endpoint: str) -> str:
    name = f"jwksd-test-{uuid.uuid4().hex[:12]}"
    boto("dynamodb", endpoint).create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": "version", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "version", "AttributeType": "N"}])
    return name


def make_key(endpoint: str) -> str:
    key = boto("kms", endpoint).create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    return str(key["KeyMetadata"]["KeyId"])


# service -> (opener, operation, request on a resource name, maker of an existing resource)
SERVICES: dict[str, tuple[Opener, str, Callable[[Any, str], Awaitable[Any]], Callable[[str], str]]] = {
    "secretsmanager": (aws.secretsmanager, "GetSecretValue", lambda c, name: c.get_secret_value(SecretId=name),
                       make_secret),
    "dynamodb": (aws.dynamodb, "Scan", lambda c, name: c.scan(TableName=name), make_table),
    "kms": (aws.kms, "DescribeKey", lambda c, name: c.describe_key(KeyId=name), make_key),
}
MISSING = {  # what each service (as moto plays it) answers about a resource that does not exist
    "secretsmanager": ("nope", "ResourceNotFoundException", 404, "GetSecretValue: Secrets Manager can't find the "
                                                                 "specified secret."),
    "dynamodb": ("nope", "ResourceNotFoundException", 400, "Scan: Requested resource not found"),
    "kms": ("00000000-0000-0000-0000-000000000000", "NotFoundException", 400,
            "DescribeKey: Key 'arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000' "
            "does not exist"),
}


class Calls(list[tuple[str, str]]):
    """An ``on_call`` that records (operation, code) per attempt."""

    def __call__(self, operation: str, code: str) -> None:
        self.append((operation, code))


async def call(service: str, endpoint: str, name: str, *, retries: Any = NO_RETRIES, on_call: Any = None,
               region: str | None = REGION, connect_timeout_s: float = 5.0, read_timeout_s: float = 10.0) -> Any:
    """One operation of ``service`` on resource ``name`` through a client of its own."""
    opener, operation, request, _ = SERVICES[service]
    async with AsyncExitStack() as stack:
        client = await opener(stack, aws.Endpoint(region, endpoint, connect_timeout_s, read_timeout_s), retries,
                              on_call)
        return await client.call(operation, lambda raw: request(raw, name))


@pytest.fixture
async def proxy(moto_endpoint: str) -> AsyncIterator[FaultProxy]:
    running = await start_proxy(moto_endpoint, latency_s=1.5, endless_s=3.0)
    yield running
    await running.close()


def test_every_botocore_exception_class_is_mapped() -> None:
    """Each exception class botocore defines has a kind of its own (as httpx maps every httpcore exception)."""
    defined = {value for value in vars(bx).values() if isinstance(value, type) and issubclass(value, Exception)
               and not issubclass(value, Warning)}
    by_aws_code = {bx.ClientError, bx.EventStreamError}  # AWS answered: its own code is kept
    assert len(defined) > 90
    assert defined - by_aws_code - set(aws.BOTOCORE_ERRORS) == set()
    assert set(aws.BOTOCORE_ERRORS) <= defined


@pytest.mark.parametrize(("cls", "code", "retryable"), [
    (bx.ConnectTimeoutError, "timeout", True),
    (bx.ReadTimeoutError, "timeout", True),
    (bx.EndpointConnectionError, "network", True),
    (bx.SSLError, "network", True),
    (bx.NoCredentialsError, "NoCredentials", False),
    (bx.CredentialRetrievalError, "credentials_unavailable", True),
    (bx.NoRegionError, "NoRegion", False),
    (bx.UnknownEndpointError, "configuration", False),
    (bx.ParamValidationError, "invalid_request", False),
    (type("FutureTimeout", (bx.ReadTimeoutError,), {}), "timeout", True),
    (type("FutureError", (bx.BotoCoreError,), {}), "network", True),
])
def test_kinds(cls: type[Exception], code: str, retryable: bool) -> None:
    """A class maps to its own kind, a class botocore adds later to its nearest mapped base's."""
    assert aws.kind_of(cls) == aws.Kind(code, retryable)


@pytest.mark.parametrize("service", SERVICES)
async def test_aws_answer_keeps_its_code(moto_endpoint: str, service: str) -> None:
    """A refusal from AWS is raised with AWS's code, message and status, not retried, counted once."""
    calls = Calls()
    name, code, status, message = MISSING[service]
    with pytest.raises(AwsError) as info:
        await call(service, moto_endpoint, name, retries=RETRIES, on_call=calls)
    error = info.value
    assert (error.code, error.message, error.status, error.retryable) == (code, message, status, False)
    assert str(info.value) == f"{code}: {message}"
    assert calls == [(SERVICES[service][1], code)]


@pytest.mark.parametrize("service", SERVICES)
async def test_existing_resource_is_read(moto_endpoint: str, service: str) -> None:
    """A call that succeeds returns botocore's parsed response and counts one ``ok``."""
    calls = Calls()
    name = SERVICES[service][3](moto_endpoint)
    response = await call(service, moto_endpoint, name, on_call=calls)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert calls == [(SERVICES[service][1], "ok")]


@pytest.mark.parametrize(("fault", "code"), [
    ("throttling", "ThrottlingException"), ("http_500", "InternalServiceError"), ("http_503", "ServiceUnavailable"),
    ("reset", "network")])
@pytest.mark.parametrize("service", SERVICES)
async def test_transient_faults_are_retried(moto_endpoint: str, proxy: FaultProxy, service: str, fault: str,
                                            code: str) -> None:
    """Two faulted attempts, then the answer: each attempt is one request, counted, after a full-jitter pause."""
    name = SERVICES[service][3](moto_endpoint)
    operation = SERVICES[service][1]
    calls = Calls()

    def on_call(op: str, result: str) -> None:
        calls(op, result)
        if len(calls) == 2:
            proxy.fault = None  # the third attempt goes through

    proxy.fault = fault
    with capture_logs() as logs:
        response = await call(service, proxy.url, name, retries=RETRIES, on_call=on_call)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert calls == [(operation, code), (operation, code), (operation, "ok")]
    assert [a.fault for a in proxy.attempts] == [fault, fault, None]  # botocore retried nothing by itself
    retries = [event for event in logs if event["event"] == "aws_retry"]
    assert [(e["operation"], e["code"], e["attempt"]) for e in retries] == [(operation, code, 1), (operation, code, 2)]
    for event, (first, second) in zip(retries, pairwise(proxy.attempts), strict=True):
        bound = min(RETRIES.retry_cap_s, RETRIES.retry_base_s * 2 ** (event["attempt"] - 1))
        assert 0 <= event["delay_s"] <= bound + 0.001
        assert second.at - first.at >= event["delay_s"] - 0.002


@pytest.mark.parametrize("service", SERVICES)
async def test_operator_errors_are_not_retried(moto_endpoint: str, proxy: FaultProxy, service: str) -> None:
    """AccessDeniedException is raised after one request: retrying cannot fix a policy."""
    calls = Calls()
    proxy.fault = "access_denied"
    with pytest.raises(AwsError) as info:
        await call(service, proxy.url, "any", retries=RETRIES, on_call=calls)
    operation = SERVICES[service][1]
    assert str(info.value) == f"AccessDeniedException: {operation}: injected AccessDeniedException"
    assert not info.value.retryable
    assert calls == [(operation, "AccessDeniedException")] and len(proxy.attempts) == 1


async def test_read_timeout_is_a_timeout(proxy: FaultProxy) -> None:
    """An answer later than read_timeout_s is botocore's ReadTimeoutError, reported as ``timeout``, retryable."""
    calls = Calls()
    proxy.fault = "latency"
    with pytest.raises(AwsError) as info:
        # connect_timeout_s keeps the deadline (connect + read) far beyond the read timeout
        await call("kms", proxy.url, "any", on_call=calls, connect_timeout_s=5.0, read_timeout_s=0.3)
    assert (info.value.code, info.value.retryable) == ("timeout", True)
    assert info.value.message.startswith(f"DescribeKey: ReadTimeoutError: Read timeout on endpoint URL: \"{proxy.url}/")
    assert calls == [("DescribeKey", "timeout")]


async def test_endless_answer_meets_the_deadline(proxy: FaultProxy) -> None:
    """A body that trickles in forever is cut at connect + read timeout, whatever botocore's read timeout sees."""
    calls = Calls()
    proxy.fault = "endless"
    with pytest.raises(AwsError) as info:
        await call("dynamodb", proxy.url, "any", on_call=calls, connect_timeout_s=0.5, read_timeout_s=1.0)
    assert str(info.value) == "timeout: Scan: no complete answer within 1.5s"
    assert info.value.retryable
    assert calls == [("Scan", "timeout")]


async def test_cancelled_attempt_is_not_counted(proxy: FaultProxy) -> None:
    """An attempt cancelled in flight (shut-down, reload) has no outcome, so it is not counted."""
    calls = Calls()
    proxy.fault = "latency"
    task = asyncio.create_task(call("kms", proxy.url, "any", on_call=calls))

    async def sent() -> None:
        while not proxy.attempts:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(sent(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == []


async def test_unreachable_endpoint_is_retried_and_counted() -> None:
    """Nothing listening: a retryable ``network`` error, every attempt counted in jwksd_aws_calls_total."""
    metrics = Metrics(CollectorRegistry())
    on_call = aws.call_counter(metrics, ["Scan"])
    assert all(metrics.registry.get_sample_value("jwksd_aws_calls_total", {"operation": "Scan", "code": code}) == 0
               for code in AWS_COMMON_CODES)  # created up front
    endpoint = closed_endpoint()
    with pytest.raises(AwsError) as info:
        await call("dynamodb", endpoint, "any", retries=RETRIES, on_call=on_call)
    assert (info.value.code, info.value.retryable, info.value.status) == ("network", True, 0)
    assert info.value.message == (f"Scan: EndpointConnectionError: Could not connect to the endpoint URL: "
                                  f"\"{endpoint}/\"")
    assert metrics.registry.get_sample_value("jwksd_aws_calls_total", {"operation": "Scan", "code": "network"}) == 3


async def test_no_credentials(monkeypatch: pytest.MonkeyPatch, proxy: FaultProxy) -> None:
    """Without credentials no request leaves; NoCredentials is raised once, not retried."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    calls = Calls()
    with pytest.raises(AwsError) as info:
        await call("secretsmanager", proxy.url, "any", retries=RETRIES, on_call=calls)
    assert str(info.value) == "NoCredentials: GetSecretValue: no AWS credentials found in the standard chain"
    assert not info.value.retryable
    assert calls == [("GetSecretValue", "NoCredentials")] and proxy.attempts == []


async def test_no_region(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> None:
    """A client without a region cannot be opened; the error says where to set one."""
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(AwsError) as info:
        await call("secretsmanager", moto_endpoint, "any", region=None)
    assert str(info.value) == "NoRegion: secretsmanager: no AWS region: set region in the config or AWS_REGION"
    assert not info.value.retryable


async def test_invalid_request_is_not_sent(proxy: FaultProxy) -> None:
    """A request botocore refuses (an empty SecretId) is ``invalid_request``: a bug, never retried, never sent."""
    calls = Calls()
    with pytest.raises(AwsError) as info:
        await call("secretsmanager", proxy.url, "", retries=RETRIES, on_call=calls)
    assert str(info.value) == ("invalid_request: GetSecretValue: ParamValidationError: Parameter validation failed:\n"
                               "Invalid length for parameter SecretId, value: 0, valid min length: 1")
    assert calls == [("GetSecretValue", "invalid_request")] and proxy.attempts == []
