"""Configuration: a TOML file plus ``JWKSD_*`` environment overrides, read once into frozen dataclasses.

This is the only module that reads the environment. Every problem is collected and reported at
once, naming the key, the value and what was expected. Durations are seconds (``_s``).
"""

from __future__ import annotations

import ipaddress
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jwksd.errors import ConfigError

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
    path: Path | None = None


class LiveConfig:
    """The Config in force. A SIGHUP reload replaces ``current`` whole; readers take it on each use."""

    def __init__(self, config: Config) -> None:
        self.current = config


# Environment variable -> (section, key). The section "source" means the first source.
ENV_KEYS: dict[str, tuple[str, str]] = {
    "JWKSD_LISTEN": ("server", "listen"),
    "JWKSD_METRICS_LISTEN": ("server", "metrics_listen"),
    "JWKSD_PATHS": ("server", "paths"),
    "JWKSD_SOURCE_KIND": ("source", "kind"),
    "JWKSD_SECRET_ID": ("source", "secret_id"),
    "JWKSD_SOURCE_FILE": ("source", "path"),
    "JWKSD_SOURCE_URL": ("source", "url"),
    "JWKSD_SOURCE_TABLE": ("source", "table"),
    "JWKSD_REFRESH_INTERVAL_S": ("refresh", "interval_s"),
    "JWKSD_MAX_AGE_S": ("refresh", "max_age_s"),
    "JWKSD_STATE_DIR": ("state", "state_dir"),
    "JWKSD_FALLBACK_FILE": ("state", "fallback_file"),
    "JWKSD_LOG_LEVEL": ("log", "level"),
    "JWKSD_LOG_FORMAT": ("log", "format"),
    "JWKSD_EVENT_LOOP": ("server", "event_loop"),
    "JWKSD_SHARED_CACHE_URL": ("shared_cache", "url"),
}


