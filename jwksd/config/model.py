"""The configuration's frozen dataclasses, each setting declared once on its field (see ``declare``).

A field's type and default are the setting's; ``about(...)`` adds its doc, bounds, environment
variable and whether a SIGHUP reload applies it (``restart=True``: only a restart does). Durations
are seconds. The sources' dataclasses are in ``source_model``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jwksd.config.declare import Setting, about
from jwksd.config.source_model import REGISTRY_TABLE, SourceConfig
from jwksd.redact import public_url

DEFAULT_PATH = "/.well-known/jwks.json"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "console", "auto")
EVENT_LOOPS = ("auto", "uvloop", "asyncio")


@dataclass(frozen=True)
class Listen:
    """A host and port to listen on."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ServerConfig:
    """The HTTP listeners and their limits, set at start."""

    listen: Listen = field(default=Listen("127.0.0.1", 8080), metadata=about(
        "host:port of the JWKS listener", env="JWKSD_LISTEN", restart=True))
    metrics_listen: Listen | None = field(default=Listen("127.0.0.1", 9464), metadata=about(
        'host:port of /metrics, or "off"', env="JWKSD_METRICS_LISTEN", optional=True, restart=True))
    metrics_on_main: bool = field(default=False, metadata=about(
        "also serve /metrics on the main listener", restart=True))
    status_on_main: bool = field(default=False, metadata=about(
        "also serve /status and /status.json on the main listener (codes only, no upstream messages)",
        restart=True))
    paths: tuple[str, ...] = field(default=(DEFAULT_PATH,), metadata=about(
        f"these paths serve the set too ({DEFAULT_PATH} always does); env: comma-separated", env="JWKSD_PATHS",
        restart=True, example=(DEFAULT_PATH, "/api/.well-known/jwks.json")))
    keepalive_timeout_s: float = field(default=5.0, metadata=about(
        "idle and half-sent connections are closed after this", high=300, restart=True))
    max_line_size: int = field(default=4096, metadata=about(
        "bytes in the request line; longer gets 400", low=256, restart=True))
    max_field_size: int = field(default=4096, metadata=about(
        "bytes in one header; longer gets 400", low=256, restart=True))
    max_headers: int = field(default=32, metadata=about("headers per request; more gets 400", low=4, restart=True))
    shutdown_timeout_s: float = field(default=5.0, metadata=about(
        "SIGTERM waits this long for in-flight requests", restart=True))
    event_loop: str = field(default="auto", metadata=about(
        "auto (uvloop when installed: pip install 'jwksd[uvloop]'), uvloop or asyncio", choices=EVENT_LOOPS,
        env="JWKSD_EVENT_LOOP", restart=True))
    tls_cert_file: Path | None = field(default=None, metadata=about(
        "HTTPS on this listener: PEM, the leaf first, then its chain (docs/oidc.md, Serve HTTPS)",
        env="JWKSD_TLS_CERT_FILE", restart=True, example="/etc/jwksd/tls/tls.crt"))
    tls_key_file: Path | None = field(default=None, metadata=about(
        "its key: mode 0600, or 0640 owned by root; re-read with the certificate on SIGHUP and on change",
        env="JWKSD_TLS_KEY_FILE", restart=True, example="/etc/jwksd/tls/tls.key"))
    tls_watch_interval_s: float = field(default=5.0, metadata=about(
        "how often the TLS files are checked for a renewal", high=3600, restart=True))
    write_timeout_s: float = field(default=5.0, metadata=about(
        "a response the client does not take within this closes its connection", high=300,
        env="JWKSD_WRITE_TIMEOUT_S", restart=True))
    max_connections: int | None = field(default=None, metadata=about(
        "open connections; unset: 1024 or what fits under the open-file limit; more than fits stops the start",
        high=1_000_000, env="JWKSD_MAX_CONNECTIONS", restart=True, example=1024))


@dataclass(frozen=True)
class RefreshConfig:
    """The refresh schedule and what counts as stale."""

    interval_s: float = field(default=300.0, metadata=about(
        "time between refreshes, with +-jitter", env="JWKSD_REFRESH_INTERVAL_S"))
    jitter: float = field(default=0.1, metadata=about("fraction of interval_s (0 to 0.5)", low=0.0, low_open=False,
                                                      high=0.5))
    max_age_s: float = field(default=600.0, metadata=about(
        "Cache-Control max-age; a read of an older set triggers a refresh", env="JWKSD_MAX_AGE_S"))
    max_staleness_s: float = field(default=86400.0, metadata=about(
        'health turns "warn" when the served set is older than this'))
    retry_base_s: float = field(default=1.0, metadata=about(
        "after a failed refresh: capped exponential backoff with jitter"))
    retry_cap_s: float = field(default=60.0, metadata=about("the longest backoff (never longer than interval_s)"))
    startup_grace_s: float = field(default=10.0, metadata=about(
        "at start, last-known-good or fallback is served (and /readyz turns 200) only once the first fetch has "
        "failed or this has passed without an answer", high=3600, env="JWKSD_STARTUP_GRACE_S",
        restart=True))  # it only acts while the first fetch runs, which a reload waits for


