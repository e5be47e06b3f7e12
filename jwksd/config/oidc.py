"""The [oidc] table: the issuer URL, where the discovery document and the JWKS are served, extra members."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from jwksd.config.model import OidcConfig, ServerConfig
from jwksd.config.reader import table_section

DISCOVERY_SUFFIX = "/.well-known/openid-configuration"
JWKS_SUFFIX = "/.well-known/jwks.json"
# The routes jwksd serves besides the JWKS paths; neither document may take one of them.
RESERVED_PATHS = frozenset({"/health", "/healthz", "/readyz", "/metrics"})
# Members jwksd writes itself; the config's extra members may not replace them.
OWN_MEMBERS = ("issuer", "jwks_uri", "response_types_supported", "subject_types_supported",
               "id_token_signing_alg_values_supported")
# Path characters served literally: RFC 3986 pchar without percent-escapes (aiohttp would read {} as a variable).
_PATH = re.compile(r"(/[A-Za-z0-9._~!$&'()*+,;=:@-]+)*/?")
_HTTPS = "an https:// URL with a host, optionally a path, no query, fragment or user name"


def https_url_problem(value: object) -> str | None:
    """Why ``value`` is not an https URL an OpenID Provider may use (issuer, jwks_uri), or None."""
    if not isinstance(value, str):
        return "a string"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return _HTTPS
    if parts.scheme != "https":
        return f"{_HTTPS} (OpenID Connect Discovery 1.0 and RFC 8414 require https; a TLS terminator in front " \
               "of jwksd, or server.tls_cert_file, provides it)" if parts.scheme == "http" else _HTTPS
    if not parts.hostname or "@" in parts.netloc or parts.query or parts.fragment or "?" in value or "#" in value:
        return _HTTPS
    if not _PATH.fullmatch(parts.path):
        return f"{_HTTPS}; the path may hold only letters, digits and -._~!$&'()*+,;=:@ between slashes"
    return None


def issuer_path(issuer: str) -> str:
    """The issuer's path with any terminating slash removed, as OpenID Connect Discovery 1.0 section 4 says."""
    return urlsplit(issuer).path.rstrip("/")


def read_oidc(data: Mapping[str, Any], problems: list[str], server: ServerConfig) -> OidcConfig | None:
    """The [oidc] table (None when no issuer is set); every problem goes into ``problems``."""
    section = table_section(data, "oidc", problems)
    issuer = section.string("issuer", None)
    jwks_uri = section.string("jwks_uri", None)
    extra = section.table.get("extra", {})
    section.used.add("extra")
    section.check_unknown()
    if issuer is None:
        for key in ("jwks_uri", "extra"):
            if key in section.table:
                problems.append(f"oidc.{key}: set without oidc.issuer (JWKSD_OIDC_ISSUER)")
        return None
    count = len(problems)
    if (problem := https_url_problem(issuer)) is not None:
        section.problem("issuer", issuer, problem)
    if jwks_uri is not None and (problem := https_url_problem(jwks_uri)) is not None:
        section.problem("jwks_uri", jwks_uri, problem)
    members = _extra_members(extra, problems)
    if len(problems) > count:
        return None
    base = issuer_path(issuer)
    discovery_path = base + DISCOVERY_SUFFIX
    jwks_path = base + JWKS_SUFFIX if jwks_uri is None else None
    for path, what in ((discovery_path, "discovery document"), (jwks_path, "JWKS")):
        if path in RESERVED_PATHS or (what == "discovery document" and path in server.paths):
            problems.append(f"oidc.issuer = {issuer!r}: the {what} path {path!r} collides with another route "
                            f"(server.paths, /health, /healthz, /readyz, /metrics)")
    return OidcConfig(issuer=issuer, jwks_uri=jwks_uri or issuer.rstrip("/") + JWKS_SUFFIX,
                      discovery_path=discovery_path, jwks_path=jwks_path, extra=members)


def _extra_members(extra: object, problems: list[str]) -> tuple[tuple[str, Any], ...]:
    """The [oidc.extra] members: JSON values, none of the members jwksd writes itself."""
    if not isinstance(extra, dict):
        problems.append(f"oidc.extra = {extra!r}: expected a table of metadata members")
        return ()
    members: list[tuple[str, Any]] = []
    for name, value in extra.items():
        if name in OWN_MEMBERS:
            problems.append(f"oidc.extra.{name}: jwksd writes this member itself; remove it from oidc.extra")
            continue
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            problems.append(f"oidc.extra.{name} = {value!r}: expected a JSON value (string, number, boolean, "
                            f"array or table)")
            continue
        members.append((name, value))
    return tuple(members)