class _Section:
    """Reads one table, recording a problem for every bad or unknown key instead of raising."""

    def __init__(self, name: str, table: Mapping[str, Any], problems: list[str]) -> None:
        self.name = name
        self.table = table
        self.problems = problems
        self.used: set[str] = set()

    def _get(self, key: str) -> Any:
        self.used.add(key)
        return self.table.get(key)

    def problem(self, key: str, value: Any, expected: str) -> None:
        self.problems.append(f"{self.name}.{key} = {value!r}: expected {expected}")

    def number(self, key: str, default: float, *, low: float = 0.0, low_open: bool = True,
               high: float = math.inf) -> float:
        value = self._get(key)
        if value is None:
            return default
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        below = number <= low if low_open else number < low
        if math.isnan(number) or math.isinf(number) or below or number > high:
            bound = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if high < math.inf else "")
            self.problem(key, value, f"a number {bound}")
            return default
        return number

    def integer(self, key: str, default: int, *, low: int = 1, high: int | None = None) -> int:
        value = self._get(key)
        if value is None:
            return default
        try:
            number = int(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else None
        except ValueError:
            number = None
        if number is None or number < low or (high is not None and number > high):
            self.problem(key, value, f"a whole number >= {low}" + (f" and <= {high}" if high else ""))
            return default
        return number

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        self.problem(key, value, "true or false")
        return default

    def string(self, key: str, default: str | None, *, choices: tuple[str, ...] = ()) -> str | None:
        value = self._get(key)
        if value is None or value == "":
            return default
        if not isinstance(value, str) or (choices and value.lower() not in choices):
            self.problem(key, value, " or ".join(choices) if choices else "a string")
            return default
        return value.lower() if choices else value

    def strings(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            self.problem(key, value, "a non-empty list of strings")
            return default
        return tuple(value)

    def path(self, key: str) -> Path | None:
        value = self.string(key, None)
        return Path(value) if value else None

    def listen(self, key: str, default: Listen | None, *, optional: bool = False) -> Listen | None:
        value = self._get(key)
        if value is None:
            return default
        if optional and value in ("", "off"):
            return None
        host, sep, port = str(value).rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            self.problem(key, value, "host:port with a port from 0 to 65535" + (" or 'off'" if optional else ""))
            return default
        return Listen(host, int(port))

    def check_unknown(self) -> None:
        for key in sorted(set(self.table) - self.used):
            self.problems.append(f"{self.name}.{key}: unknown key")


def _read_file(path: Path, problems: list[str]) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        problems.append(f"config file {str(path)!r}: cannot be read ({exc.strerror or exc})")
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"config file {str(path)!r}: not valid TOML ({exc})")
    return {}


def _apply_environment(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Lay the environment over the file's tables; the environment wins."""
    for variable, (section, key) in ENV_KEYS.items():
        if variable not in environ:
            continue
        if section == "source":
            sources = data.get("sources")
            target = sources[0] if isinstance(sources, list) and sources else data.setdefault("source", {})
        else:
            target = data.setdefault(section, {})
        if isinstance(target, dict):
            target[key] = environ[variable]
    endpoint = environ.get("AWS_ENDPOINT_URL_SECRETS_MANAGER") or environ.get("AWS_ENDPOINT_URL")
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    for table in _source_tables(data):
        if isinstance(table, dict) and table.get("kind", "secretsmanager") == "secretsmanager":
            if endpoint and not table.get("endpoint_url"):
                table["endpoint_url"] = endpoint
            if region and not table.get("region"):
                table["region"] = region
        elif isinstance(table, dict) and table.get("kind") == "dynamodb":
            _aws_defaults(table, environ, {"endpoint_url": "DYNAMODB", "kms_endpoint_url": "KMS"})
    if isinstance(data.get("rotation"), dict):
        _aws_defaults(data["rotation"], environ, {"dynamodb_endpoint_url": "DYNAMODB", "kms_endpoint_url": "KMS",
                                                  "secretsmanager_endpoint_url": "SECRETS_MANAGER"},
                      shared="endpoint_url")


def _aws_defaults(table: dict[str, Any], environ: Mapping[str, str], endpoints: Mapping[str, str], *,
                  shared: str | None = None) -> None:
    """Fill unset endpoints (the table's ``shared`` key, AWS_ENDPOINT_URL_<SERVICE>, AWS_ENDPOINT_URL) and region."""
    for key, service in endpoints.items():
        value = (table.get(key) or (table.get(shared) if shared else None)
                 or environ.get(f"AWS_ENDPOINT_URL_{service}") or environ.get("AWS_ENDPOINT_URL"))
        if value:
            table[key] = value
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if region and not table.get("region"):
        table["region"] = region


def _source_tables(data: Mapping[str, Any]) -> list[Any]:
    sources = data.get("sources")
    if isinstance(sources, list):
        return sources
    return [data.get("source", {})]


def _section(data: Mapping[str, Any], name: str, problems: list[str]) -> _Section:
    table = data.get(name, {})
    if not isinstance(table, dict):
        problems.append(f"{name} = {table!r}: expected a table")
        table = {}
    return _Section(name, table, problems)


def _read_source(section: _Section) -> SourceConfig | None:
    kind = section.string("kind", "secretsmanager", choices=SOURCE_KINDS)
    name = section.string("name", kind) or "source"
    result: SourceConfig | None = None
    if kind == "file":
        path = section.path("path")
        if path is None:
            section.problem("path", None, "the path of a key document (JWKSD_SOURCE_FILE)")
        else:
            result = FileSourceConfig(path=path, name=name)
    elif kind == "http":
        result = _read_http_source(section, name)
    elif kind == "dynamodb":
        result = DynamoDBSourceConfig(
            table=section.string("table", "jwksd-keys") or "jwksd-keys",
            name=name,
            region=section.string("region", None),
            endpoint_url=_url(section, "endpoint_url"),
            kms_endpoint_url=_url(section, "kms_endpoint_url"),
            connect_timeout_s=section.number("connect_timeout_s", 5.0),
            read_timeout_s=section.number("read_timeout_s", 5.0),
        )
    else:
        secret_id = section.string("secret_id", None)
        if secret_id is None:
            section.problem("secret_id", None, "the name or ARN of a secret (JWKSD_SECRET_ID)")
        stages = section.strings("version_stages", ("AWSCURRENT", "AWSPREVIOUS"))
        if "AWSCURRENT" not in stages:
            section.problem("version_stages", list(stages), "a list that includes AWSCURRENT")
        endpoint = section.string("endpoint_url", None)
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            section.problem("endpoint_url", endpoint, "an http:// or https:// URL")
            endpoint = None
        result = SecretsManagerSourceConfig(
            secret_id=secret_id or "",
            name=name,
            version_stages=stages,
            region=section.string("region", None),
            endpoint_url=endpoint,
            connect_timeout_s=section.number("connect_timeout_s", 5.0),
            read_timeout_s=section.number("read_timeout_s", 5.0),
            max_retries=section.integer("max_retries", 3, low=0, high=10),
            retry_base_s=section.number("retry_base_s", 0.2),
            retry_cap_s=section.number("retry_cap_s", 5.0),
        )
    section.check_unknown()
    return result


def _read_http_source(section: _Section, name: str) -> HttpSourceConfig | None:
    url = section.string("url", None)
    insecure = section.boolean("allow_insecure_loopback", False)
    if url is None:
        section.problem("url", None, "the https:// URL of an upstream JWKS (JWKSD_SOURCE_URL)")
    else:
        parts = urlsplit(url)
        if not parts.hostname or parts.scheme not in ("https", "http"):
            section.problem("url", url, "an https:// URL with a host")
            url = None
        elif parts.scheme == "http" and not (insecure and _is_loopback(parts.hostname)):
            section.problem("url", url, "an https:// URL (plain http only with allow_insecure_loopback = true "
                                        "and a loopback host)")
            url = None
    low = section.number("min_refresh_s", 60.0)
    high = section.number("max_refresh_s", 3600.0)
    if low > high:
        section.problems.append(f"{section.name}.max_refresh_s = {high:g}: expected at least min_refresh_s ({low:g})")
    result = HttpSourceConfig(
        url=url or "",
        name=name,
        connect_timeout_s=section.number("connect_timeout_s", 5.0),
        read_timeout_s=section.number("read_timeout_s", 5.0),
        max_retries=section.integer("max_retries", 2, low=0, high=10),
        retry_base_s=section.number("retry_base_s", 0.2),
        retry_cap_s=section.number("retry_cap_s", 5.0),
        min_refresh_s=low,
        max_refresh_s=high,
        allow_insecure_loopback=insecure,
    )
    return result if url else None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_shared_cache(data: Mapping[str, Any], problems: list[str], interval_s: float) -> SharedCacheConfig:
    section = _section(data, "shared_cache", problems)
    url = section.string("url", "") or ""
    if url and not _is_redis_url(url):
        section.problem("url", _redact(url), "redis://host:port/db (or rediss:// for TLS), or empty for off")
        url = ""
    namespace = section.string("namespace", "jwksd") or "jwksd"
    if not namespace.isprintable() or " " in namespace:
        section.problem("namespace", namespace, "a string of printable characters without spaces")
    lease_s = section.number("lease_s", 5.0)
    if url and lease_s >= interval_s:
        problems.append(f"shared_cache.lease_s = {lease_s:g}: expected less than refresh.interval_s ({interval_s:g})")
    shared = SharedCacheConfig(url=url, namespace=namespace, lease_s=lease_s,
                               hmac_key_file=section.path("hmac_key_file"),
                               timeout_s=section.number("timeout_s", 0.5, high=30))
    section.check_unknown()
    return shared


def _is_redis_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    db = parts.path.strip("/") or "0"
    return parts.scheme in ("redis", "rediss") and bool(parts.hostname) and db.isdigit() and not parts.query


def _redact(url: str) -> str:
    """A URL with its password replaced, so a config error never prints a credential."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<not a URL>"
    if not password:
        return url
    return parts._replace(netloc=f"{parts.username or ''}:***@{parts.netloc.rpartition('@')[2]}").geturl()


def _read_sources(data: Mapping[str, Any], problems: list[str]) -> tuple[SourceConfig, ...]:
    if "sources" in data and "source" in data:
        problems.append("source and sources: expected one of [source] or [[sources]], not both")
    tables = _source_tables(data)
    if not tables:
        problems.append("sources = []: expected at least one source")
    sources: list[SourceConfig] = []
    for index, table in enumerate(tables):
        label = "source" if "sources" not in data else f"sources[{index}]"
        if not isinstance(table, dict):
            problems.append(f"{label} = {table!r}: expected a table")
            continue
        source = _read_source(_Section(label, table, problems))
        if source is not None:
            sources.append(source)
    names = [source.name for source in sources]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"sources: name {name!r} is used twice: expected each source to have its own name")
    return tuple(sources)


def _read_server(section: _Section) -> ServerConfig:
    paths = section.strings("paths", (DEFAULT_PATH,))
    for path in paths:
        if not path.startswith("/") or "?" in path or "#" in path:
            section.problem("paths", list(paths), "absolute URL paths such as '/.well-known/jwks.json'")
            break
    if DEFAULT_PATH not in paths:
        paths = (DEFAULT_PATH, *paths)
    server = ServerConfig(
        listen=section.listen("listen", ServerConfig.listen) or ServerConfig.listen,
        metrics_listen=section.listen("metrics_listen", ServerConfig.metrics_listen, optional=True),
        metrics_on_main=section.boolean("metrics_on_main", False),
        paths=tuple(dict.fromkeys(paths)),
        keepalive_timeout_s=section.number("keepalive_timeout_s", 5.0, high=300),
        max_line_size=section.integer("max_line_size", 4096, low=256),
        max_field_size=section.integer("max_field_size", 4096, low=256),
        max_headers=section.integer("max_headers", 32, low=4),
        shutdown_timeout_s=section.number("shutdown_timeout_s", 5.0),
        event_loop=section.string("event_loop", "auto", choices=EVENT_LOOPS) or "auto",
    )
    section.check_unknown()
    return server


def _read_validation(data: Mapping[str, Any], problems: list[str]) -> ValidationConfig:
    section = _section(data, "validation", problems)
    validation = ValidationConfig(
        max_document_bytes=section.integer("max_document_bytes", 65536, low=64, high=16 * 1024 * 1024),
        max_keys=section.integer("max_keys", 100, low=1, high=10000),
        max_depth=section.integer("max_depth", 20, low=3, high=100),
        require_kid=section.boolean("require_kid", True),
        require_thumbprint_kid=section.boolean("require_thumbprint_kid", False),
        allow_secp256k1=section.boolean("allow_secp256k1", False),
    )
    section.check_unknown()
    return validation


def _read_systemd(environ: Mapping[str, str], problems: list[str]) -> SystemdConfig:
    """NOTIFY_SOCKET and WATCHDOG_USEC as systemd sets them (see sd_notify(3) and sd_watchdog_enabled(3))."""
    socket = environ.get("NOTIFY_SOCKET") or None
    usec, pid = environ.get("WATCHDOG_USEC"), environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return SystemdConfig(notify_socket=socket)
    if not usec.isdigit() or int(usec) == 0:
        problems.append(f"WATCHDOG_USEC = {usec!r}: expected a whole number of microseconds > 0")
        return SystemdConfig(notify_socket=socket)
    return SystemdConfig(notify_socket=socket, watchdog_s=int(usec) / 1_000_000)


def _url(section: _Section, key: str) -> str | None:
    value = section.string(key, None)
    if value is not None and not value.startswith(("http://", "https://")):
        section.problem(key, value, "an http:// or https:// URL")
        return None
    return value


def _read_rotation(data: Mapping[str, Any], problems: list[str], refresh: RefreshConfig) -> RotationConfig | None:
    """The [rotation] table, its policy checked against the serving side's [refresh] (see README, Rotation)."""
    if "rotation" not in data:
        return None
    section = _section(data, "rotation", problems)
    key_spec = section.string("key_spec", "RSA_2048") or "RSA_2048"
    if key_spec not in KEY_SPEC_ALGS:
        section.problem("key_spec", key_spec, " or ".join(KEY_SPEC_ALGS))
    algs = KEY_SPEC_ALGS.get(key_spec, RSA_ALGS)
    alg = section.string("alg", algs[0]) or algs[0]
    if key_spec in KEY_SPEC_ALGS and alg not in algs:
        section.problem("alg", alg, f"an algorithm key_spec {key_spec!r} can sign with: {', '.join(algs)}")
    max_age, interval = refresh.max_age_s, refresh.interval_s
    publish_ahead = section.integer("publish_ahead_s", math.ceil(2 * max_age + interval))
    if publish_ahead < max_age + interval:
        section.problem("publish_ahead_s", publish_ahead, f"at least refresh.max_age_s + refresh.interval_s "
                        f"({max_age + interval:g}), so every verifier holds a new key before it signs")
    rotate_every = section.integer("rotate_every_s", 30 * 86400)
    if rotate_every <= publish_ahead:
        section.problem("rotate_every_s", rotate_every, f"more than rotation.publish_ahead_s ({publish_ahead}), "
                        "or each new key would be due before it could be published")
    lifetime = section.integer("max_token_lifetime_s", 3600)
    grace = section.integer("retire_grace_s", 48 * 3600)
    if grace <= lifetime + max_age:
        section.problem("retire_grace_s", grace, f"more than rotation.max_token_lifetime_s + refresh.max_age_s "
                        f"({lifetime + max_age:g}), so a retired key outlives every token it signed")
    verify_urls = section.strings("verify_urls", ())
    for url in verify_urls:
        if not url.startswith(("http://", "https://")):
            section.problem("verify_urls", list(verify_urls), "http:// or https:// URLs of served JWKS")
            break
    section.string("endpoint_url", None)  # spread over the three services by _aws_defaults
    rotation = RotationConfig(
        table=section.string("table", "jwksd-keys") or "jwksd-keys",
        backend=section.string("backend", "kms", choices=ROTATION_BACKENDS) or "kms",
        private_secret_prefix=(section.string("private_secret_prefix", "jwksd/private-keys")
                               or "jwksd/private-keys").rstrip("/"),
        publish_secret_id=section.string("publish_secret_id", None),
        verify_urls=verify_urls,
        rotate_every_s=rotate_every,
        publish_ahead_s=publish_ahead,
        retire_grace_s=grace,
        max_token_lifetime_s=lifetime,
        deletion_window_days=section.integer("deletion_window_days", 30, low=7, high=30),
        key_spec=key_spec,
        alg=alg,
        region=section.string("region", None),
        dynamodb_endpoint_url=_url(section, "dynamodb_endpoint_url"),
        kms_endpoint_url=_url(section, "kms_endpoint_url"),
        secretsmanager_endpoint_url=_url(section, "secretsmanager_endpoint_url"),
        connect_timeout_s=section.number("connect_timeout_s", 5.0, high=60),
        read_timeout_s=section.number("read_timeout_s", 10.0, high=120),
    )
    section.check_unknown()
    return rotation


def load_validation_config(path: str | Path) -> ValidationConfig:
    """Only the [validation] section of a config file (``jwksd validate --config``); raise ConfigError."""
    problems: list[str] = []
    validation = _read_validation(_read_file(Path(path), problems), problems)
    if problems:
        raise ConfigError(problems)
    return validation


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None, *,
                need_source: bool = True) -> Config:
    """Build the configuration from ``path`` (or ``JWKSD_CONFIG``) and ``environ``; raise ConfigError.

    ``need_source=False`` (``jwksd keys``, a rotator host) accepts a file with no [source] at all.
    """
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    file_path = Path(path) if path else (Path(environ["JWKSD_CONFIG"]) if environ.get("JWKSD_CONFIG") else None)
    data = _read_file(file_path, problems) if file_path else {}
    if problems:
        raise ConfigError(problems)  # checking the rest against an empty file would only add noise
    _apply_environment(data, environ)
    known = {"server", "source", "sources", "refresh", "http_cache", "state", "validation", "log", "shared_cache",
             "rotation"}
    for name in sorted(set(data) - known):
        problems.append(f"{name}: unknown section")

    has_source = "source" in data or "sources" in data
    sources = _read_sources(data, problems) if need_source or has_source else ()
    server = _read_server(_section(data, "server", problems))

    section = _section(data, "refresh", problems)
    refresh = RefreshConfig(
        interval_s=section.number("interval_s", 300.0),
        jitter=section.number("jitter", 0.1, low=0.0, low_open=False, high=0.5),
        max_age_s=section.number("max_age_s", 600.0),
        max_staleness_s=section.number("max_staleness_s", 86400.0),
        retry_base_s=section.number("retry_base_s", 1.0),
        retry_cap_s=section.number("retry_cap_s", 60.0),
    )
    section.check_unknown()
    if refresh.max_age_s < refresh.interval_s:
        problems.append(f"refresh.max_age_s = {refresh.max_age_s:g}: expected at least refresh.interval_s "
                        f"({refresh.interval_s:g}), or every response would count as stale")

    section = _section(data, "http_cache", problems)
    http_cache = HttpCacheConfig(
        stale_while_revalidate_s=section.integer("stale_while_revalidate_s", 60, low=0),
        stale_if_error_s=section.integer("stale_if_error_s", 86400, low=0),
    )
    section.check_unknown()

    section = _section(data, "state", problems)
    state = StateConfig(state_dir=section.path("state_dir"), fallback_file=section.path("fallback_file"))
    section.check_unknown()

    validation = _read_validation(data, problems)
    shared_cache = _read_shared_cache(data, problems, refresh.interval_s)
    rotation = _read_rotation(data, problems, refresh)

    section = _section(data, "log", problems)
    log = LogConfig(
        level=section.string("level", "info", choices=LOG_LEVELS) or "info",
        format=section.string("format", "auto", choices=LOG_FORMATS) or "auto",
    )
    section.check_unknown()

    systemd = _read_systemd(environ, problems)

    if problems:
        raise ConfigError(problems)
    return Config(sources=sources, server=server, refresh=refresh, http_cache=http_cache, state=state, systemd=systemd,
                  validation=validation, log=log, shared_cache=shared_cache, rotation=rotation,
                  path=file_path)