@dataclass(frozen=True)
class HttpCacheConfig:
    """What the Cache-Control header allows caches to do beyond ``max-age``."""

    stale_while_revalidate_s: int = field(default=60, metadata=about("Cache-Control stale-while-revalidate", low=0))
    stale_if_error_s: int = field(default=86400, metadata=about("Cache-Control stale-if-error", low=0))
    degraded_max_age_s: int = field(default=30, metadata=about(
        "max-age of a last-known-good or fallback set (no stale-* then), so caches ask again soon after recovery",
        low=0, env="JWKSD_DEGRADED_MAX_AGE_S"))


@dataclass(frozen=True)
class StateConfig:
    """The last-known-good directory and the fallback key file; either may be unset."""

    state_dir: Path | None = field(default=None, metadata=about(
        "last-known-good snapshot, written atomically", env="JWKSD_STATE_DIR", example="/var/lib/jwksd"))
    fallback_file: Path | None = field(default=None, metadata=about(
        "served when nothing else is; must be valid", env="JWKSD_FALLBACK_FILE",
        example="/etc/jwksd/fallback-jwks.json"))


@dataclass(frozen=True)
class ValidationConfig:
    """Limits of the key validator (see JWK_RULES.md)."""

    max_document_bytes: int = field(default=65536, metadata=about(
        "a larger document is refused whole", low=64, high=16 * 1024 * 1024))
    max_keys: int = field(default=100, metadata=about("a document with more keys is refused whole", high=10000))
    max_depth: int = field(default=20, metadata=about("JSON nesting depth", low=3, high=100))
    require_kid: bool = field(default=True, metadata=about("a key without a kid is dropped"))
    require_thumbprint_kid: bool = field(default=False, metadata=about(
        "kid must equal the RFC 7638 SHA-256 thumbprint"))
    allow_secp256k1: bool = field(default=False, metadata=about("serve keys on the secp256k1 curve"))
    revoked_kids: tuple[str, ...] = field(default=(), metadata=about(
        "never served, whatever the origin (a kid or an RFC 7638 thumbprint); reason revoked",
        example=("3uE1eCq3Xy9vQ3T0b2ZsHn7d0mYgXW0c3p3pSl4yC9Q",)))


@dataclass(frozen=True)
class SharedCacheConfig:
    """A Redis cache shared by a fleet of replicas, so the fleet makes about one fetch per interval.

    Off when ``url`` is empty. ``timeout_s`` bounds every Redis operation, connecting included.
    """

    url: str = field(default="", metadata=about(
        "redis://host:port/db (rediss:// for TLS); empty: off", env="JWKSD_SHARED_CACHE_URL", restart=True))
    namespace: str = field(default="jwksd", metadata=about(
        "keys <namespace>:entry:<source name> and <namespace>:lease:<source name>", restart=True))
    lease_s: float = field(default=5.0, metadata=about(
        "one replica fetches; the others wait this long for its entry (< interval_s)", restart=True))
    hmac_key_file: Path | None = field(default=None, metadata=about(
        "32+ bytes, same on every replica; required with a url", env="JWKSD_SHARED_CACHE_HMAC_KEY_FILE",
        restart=True, example="/etc/jwksd/shared-cache.key"))
    timeout_s: float = field(default=0.5, metadata=about(
        "every Redis operation; slower counts as down: the replica fetches directly", high=30, restart=True))
    allow_unauthenticated: bool = field(default=False, metadata=about(
        "true: start without hmac_key_file; whoever can write Redis picks the keys", restart=True))

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    @property
    def safe_url(self) -> str:
        """The URL without its password (or any user info and query), for logs and health."""
        return public_url(self.url) if self.url else ""


