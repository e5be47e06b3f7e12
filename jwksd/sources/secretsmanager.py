"""AWS Secrets Manager through one long-lived aiobotocore client: the only module that knows botocore.

Each configured version stage is one document; AWSCURRENT is required, the others are optional
(a missing AWSPREVIOUS is normal). Retries are ours rather than botocore's so that every attempt
is counted in ``jwksd_aws_calls_total`` and the backoff is the configured full jitter.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import structlog
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
)

from jwksd.config import SecretsManagerSourceConfig
from jwksd.errors import SourceError
from jwksd.metrics import Metrics
from jwksd.sources import Document, Fetch
from jwksd.sources.retry import with_retries

log = structlog.get_logger("jwksd.sources.secretsmanager")

OPERATION = "GetSecretValue"
CURRENT = "AWSCURRENT"
RETRYABLE_CODES = frozenset({
    "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
    "InternalServiceError", "InternalFailure", "ServiceUnavailable", "RequestTimeout",
})
# Errors an operator must fix: retrying cannot help and would only add to the bill.
LOUD_CODES = frozenset({"AccessDeniedException", "ResourceNotFoundException", "DecryptionFailure",
                        "UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException"})


def region_of(secret_id: str) -> str | None:
    """The region named in a secret ARN, if ``secret_id`` is one."""
    parts = secret_id.split(":")
    return parts[3] if secret_id.startswith("arn:") and len(parts) > 4 and parts[3] else None


class SecretsManagerSource:
    """Reads the configured stages of one secret."""

    def __init__(self, config: SecretsManagerSourceConfig, metrics: Metrics, client: Any, stack: AsyncExitStack):
        self.name = config.name
        self.config = config
        self.metrics = metrics
        self._client = client
        self._stack = stack

    @classmethod
    async def open(cls, config: SecretsManagerSourceConfig, metrics: Metrics) -> SecretsManagerSource:
        """Create the client once; its connection pool is reused by every refresh."""
        aio_config = AioConfig(
            connect_timeout=config.connect_timeout_s,
            read_timeout=config.read_timeout_s,
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=4,
        )
        stack = AsyncExitStack()
        try:
            client = await stack.enter_async_context(get_session().create_client(
                "secretsmanager",
                region_name=config.region or region_of(config.secret_id),
                endpoint_url=config.endpoint_url,
                config=aio_config,
            ))
        except NoRegionError as exc:
            await stack.aclose()
            raise SourceError("NoRegion", "no AWS region: set source.region, AWS_REGION or use a secret ARN",
                              retryable=False) from exc
        return cls(config, metrics, client, stack)

    async def fetch(self) -> Fetch:
        documents = []
        for stage in self.config.version_stages:
            try:
                documents.append(await self._get(stage))
            except SourceError as exc:
                if stage != CURRENT and exc.code == "ResourceNotFoundException":
                    continue  # no secret version holds this stage yet: normal before the first rotation
                raise
        return Fetch(tuple(documents))

    async def _get(self, stage: str) -> Document:
        """One GetSecretValue with bounded attempts, full-jitter backoff between retryable failures."""
        response = await with_retries(lambda: self._call(stage), self.config, "aws_retry", operation=OPERATION,
                                      stage=stage)
        return self._document(stage, response)

    async def _call(self, stage: str) -> dict[str, Any]:
        """Translate everything botocore and the network can raise into SourceError, counting each call."""
        deadline = self.config.connect_timeout_s + self.config.read_timeout_s
        code = "ok"
        try:
            async with asyncio.timeout(deadline):
                response: dict[str, Any] = await self._client.get_secret_value(
                    SecretId=self.config.secret_id, VersionStage=stage)
                return response
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code") or "Unknown")
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            retryable = code in RETRYABLE_CODES or status >= 500
            message = f"{OPERATION} {stage}: {error.get('Message') or code}"
            if code in LOUD_CODES and not (stage != CURRENT and code == "ResourceNotFoundException"):
                log.error("aws_error", operation=OPERATION, stage=stage, code=code, http_status=status,
                          message=message)
            raise SourceError(code, message, retryable=retryable) from exc
        except TimeoutError as exc:
            code = "timeout"
            raise SourceError(code, f"{OPERATION} {stage}: no complete answer within {deadline:g}s",
                              retryable=True) from exc
        except (ConnectTimeoutError, ReadTimeoutError) as exc:  # botocore's own, per connect or read
            code = "timeout"
            raise SourceError(code, f"{OPERATION} {stage}: {exc}", retryable=True) from exc
        except NoCredentialsError as exc:
            code = "NoCredentials"
            raise SourceError(code, "no AWS credentials found in the standard chain", retryable=False) from exc
        except (BotoCoreError, OSError) as exc:
            code = "network"
            raise SourceError(code, f"{OPERATION} {stage}: {type(exc).__name__}: {exc}", retryable=True) from exc
        finally:
            self.metrics.aws_calls.labels(OPERATION, code).inc()

    def _document(self, stage: str, response: dict[str, Any]) -> Document:
        content: bytes
        if response.get("SecretString") is not None:
            # surrogatepass keeps a lone surrogate as invalid UTF-8 so the validator refuses it by name.
            content = str(response["SecretString"]).encode("utf-8", "surrogatepass")
        elif response.get("SecretBinary") is not None:
            content = bytes(response["SecretBinary"])
        else:
            content = b""
        return Document(label=stage, content=content, required=stage == CURRENT, version=response.get("VersionId"))

    async def close(self) -> None:
        await self._stack.aclose()
