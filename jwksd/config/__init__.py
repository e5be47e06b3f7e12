"""Configuration: a TOML file plus ``JWKSD_*`` environment overrides, read once into frozen dataclasses.

This package is the only code that reads the environment. Every problem is collected and reported
at once, naming the key, the value and what was expected. Every setting is declared once, on
its dataclass field (``model``, ``source_model``; see ``declare``); ``settings`` is the table read
from them, ``reader`` reads a TOML table by it, ``sources`` and ``rotation`` add their cross-checks,
``example`` renders config/jwksd.example.toml.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from jwksd.config.model import (
    DEFAULT_PATH,
    EVENT_LOOPS,
    KEY_SPEC_ALGS,
    LOG_FORMATS,
    LOG_LEVELS,
    ROTATION_BACKENDS,
    RSA_ALGS,
    Config,
    HttpCacheConfig,
    Listen,
    LiveConfig,
    LogConfig,
    OidcConfig,
    RefreshConfig,
    RotationConfig,
    ServerConfig,
    SharedCacheConfig,
    SignerConfig,
    StateConfig,
    SystemdConfig,
    ValidationConfig,
)
from jwksd.config.oidc import read_oidc
from jwksd.config.reader import Section, read_file, table_section
from jwksd.config.rotation import read_rotation
from jwksd.config.settings import SECTIONS, all_settings, env_keys, keep_restart_only, restart_required, setting_of
from jwksd.config.signer import read_signer
from jwksd.config.source_model import (
    SOURCE_KINDS,
    DynamoDBSourceConfig,
    FileSourceConfig,
    HttpSourceConfig,
    SecretsManagerSourceConfig,
    SourceConfig,
)
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
    "SignerConfig",
    "SourceConfig",
    "StateConfig",
    "SystemdConfig",
    "ValidationConfig",
    "ENV_KEYS",
    "LiveConfig",
    "all_settings",
    "keep_restart_only",
    "load_config",
    "restart_required",
    "load_validation_config",
]

T = TypeVar("T")

# Environment variable -> (section, key), from the declarations. The section "source" means the first source.
ENV_KEYS: dict[str, tuple[str, str]] = env_keys()


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
    paths = section.read(setting_of(ServerConfig, "paths"))
    for path in paths:
        if not path.startswith("/") or "?" in path or "#" in path:
            section.problem("paths", list(paths), "absolute URL paths such as '/.well-known/jwks.json'")
            break
    if DEFAULT_PATH not in paths:
        paths = (DEFAULT_PATH, *paths)
    server = section.build(ServerConfig, paths=tuple(dict.fromkeys(paths)))
    section.check_unknown()
    if (server.tls_cert_file is None) != (server.tls_key_file is None):
        given, missing = ("tls_cert_file", "tls_key_file") if server.tls_key_file is None else (
            "tls_key_file", "tls_cert_file")
        section.problems.append(f"server.{missing}: required with server.{given} (TLS needs both)")
    return server


def _read_table(data: Mapping[str, Any], name: str, cls: type[T], problems: list[str]) -> T:
    """A section whose keys are all its dataclass's declared fields: read, built, unknown keys named."""
    section = table_section(data, name, problems)
    built = section.build(cls)
    section.check_unknown()
    return built


def _read_systemd(environ: Mapping[str, str], problems: list[str]) -> SystemdConfig:
    """NOTIFY_SOCKET, WATCHDOG_USEC and LISTEN_FDS as systemd sets them (sd_notify(3), sd_watchdog_enabled(3),
    sd_listen_fds(3))."""
    socket = environ.get("NOTIFY_SOCKET") or None
    fds = environ.get("LISTEN_FDS", "")
    listen_fds = int(fds) if fds.isdigit() and environ.get("LISTEN_PID") == str(os.getpid()) else 0
    usec, pid = environ.get("WATCHDOG_USEC"), environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return SystemdConfig(notify_socket=socket, listen_fds=listen_fds)
    if not usec.isdigit() or int(usec) == 0:
        problems.append(f"WATCHDOG_USEC = {usec!r}: expected a whole number of microseconds > 0")
        return SystemdConfig(notify_socket=socket, listen_fds=listen_fds)
    return SystemdConfig(notify_socket=socket, watchdog_s=int(usec) / 1_000_000, listen_fds=listen_fds)


def load_validation_config(path: str | Path) -> ValidationConfig:
    """Only the [validation] section of a config file (``jwksd validate --config``); raise ConfigError."""
    problems: list[str] = []
    validation = _read_table(read_file(Path(path), problems), "validation", ValidationConfig, problems)
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
    known = {*SECTIONS, "source", "sources"}
    for name in sorted(set(data) - known):
        problems.append(f"{name}: unknown section")

    has_source = "source" in data or "sources" in data
    sources = read_sources(data, problems) if need_source or has_source else ()
    server = _read_server(table_section(data, "server", problems))
    oidc = read_oidc(data, problems, server)
    if oidc is not None and oidc.jwks_path is not None and oidc.jwks_path not in server.paths:
        server = replace(server, paths=(*server.paths, oidc.jwks_path))  # the default jwks_uri is served too

    refresh = _read_table(data, "refresh", RefreshConfig, problems)
    if refresh.max_age_s < refresh.interval_s:
        problems.append(f"refresh.max_age_s = {refresh.max_age_s:g}: expected at least refresh.interval_s "
                        f"({refresh.interval_s:g}), or every response would count as stale")

    http_cache = _read_table(data, "http_cache", HttpCacheConfig, problems)
    state = _read_table(data, "state", StateConfig, problems)
    validation = _read_table(data, "validation", ValidationConfig, problems)
    shared_cache = read_shared_cache(data, problems, refresh.interval_s)
    rotation = read_rotation(data, problems, refresh)
    signer = read_signer(data, problems)
    log = _read_table(data, "log", LogConfig, problems)
    systemd = _read_systemd(environ, problems)

    if problems:
        raise ConfigError(problems)
    return Config(sources=sources, server=server, refresh=refresh, http_cache=http_cache, state=state, systemd=systemd,
                  validation=validation, log=log, shared_cache=shared_cache, rotation=rotation,
                  oidc=oidc, signer=signer, path=file_path)
