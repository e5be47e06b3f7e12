"""The secretsmanager source: each version stage one document, errors named by stage, every attempt counted."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from jwksd.config import SecretsManagerSourceConfig
from jwksd.errors import SourceError
from jwksd.metrics import Metrics
from jwksd.sources.secretsmanager import SecretsManagerSource, region_of
from tests.conftest import REGION, Secrets, closed_endpoint
from tests.daemon_helpers import get_jwks, kids_of, metric, refresh_now, sm_config, start
from tests.keys import jwk_set, key


async def open_source(endpoint: str, secret_id: str, **settings: Any) -> tuple[SecretsManagerSource, Metrics]:
    metrics = Metrics(CollectorRegistry())
    settings.setdefault("region", REGION)
    config = SecretsManagerSourceConfig(secret_id=secret_id, endpoint_url=endpoint, **settings)
    return await SecretsManagerSource.open(config, metrics), metrics


def calls(metrics: Metrics, code: str) -> float | None:
    return metrics.registry.get_sample_value("jwksd_aws_calls_total", {"operation": "GetSecretValue", "code": code})


def test_region_of_an_arn() -> None:
    """A secret ARN names its region; a plain name does not."""
    assert region_of("arn:aws:secretsmanager:eu-west-1:123456789012:secret:jwks-AbCdEf") == "eu-west-1"
    assert region_of("jwks") is None
    assert region_of("arn:aws:secretsmanager::123456789012:secret:jwks") is None


async def test_no_region_says_where_to_set_one(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> None:
    """With no region anywhere the source does not open, and the error names the three ways to give one."""
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(SourceError) as info:
        await open_source(moto_endpoint, "jwks", region=None)
    assert str(info.value) == "NoRegion: no AWS region: set source.region, AWS_REGION or use a secret ARN"
    assert not info.value.retryable


async def test_missing_previous_stage_is_normal(secrets: Secrets) -> None:
    """A secret never rotated has no AWSPREVIOUS: one required document, no error logged, both calls counted."""
    source, metrics = await open_source(secrets.endpoint, secrets.create(jwk_set(key(0))))
    try:
        with capture_logs() as logs:
            fetch = await source.fetch()
    finally:
        await source.close()
    assert [(d.label, d.required, json.loads(d.content)) for d in fetch.documents] == [
        ("AWSCURRENT", True, {"keys": [key(0)]})]
    assert fetch.documents[0].version
    assert [event for event in logs if event["log_level"] == "error"] == []
    assert (calls(metrics, "ok"), calls(metrics, "ResourceNotFoundException")) == (1, 1)


async def test_missing_secret_is_named_by_stage(secrets: Secrets) -> None:
    """A secret that does not exist fails the fetch with the stage in the message, logged once as an error."""
    source, metrics = await open_source(secrets.endpoint, "does-not-exist", max_retries=3)
    try:
        with capture_logs() as logs, pytest.raises(SourceError) as info:
            await source.fetch()
    finally:
        await source.close()
    assert str(info.value) == ("ResourceNotFoundException: GetSecretValue AWSCURRENT: Secrets Manager can't find "
                               "the specified secret.")
    assert not info.value.retryable
    assert [(e["event"], e["code"], e["stage"]) for e in logs if e["log_level"] == "error"] == [
        ("aws_error", "ResourceNotFoundException", "AWSCURRENT")]
    assert calls(metrics, "ResourceNotFoundException") == 1


async def test_unreachable_endpoint_is_retried_by_stage() -> None:
    """Each retry of a network error logs aws_retry with the stage; the last error is retryable and named."""
    endpoint = closed_endpoint()
    source, metrics = await open_source(endpoint, "jwks", max_retries=1, retry_base_s=0.01, retry_cap_s=0.01)
    try:
        with capture_logs() as logs, pytest.raises(SourceError) as info:
            await source.fetch()
    finally:
        await source.close()
    assert str(info.value) == ("network: GetSecretValue AWSCURRENT: EndpointConnectionError: Could not connect to "
                               f"the endpoint URL: \"{endpoint}/\"")
    assert info.value.retryable
    assert [(e["operation"], e["stage"], e["attempt"]) for e in logs if e["event"] == "aws_retry"] == [
        ("GetSecretValue", "AWSCURRENT", 1)]
    assert calls(metrics, "network") == 2


async def test_secret_binary_is_read(aiohttp_client: Any, secrets: Secrets) -> None:
    """A document stored as SecretBinary is served like a SecretString."""
    secret = secrets.create(jwk_set(key(0)).encode())
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secret))
    assert kids_of((await get_jwks(client))[2]) == ["key-0"]


async def test_rotation_keeps_current_and_previous(aiohttp_client: Any, secrets: Secrets) -> None:
    """After a rotation the union of AWSCURRENT and AWSPREVIOUS is served, so old tokens still verify."""
    secret = secrets.create(jwk_set(key(0)))
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secret))
    assert kids_of((await get_jwks(client))[2]) == ["key-0"]
    secrets.put(secret, jwk_set(key(1)))
    await refresh_now(client)
    assert kids_of((await get_jwks(client))[2]) == ["key-0", "key-1"]
    secrets.put(secret, jwk_set(key(2)))
    await refresh_now(client)
    assert kids_of((await get_jwks(client))[2]) == ["key-1", "key-2"]


async def test_kid_conflict_between_stages_current_wins(aiohttp_client: Any, secrets: Secrets) -> None:
    """The same kid with different material in two stages: the AWSCURRENT key is served."""
    secret = secrets.create(jwk_set(key(0, "same")))
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secret))
    secrets.put(secret, jwk_set(key(1, "same")))
    await refresh_now(client)
    served = json.loads((await get_jwks(client))[2])["keys"]
    assert len(served) == 1
    assert served[0]["n"] == key(1, "same")["n"]


async def test_access_denied_not_retried_and_counted(aiohttp_client: Any, secrets: Secrets) -> None:
    """A missing secret is an operator error: counted once, not retried, named in health."""
    client = await start(aiohttp_client, sm_config(secrets.endpoint, "does-not-exist", max_retries=3))
    assert metric(client, "jwksd_aws_calls_total", operation="GetSecretValue", code="ResourceNotFoundException") == 1
    health = await (await client.get("/health")).json()
    assert health["checks"]["jwks"]["last_error"]["code"] == "ResourceNotFoundException"


@pytest.mark.parametrize("retries", [0, 2])
async def test_network_errors_retried_as_configured(aiohttp_client: Any, retries: int) -> None:
    """A network error is retried max_retries times, each attempt counted as an AWS call."""
    client = await start(aiohttp_client, sm_config(closed_endpoint(), "x", max_retries=retries))
    assert metric(client, "jwksd_aws_calls_total", operation="GetSecretValue", code="network") == retries + 1
