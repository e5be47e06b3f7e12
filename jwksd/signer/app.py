"""The signer's parts, opened together and closed together: AWS clients, signing keys, registry view, API app.

Retries: a registry read is one attempt plus one retry (the next read comes ``refresh_s`` later
anyway); a KMS Sign gets three attempts with a short full-jitter backoff, as the AWS boundary does
them, so a throttled call costs a caller milliseconds, not the 20 s a rotator may wait.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from jwksd import aws
from jwksd.aws.registry import RegistryHead, RegistryReader
from jwksd.aws.retry import Retries
from jwksd.config import RotationConfig, SignerConfig
from jwksd.rotation.kms import KmsBackend
from jwksd.rotation.local import LocalBackend
from jwksd.signer.api import Api
from jwksd.signer.keys import SigningKeys
from jwksd.signer.metrics import SignerMetrics
from jwksd.signer.view import RegistryView

VIEW_RETRIES = Retries(max_retries=1, retry_base_s=0.2, retry_cap_s=1.0)
SIGN_RETRIES = Retries(max_retries=2, retry_base_s=0.05, retry_cap_s=0.5)


@dataclass(frozen=True)
class Signer:
    """The running parts: the registry view (and its keys) and the API application."""

    view: RegistryView
    app: web.Application
    metrics: SignerMetrics


@asynccontextmanager
async def open_signer(rotation: RotationConfig, config: SignerConfig, *, token: bytes | None,
                      policy_problems: Callable[[RegistryHead], list[str]],
                      metrics: SignerMetrics | None = None,
                      monotonic: Callable[[], float] = time.monotonic) -> AsyncIterator[Signer]:
    """The signer's parts for ``rotation``'s registry and backend; AWS clients closed on the way out."""
    metrics = metrics or SignerMetrics()
    async with AsyncExitStack() as stack:
        def at(url: str | None) -> aws.Endpoint:
            return aws.Endpoint(rotation.region, url, rotation.connect_timeout_s, rotation.read_timeout_s)

        dynamodb = await aws.dynamodb(stack, at(rotation.dynamodb_endpoint_url), VIEW_RETRIES, metrics.count_aws)
        backend: KmsBackend | LocalBackend
        if rotation.backend == "local":
            secrets = await aws.secretsmanager(stack, at(rotation.secretsmanager_endpoint_url), VIEW_RETRIES,
                                               metrics.count_aws)
            backend = LocalBackend(secrets, rotation)
        else:
            kms = await aws.kms(stack, at(rotation.kms_endpoint_url), SIGN_RETRIES, metrics.count_aws,
                                pool_connections=config.kms_concurrency)
            backend = KmsBackend(kms, rotation)
        keys = SigningKeys(backend, kms_concurrency=config.kms_concurrency)
        view = RegistryView(RegistryReader(dynamodb, rotation.table), keys, metrics, refresh_s=config.refresh_s,
                            max_view_age_s=config.max_view_age_s, policy_problems=policy_problems,
                            monotonic=monotonic)
        app = web.Application(client_max_size=config.max_body_bytes)
        Api(view, metrics, max_body_bytes=config.max_body_bytes, token=token).routes(app)
        yield Signer(view, app, metrics)


def metrics_app(metrics: SignerMetrics) -> web.Application:
    """The signer's /metrics listener."""
    app = web.Application(client_max_size=1024)
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))
    return app