@dataclass(frozen=True)
class LogConfig:
    """Log level and format (``auto``: console on a terminal, JSON otherwise)."""

    level: str = field(default="info", metadata=about(", ".join(LOG_LEVELS), choices=LOG_LEVELS,
                                                      env="JWKSD_LOG_LEVEL"))
    format: str = field(default="auto", metadata=about(
        "json, console, or auto (console on a terminal)", choices=LOG_FORMATS, env="JWKSD_LOG_FORMAT", restart=True))


@dataclass(frozen=True)
class SystemdConfig:
    """What systemd passes in the environment: the sd_notify socket and the watchdog interval.

    Not settings of the file: systemd's own protocol (sd_notify(3), sd_listen_fds(3)). ``watchdog_s`` is None unless
    ``WATCHDOG_USEC`` is set and ``WATCHDOG_PID`` is unset or this process.
    """

    notify_socket: str | None = None
    watchdog_s: float | None = None
    # Sockets handed over by socket activation (sd_listen_fds(3)): descriptors 3 .. 3 + listen_fds - 1,
    # only when LISTEN_PID is this process. ``jwksd signer`` takes its API socket from there.
    listen_fds: int = 0


# KMS key specs jwksd rotates, and the JWS algorithms each can sign with (the first is the default).
RSA_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
KEY_SPEC_ALGS: dict[str, tuple[str, ...]] = {
    "RSA_2048": RSA_ALGS, "RSA_3072": RSA_ALGS, "RSA_4096": RSA_ALGS,
    "ECC_NIST_P256": ("ES256",), "ECC_NIST_P384": ("ES384",), "ECC_NIST_P521": ("ES512",),
}
ROTATION_BACKENDS = ("kms", "local")
DEFAULT_KEY_SPEC = "RSA_2048"


def publish_ahead_default(refresh: RefreshConfig) -> int:
    """A new key is published this long before it signs unless set: two cache lifetimes and a refresh."""
    return math.ceil(2 * refresh.max_age_s + refresh.interval_s)


@dataclass(frozen=True)
class RotationConfig:
    """The key lifecycle policy of ``jwksd keys`` and where keys and their registry live.

    Durations are whole seconds. Each ``*_endpoint_url`` is None for the AWS default. Read by
    ``jwksd keys`` at each run; the daemon itself does not use it, so a reload has nothing to restart.
    """

    table: str = field(default=REGISTRY_TABLE, metadata=about(
        "the DynamoDB registry (config/jwksd-keys-table.json)"))
    backend: str = field(default="kms", metadata=about(
        '"kms", or "local": private JWKs in secrets <private_secret_prefix>/<kid>', choices=ROTATION_BACKENDS))
    private_secret_prefix: str = field(default="jwksd/private-keys", metadata=about(
        "local backend: one secret per key, <prefix>/<kid>"))
    publish_secret_id: str | None = field(default=None, metadata=about(
        "also publish the JWK Set there on every `keys rotate`", example="jwt/public-keys"))
    verify_urls: tuple[str, ...] = field(default=(), metadata=about(
        "promote only once these serve the new kid", example=("https://auth.example.com/.well-known/jwks.json",)))
    rotate_every_s: int = field(default=30 * 86400, metadata=about("an active key signs this long"))
    publish_ahead_s: int = field(default=publish_ahead_default(RefreshConfig()), metadata=about(
        "published this long before it signs; >= max_age_s + interval_s (default: 2 * max_age_s + interval_s)"))
    retire_grace_s: int = field(default=48 * 3600, metadata=about(
        "published this long after it stops signing; > max_token_lifetime_s + max_age_s"))
    max_token_lifetime_s: int = field(default=3600, metadata=about(
        "the longest token `jwksd keys sign` or `jwksd signer` makes"))
    metrics_file: Path | None = field(default=None, metadata=about(
        "each `keys rotate` writes its outcome there (node_exporter textfile collector)",
        example="/var/lib/node_exporter/textfile/jwksd-rotation.prom"))
    max_clock_skew_s: int = field(default=60, metadata=about(
        "a changing `keys` command refuses when this host's clock and AWS's Date differ by more", low=1))
    deletion_window_days: int = field(default=30, metadata=about(
        "KMS / Secrets Manager deletion window for expired keys (7 to 30)", low=7, high=30))
    key_spec: str = field(default=DEFAULT_KEY_SPEC, metadata=about(
        "RSA_2048/3072/4096, ECC_NIST_P256/P384/P521"))
    alg: str = field(default=KEY_SPEC_ALGS[DEFAULT_KEY_SPEC][0], metadata=about(
        "must fit key_spec: RS*/PS* for RSA, ES256/384/512 for the curves"))
    region: str | None = field(default=None, metadata=about(
        "default: AWS_REGION / AWS_DEFAULT_REGION", example="us-east-1"))
    dynamodb_endpoint_url: str | None = field(default=None, metadata=about(
        "default: endpoint_url, AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL", kind="url",
        example="http://127.0.0.1:5000"))
    kms_endpoint_url: str | None = field(default=None, metadata=about(
        "default: endpoint_url, AWS_ENDPOINT_URL_KMS, AWS_ENDPOINT_URL", kind="url",
        example="http://127.0.0.1:5000"))
    secretsmanager_endpoint_url: str | None = field(default=None, metadata=about(
        "default: endpoint_url, AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_ENDPOINT_URL", kind="url",
        example="http://127.0.0.1:5000"))
    connect_timeout_s: float = field(default=5.0, metadata=about(
        "per AWS call attempt; throttling, 5xx and network errors get 3 attempts", high=60))
    read_timeout_s: float = field(default=10.0, metadata=about("per AWS call attempt", high=120))
    # The keys the [rotation] table set, not defaulted: a policy value it leaves out follows the registry's
    # stored policy, one it sets must agree with it (rotation/head.py). Not a setting of its own.
    explicit: frozenset[str] = field(default=frozenset(), compare=False, repr=False)


