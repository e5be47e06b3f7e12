"""AWS Secrets Manager: each configured version stage of one secret is a document.

AWSCURRENT is required, the others are optional (a missing AWSPREVIOUS is normal). The client,
its retries and the counting of every attempt in ``jwksd_aws_calls_total`` are :mod:`jwksd.aws`'s;
this module turns an AwsError into a SourceError naming the stage.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import structlog

from jwksd import aws
from jwksd.config import SecretsManagerSourceConfig
from jwksd.errors import AwsError, SourceError
from jwksd.metrics import Metrics
from jwksd.sources import Document, Fetch

if TYPE_CHECKING:
    from types_aiobotocore_secretsmanager import SecretsManagerClient
    from types_aiobotocore_secretsmanager.type_defs import GetSecretValueResponseTypeDef

log = structlog.get_logger("jwksd.sources.secretsmanager")

OPERATION = "GetSecretValue"
CURRENT = "AWSCURRENT"
# Errors an operator must fix: retrying cannot help and would only add to the bill.
LOUD_CODES = frozenset({"AccessDeniedException", "ResourceNotFoundException", "DecryptionFailure",
                        "UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException"})


def region_of(secret_id: str) -> str | None:
    """The region named in a secret ARN, if ``secret_id`` is one."""
    parts = secret_id.split(":")
    return parts[3] if secret_id.startswith("arn:") and len(parts) > 4 and parts[3] else None


class SecretsManagerSource:
    """Reads the configured stages of one secret."""

    def __init__(self, config: SecretsManagerSourceConfig, client: aws.Client[SecretsManagerClient],
                 stack: AsyncExitStack) -> None:
        self.name = config.name
        self.config = config
        self._client = client
        self._stack = stack

    @classmethod
    async def open(cls, config: SecretsManagerSourceConfig, metrics: Metrics) -> SecretsManagerSource:
        """Create the client once; its connection pool is reused by every refresh."""
        endpoint = aws.Endpoint(config.region or region_of(config.secret_id), config.endpoint_url,
                                config.connect_timeout_s, config.read_timeout_s)
        stack = AsyncExitStack()
        try:
            client = await aws.secretsmanager(stack, endpoint, config, aws.call_counter(metrics, (OPERATION,)))
        except AwsError as exc:
            await stack.aclose()
            if exc.code == "NoRegion":
                raise SourceError(exc.code, "no AWS region: set source.region, AWS_REGION or use a secret ARN",
                                  retryable=False) from exc
            raise SourceError(exc.code, exc.message, retryable=False) from exc
        return cls(config, client, stack)

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
        """One GetSecretValue, retried as the source's config says; an operator's error is logged loudly."""
        try:
            response = await self._client.call(OPERATION, lambda sm: sm.get_secret_value(
                SecretId=self.config.secret_id, VersionStage=stage), stage=stage)
        except AwsError as exc:
            message = f"{OPERATION} {stage}: {exc.detail}"
            if exc.code in LOUD_CODES and not (stage != CURRENT and exc.code == "ResourceNotFoundException"):
                log.error("aws_error", operation=OPERATION, stage=stage, code=exc.code, http_status=exc.status,
                          message=message)
            raise SourceError(exc.code, message, retryable=exc.retryable) from exc
        return self._document(stage, response)

    def _document(self, stage: str, response: GetSecretValueResponseTypeDef) -> Document:
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
