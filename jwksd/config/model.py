"""The configuration's frozen dataclasses and the constants they are checked against. Durations are seconds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_PATH = "/.well-known/jwks.json"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "console", "auto")
EVENT_LOOPS = ("auto", "uvloop", "asyncio")
SOURCE_KINDS = ("secretsmanager", "file", "http", "dynamodb")


@dataclass(frozen=True)
class Listen:
    """A host and port to listen on."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ServerConfig:
    """The HTTP listeners and their limits."""

    listen: Listen = Listen("127.0.0.1", 8080)
    metrics_listen: Listen | None = Listen("127.0.0.1", 9464)
    metrics_on_main: bool = False
    paths: tuple[str, ...] = (DEFAULT_PATH,)
    keepalive_timeout_s: float = 5.0
    max_line_size: int = 4096
    max_field_size: int = 4096
    max_headers: int = 32
    shutdown_timeout_s: float = 5.0
    event_loop: str = "auto"  # auto: uvloop when installed, else asyncio


@dataclass(frozen=True)
class SecretsManagerSourceConfig:
    """Where and how to read the key document from AWS Secrets Manager."""

    secret_id: str
    name: str = "secretsmanager"
    version_stages: tuple[str, ...] = ("AWSCURRENT", "AWSPREVIOUS")
    region: str | None = None
    endpoint_url: str | None = None
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 5.0
    max_retries: int = 3
    retry_base_s: float = 0.2
    retry_cap_s: float = 5.0


@dataclass(frozen=True)
class FileSourceConfig:
    """A key document on local disk, re-read on each refresh."""

    path: Path
    name: str = "file"


@dataclass(frozen=True)
class HttpSourceConfig:
    """An upstream JWKS URL, reverse-proxied with conditional requests.

    The upstream's ``Cache-Control: max-age`` sets when this source is asked again, clamped to
    ``min_refresh_s``..``max_refresh_s``; without one, ``refresh.interval_s`` applies.
    """

    url: str
    name: str = "http"
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 5.0
    max_retries: int = 2
    retry_base_s: float = 0.2
    retry_cap_s: float = 5.0
    min_refresh_s: float = 60.0
    max_refresh_s: float = 3600.0
    allow_insecure_loopback: bool = False


@dataclass(frozen=True)
class DynamoDBSourceConfig:
    """The key registry that ``jwksd keys rotate`` keeps, served directly (public keys come from KMS)."""

    table: str = "jwksd-keys"
    name: str = "dynamodb"
    region: str | None = None
    endpoint_url: str | None = None  # DynamoDB
    kms_endpoint_url: str | None = None
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 5.0


SourceConfig = SecretsManagerSourceConfig | FileSourceConfig | HttpSourceConfig | DynamoDBSourceConfig

# KMS key specs jwksd rotates, and the JWS algorithms each can sign with (the first is the default).
RSA_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
KEY_SPEC_ALGS: dict[str, tuple[str, ...]] = {
    "RSA_2048": RSA_ALGS, "RSA_3072": RSA_ALGS, "RSA_4096": RSA_ALGS,
    "ECC_NIST_P256": ("ES256",), "ECC_NIST_P384": ("ES384",), "ECC_NIST_P521": ("ES512",),
}
ROTATION_BACKENDS = ("kms", "local")


@dataclass(frozen=True)
class RefreshConfig:
    """The refresh schedule and what counts as stale."""

    interval_s: float = 300.0
    jitter: float = 0.1
    max_age_s: float = 600.0
    max_staleness_s: float = 86400.0
    retry_base_s: float = 1.0
    retry_cap_s: float = 60.0


@dataclass(frozen=True)
class HttpCacheConfig:
    """What the Cache-Control header allows caches to do beyond ``max-age``."""

    stale_while_revalidate_s: int = 60
    stale_if_error_s: int = 86400


@dataclass(frozen=True)
class StateConfig:
    """The last-known-good directory and the fallback key file; either may be unset."""

    state_dir: Path | None = None
    fallback_file: Path | None = None


