"""The sources' frozen dataclasses, one per ``kind``, each setting declared on its field (see ``declare``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from jwksd.config.declare import Setting, about

SOURCE_KINDS = ("secretsmanager", "file", "http", "dynamodb")
REGISTRY_TABLE = "jwksd-keys"  # the DynamoDB registry of `jwksd keys` (config/jwksd-keys-table.json)

# Not a field: the kind picks the dataclass.
SOURCE_KIND = Setting("where the keys come from: " + ", ".join(SOURCE_KINDS), section="source", name="kind",
                      kind="string", default=SOURCE_KINDS[0], choices=SOURCE_KINDS, env="JWKSD_SOURCE_KIND")
NAME_DOC = "label in logs, metrics and health; each source has its own"
CONNECT_DOC = "TCP/TLS connect timeout per call"
READ_DOC = "read timeout per call; a call never takes longer than connect + read"
RETRIES_DOC = "retries on throttling, 5xx and network errors (never on AccessDenied)"
BASE_DOC = "full-jitter backoff: random(0, min(cap, base * 2^attempt))"
CAP_DOC = "the longest wait between two attempts"


@dataclass(frozen=True)
class SecretsManagerSourceConfig:
    """Where and how to read the key document from AWS Secrets Manager."""

    secret_id: str = field(metadata=about("name or ARN of the secret; required", env="JWKSD_SECRET_ID",
                                          example="jwt/public-keys"))
    name: str = field(default="secretsmanager", metadata=about(NAME_DOC))
    version_stages: tuple[str, ...] = field(default=("AWSCURRENT", "AWSPREVIOUS"), metadata=about(
        "their union is served; AWSCURRENT is required"))
    region: str | None = field(default=None, metadata=about(
        "default: AWS_REGION / AWS_DEFAULT_REGION, or the ARN's region", example="us-east-1"))
    endpoint_url: str | None = field(default=None, metadata=about(
        "default: AWS_ENDPOINT_URL_SECRETS_MANAGER, then AWS_ENDPOINT_URL", kind="url",
        example="http://127.0.0.1:5000"))
    connect_timeout_s: float = field(default=5.0, metadata=about(CONNECT_DOC))
    read_timeout_s: float = field(default=5.0, metadata=about(READ_DOC))
    max_retries: int = field(default=3, metadata=about(RETRIES_DOC, low=0, high=10))
    retry_base_s: float = field(default=0.2, metadata=about(BASE_DOC))
    retry_cap_s: float = field(default=5.0, metadata=about(CAP_DOC))


@dataclass(frozen=True)
class FileSourceConfig:
    """A key document on local disk, re-read on each refresh."""

    path: Path = field(metadata=about("the key document, re-read on every refresh; required",
                                      env="JWKSD_SOURCE_FILE", example="/etc/jwksd/keys.json"))
    name: str = field(default="file", metadata=about(NAME_DOC))


@dataclass(frozen=True)
class HttpSourceConfig:
    """An upstream JWKS URL, reverse-proxied with conditional requests.

    The upstream's ``Cache-Control: max-age`` sets when this source is asked again, clamped to
    ``min_refresh_s``..``max_refresh_s``; without one, ``refresh.interval_s`` applies.
    """

    url: str = field(metadata=about("the upstream JWKS, https only; required", env="JWKSD_SOURCE_URL",
                                    example="https://idp.example/.well-known/jwks.json"))
    name: str = field(default="http", metadata=about(NAME_DOC))
    connect_timeout_s: float = field(default=5.0, metadata=about(CONNECT_DOC))
    read_timeout_s: float = field(default=5.0, metadata=about(READ_DOC))
    max_retries: int = field(default=2, metadata=about(RETRIES_DOC, low=0, high=10))
    retry_base_s: float = field(default=0.2, metadata=about(BASE_DOC))
    retry_cap_s: float = field(default=5.0, metadata=about(CAP_DOC))
    min_refresh_s: float = field(default=60.0, metadata=about("the upstream's Cache-Control max-age, at least this"))
    max_refresh_s: float = field(default=3600.0, metadata=about("the upstream's Cache-Control max-age, at most this"))
    allow_insecure_loopback: bool = field(default=False, metadata=about("allow plain http to a loopback host"))


@dataclass(frozen=True)
class DynamoDBSourceConfig:
    """The key registry that ``jwksd keys rotate`` keeps, served directly (public keys come from KMS)."""

    table: str = field(default=REGISTRY_TABLE, metadata=about("the registry of `jwksd keys`",
                                                              env="JWKSD_SOURCE_TABLE"))
    name: str = field(default="dynamodb", metadata=about(NAME_DOC))
    region: str | None = field(default=None, metadata=about("default: AWS_REGION / AWS_DEFAULT_REGION",
                                                            example="us-east-1"))
    endpoint_url: str | None = field(default=None, metadata=about(
        "DynamoDB; default: AWS_ENDPOINT_URL_DYNAMODB, then AWS_ENDPOINT_URL", kind="url",
        example="http://127.0.0.1:5000"))
    kms_endpoint_url: str | None = field(default=None, metadata=about(
        "KMS, for the public keys; default: AWS_ENDPOINT_URL_KMS, then AWS_ENDPOINT_URL", kind="url",
        example="http://127.0.0.1:5000"))
    connect_timeout_s: float = field(default=5.0, metadata=about(CONNECT_DOC))
    read_timeout_s: float = field(default=5.0, metadata=about(READ_DOC))


SourceConfig = SecretsManagerSourceConfig | FileSourceConfig | HttpSourceConfig | DynamoDBSourceConfig
SOURCE_CLASSES: dict[str, type[SourceConfig]] = {
    "secretsmanager": SecretsManagerSourceConfig, "file": FileSourceConfig, "http": HttpSourceConfig,
    "dynamodb": DynamoDBSourceConfig,
}
