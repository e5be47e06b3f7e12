"""Configuration: a TOML file plus ``JWKSD_*`` environment overrides, read once into frozen dataclasses.

This package is the only code that reads the environment. Every problem is collected and reported
at once, naming the key, the value and what was expected. ``model`` holds the dataclasses,
``reader`` the typed table reader, ``sources`` and ``rotation`` their tables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from jwksd.config.model import (
    DEFAULT_PATH,
    EVENT_LOOPS,
    KEY_SPEC_ALGS,
    LOG_FORMATS,
    LOG_LEVELS,
    ROTATION_BACKENDS,
    RSA_ALGS,
    SOURCE_KINDS,
    Config,
    DynamoDBSourceConfig,
    FileSourceConfig,
    HttpCacheConfig,
    HttpSourceConfig,
    Listen,
    LiveConfig,
    LogConfig,
    OidcConfig,
    RefreshConfig,
    RotationConfig,
    SecretsManagerSourceConfig,
    ServerConfig,
    SharedCacheConfig,
    SourceConfig,
    StateConfig,
    SystemdConfig,
    ValidationConfig,
)
from jwksd.config.oidc import read_oidc
from jwksd.config.reader import Section, read_file, table_section
from jwksd.config.rotation import read_rotation
from jwksd.config.sources import read_shared_cache, read_sources, source_tables
from jwksd.errors import ConfigError

__all__ = [
    "Config",
    "DEFAULT_PATH",
    "DynamoDBSourceConfig",
    "EVENT_LOOPS",
    "FileSourceConfig",
    "HttpCacheConfig",
    "HttpSourceConfig",
    "KEY_SPEC_ALGS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "Listen",
    "LogConfig",
    "OidcConfig",
    "ROTATION_BACKENDS",
    "RSA_ALGS",
    "RefreshConfig",
    "RotationConfig",
    "SOURCE_KINDS",
    "SecretsManagerSourceConfig",
    "ServerConfig",
    "SharedCacheConfig",
    "SourceConfig",
    "StateConfig",
    "SystemdConfig",
    "ValidationConfig",
    "ENV_KEYS",
    "LiveConfig",
    "load_config",
    "load_validation_config",
]

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
    "JWKSD_OIDC_ISSUER": ("oidc", "issuer"),
}


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
    for table in source_tables(data):
        if isinstance(table, dict) and table.get("kind", "secretsmanager") == "secretsmanager":
            _aws_defaults(table, environ, {"endpoint_url": "SECRETS_MANAGER"})
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


def _read_server(section: Section) -> ServerConfig:
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
    section = table_section(data, "validation", problems)
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


def load_validation_config(path: str | Path) -> ValidationConfig:
    """Only the [validation] section of a config file (``jwksd validate --config``); raise ConfigError."""
    problems: list[str] = []
    validation = _read_validation(read_file(Path(path), problems), problems)
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
    data = read_file(file_path, problems) if file_path else {}
    if problems:
        raise ConfigError(problems)  # checking the rest against an empty file would only add noise
    _apply_environment(data, environ)
    known = {"server", "source", "sources", "refresh", "http_cache", "state", "validation", "log", "shared_cache",
             "rotation", "oidc"}
    for name in sorted(set(data) - known):
        problems.append(f"{name}: unknown section")

    has_source = "source" in data or "sources" in data
    sources = read_sources(data, problems) if need_source or has_source else ()
    server = _read_server(table_section(data, "server", problems))
    oidc = read_oidc(data, problems, server)
    if oidc is not None and oidc.jwks_path is not None and oidc.jwks_path not in server.paths:
        server = replace(server, paths=(*server.paths, oidc.jwks_path))  # the default jwks_uri is served too

    section = table_section(data, "refresh", problems)
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

    section = table_section(data, "http_cache", problems)
    http_cache = HttpCacheConfig(
        stale_while_revalidate_s=section.integer("stale_while_revalidate_s", 60, low=0),
        stale_if_error_s=section.integer("stale_if_error_s", 86400, low=0),
    )
    section.check_unknown()

    section = table_section(data, "state", problems)
    state = StateConfig(state_dir=section.path("state_dir"), fallback_file=section.path("fallback_file"))
    section.check_unknown()

    validation = _read_validation(data, problems)
    shared_cache = read_shared_cache(data, problems, refresh.interval_s)
    rotation = read_rotation(data, problems, refresh)

    section = table_section(data, "log", problems)
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
                  oidc=oidc, path=file_path)