@dataclass(frozen=True)
class ValidationConfig:
    """Limits of the key validator (see JWK_RULES.md)."""

    max_document_bytes: int = 65536
    max_keys: int = 100
    max_depth: int = 20
    require_kid: bool = True
    require_thumbprint_kid: bool = False
    allow_secp256k1: bool = False


@dataclass(frozen=True)
class SharedCacheConfig:
    """A Redis cache shared by a fleet of replicas, so the fleet makes about one fetch per interval.

    Off when ``url`` is empty. ``timeout_s`` bounds every Redis operation, connecting included.
    """

    url: str = ""
    namespace: str = "jwksd"
    lease_s: float = 5.0
    hmac_key_file: Path | None = None
    timeout_s: float = 0.5

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    @property
    def safe_url(self) -> str:
        """The URL without any password, for logs and health."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        return f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path or '/0'}" if self.url else ""


@dataclass(frozen=True)
class LogConfig:
    """Log level and format (``auto``: console on a terminal, JSON otherwise)."""

    level: str = "info"
    format: str = "auto"


@dataclass(frozen=True)
class SystemdConfig:
    """What systemd passes in the environment: the sd_notify socket and the watchdog interval.

    ``watchdog_s`` is None unless ``WATCHDOG_USEC`` is set and ``WATCHDOG_PID`` is unset or this process.
    """

    notify_socket: str | None = None
    watchdog_s: float | None = None


@dataclass(frozen=True)
class RotationConfig:
    """The key lifecycle policy of ``jwksd keys`` and where keys and their registry live.

    Durations are whole seconds. Each ``*_endpoint_url`` is None for the AWS default.
    """

    table: str = "jwksd-keys"
    backend: str = "kms"  # or "local": keys made here, private JWKs in Secrets Manager
    # Local backend: one secret per key, <prefix>/<kid>.
    private_secret_prefix: str = "jwksd/private-keys"  # noqa: S105 - a name, not a secret
    publish_secret_id: str | None = None  # when set, every `keys rotate` also publishes the JWK Set there
    verify_urls: tuple[str, ...] = ()
    rotate_every_s: int = 30 * 86400
    publish_ahead_s: int = 1500  # default 2 * refresh.max_age_s + refresh.interval_s
    retire_grace_s: int = 48 * 3600
    max_token_lifetime_s: int = 3600
    deletion_window_days: int = 30
    key_spec: str = "RSA_2048"
    alg: str = "RS256"
    region: str | None = None
    dynamodb_endpoint_url: str | None = None
    kms_endpoint_url: str | None = None
    secretsmanager_endpoint_url: str | None = None
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0


@dataclass(frozen=True)
class OidcConfig:
    """jwksd as an OpenID Connect issuer: the discovery document and where it and the JWKS are served.

    ``jwks_path`` is the local path of the default ``jwks_uri`` (None when ``jwks_uri`` was configured).
    ``extra`` holds further members of the document, in the config's order.
    """

    issuer: str
    jwks_uri: str
    discovery_path: str
    jwks_path: str | None
    extra: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Config:
    """The whole configuration, built once by :func:`load_config` and passed down."""

    sources: tuple[SourceConfig, ...]
    server: ServerConfig = field(default_factory=ServerConfig)
    refresh: RefreshConfig = field(default_factory=RefreshConfig)
    http_cache: HttpCacheConfig = field(default_factory=HttpCacheConfig)
    state: StateConfig = field(default_factory=StateConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    log: LogConfig = field(default_factory=LogConfig)
    systemd: SystemdConfig = field(default_factory=SystemdConfig)
    shared_cache: SharedCacheConfig = field(default_factory=SharedCacheConfig)
    rotation: RotationConfig | None = None  # only when the file has a [rotation] table
    oidc: OidcConfig | None = None  # only when oidc.issuer is set
    path: Path | None = None


class LiveConfig:
    """The Config in force. A SIGHUP reload replaces ``current`` whole; readers take it on each use."""

    def __init__(self, config: Config) -> None:
        self.current = config