DEFAULT_SIGNER_SOCKET = Path("/run/jwksd-signer/signer.sock")


@dataclass(frozen=True)
class SignerConfig:
    """``jwksd signer``: where its API listens and how often it reads the registry of [rotation].

    Read at the signer's start (``jwksd serve`` ignores it). The API never listens beyond this host:
    a Unix socket, and optionally a loopback TCP port that takes a bearer token.
    """

    socket: Path = field(default=DEFAULT_SIGNER_SOCKET, metadata=about(
        "the API's Unix socket (HTTP/1.1, JSON); unused when systemd hands one over (LISTEN_FDS)"))
    socket_mode: str = field(default="0660", metadata=about(
        "its permission bits, octal; none for others: who may connect may sign"))
    socket_group: str | None = field(default=None, metadata=about(
        "its group, a name or number (default: the signer's own)", example="jwksd-signers"))
    tcp_listen: Listen | None = field(default=None, metadata=about(
        'a loopback host:port serving the API too, bearer token required, or "off"', optional=True,
        example=Listen("127.0.0.1", 8490)))
    token_file: Path | None = field(default=None, metadata=about(
        "the bearer token tcp_listen requires: mode 0600, owned by the signer", example="/etc/jwksd/signer.token"))
    metrics_listen: Listen | None = field(default=Listen("127.0.0.1", 9465), metadata=about(
        'host:port of the signer\'s /metrics, or "off"', optional=True))
    refresh_s: float = field(default=5.0, metadata=about(
        "the registry head is read this often: a promotion or revoke applies within it", high=300))
    max_view_age_s: float = field(default=60.0, metadata=about(
        "no token is signed once the registry could not be read for this long (503)", high=3600))
    max_body_bytes: int = field(default=16384, metadata=about(
        "a larger request body gets 400", low=256, high=1024 * 1024))
    kms_concurrency: int = field(default=16, metadata=about(
        "KMS Sign calls in flight at once; more requests wait their turn", high=1000))
    shutdown_timeout_s: float = field(default=5.0, metadata=about(
        "SIGTERM waits this long for in-flight requests", high=300))


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


# The [oidc] keys. OidcConfig is derived from them (its paths come from the issuer), so they are
# declared here rather than on its fields. The routes are made at start: each needs a restart.
OIDC_SETTINGS = (
    Setting("https, optional path; serves <path>/.well-known/openid-configuration and <path>/.well-known/jwks.json",
            section="oidc", name="issuer", kind="string", default=None, env="JWKSD_OIDC_ISSUER", restart=True,
            example="https://auth.example.com/tenants/a"),
    Setting("default: the issuer + /.well-known/jwks.json", section="oidc", name="jwks_uri", kind="string",
            default=None, restart=True, example="https://cdn.example.com/jwks.json"),
    Setting("further metadata members, published as written", section="oidc", name="extra", kind="table",
            default=None, restart=True, example={"claims_supported": ["sub", "aud", "iss", "exp", "iat"]}),
)


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
    signer: SignerConfig | None = None  # only when the file has a [signer] table
    path: Path | None = None


class LiveConfig:
    """The Config in force. A SIGHUP reload replaces ``current`` whole; readers take it on each use."""

    def __init__(self, config: Config) -> None:
        self.current = config
