"""The [source] / [[sources]] tables and [shared_cache]: where keys come from and how a fleet shares them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from jwksd.config.model import SharedCacheConfig
from jwksd.config.reader import Section, is_loopback, is_redis_url, table_section
from jwksd.config.settings import setting_of
from jwksd.config.source_model import (
    SOURCE_KIND,
    DynamoDBSourceConfig,
    FileSourceConfig,
    HttpSourceConfig,
    SecretsManagerSourceConfig,
    SourceConfig,
)
from jwksd.redact import shown


def source_tables(data: Mapping[str, Any]) -> list[Any]:
    sources = data.get("sources")
    if isinstance(sources, list):
        return sources
    return [data.get("source", {})]


def read_source(section: Section) -> SourceConfig | None:
    kind = section.read(SOURCE_KIND)
    name = section.string("name", kind) or "source"
    result: SourceConfig | None = None
    if kind == "file":
        path = section.path("path")
        if path is None:
            section.problem("path", None, "the path of a key document (JWKSD_SOURCE_FILE)")
        result = section.build(FileSourceConfig, path=path, name=name) if path else None
    elif kind == "http":
        result = read_http_source(section, name)
    elif kind == "dynamodb":
        result = section.build(DynamoDBSourceConfig, name=name)
    else:
        secret_id = section.string("secret_id", None)
        if secret_id is None:
            section.problem("secret_id", None, "the name or ARN of a secret (JWKSD_SECRET_ID)")
        stages = section.read(setting_of(SecretsManagerSourceConfig, "version_stages"))
        if "AWSCURRENT" not in stages:
            section.problem("version_stages", list(stages), "a list that includes AWSCURRENT")
        result = section.build(SecretsManagerSourceConfig, secret_id=secret_id or "", name=name, version_stages=stages)
    section.check_unknown()
    return result


def read_http_source(section: Section, name: str) -> HttpSourceConfig | None:
    url = section.string("url", None)
    insecure = section.read(setting_of(HttpSourceConfig, "allow_insecure_loopback"))
    if url is None:
        section.problem("url", None, "the https:// URL of an upstream JWKS (JWKSD_SOURCE_URL)")
    else:
        parts = urlsplit(url)
        if not parts.hostname or parts.scheme not in ("https", "http"):
            section.problem("url", url, "an https:// URL with a host")
            url = None
        elif parts.scheme == "http" and not (insecure and is_loopback(parts.hostname)):
            section.problem("url", url, "an https:// URL (plain http only with allow_insecure_loopback = true "
                                        "and a loopback host)")
            url = None
    low = section.read(setting_of(HttpSourceConfig, "min_refresh_s"))
    high = section.read(setting_of(HttpSourceConfig, "max_refresh_s"))
    if low > high:
        section.problems.append(f"{section.name}.max_refresh_s = {high:g}: expected at least min_refresh_s ({low:g})")
    result = section.build(HttpSourceConfig, url=url or "", name=name, min_refresh_s=low, max_refresh_s=high,
                           allow_insecure_loopback=insecure)
    return result if url else None


def read_shared_cache(data: Mapping[str, Any], problems: list[str], interval_s: float) -> SharedCacheConfig:
    section = table_section(data, "shared_cache", problems)
    url = section.read(setting_of(SharedCacheConfig, "url"))
    if url and not is_redis_url(url):
        section.problem("url", url, "redis://host:port/db (or rediss:// for TLS), or empty for off")
        url = ""
    namespace = section.read(setting_of(SharedCacheConfig, "namespace"))
    if not namespace.isprintable() or " " in namespace:
        section.problem("namespace", namespace, "a string of printable characters without spaces")
    lease_s = section.read(setting_of(SharedCacheConfig, "lease_s"))
    if url and lease_s >= interval_s:
        problems.append(f"shared_cache.lease_s = {lease_s:g}: expected less than refresh.interval_s ({interval_s:g})")
    shared = section.build(SharedCacheConfig, url=url, namespace=namespace, lease_s=lease_s)
    section.check_unknown()
    return shared


def read_sources(data: Mapping[str, Any], problems: list[str]) -> tuple[SourceConfig, ...]:
    if "sources" in data and "source" in data:
        problems.append("source and sources: expected one of [source] or [[sources]], not both")
    tables = source_tables(data)
    if not tables:
        problems.append("sources = []: expected at least one source")
    sources: list[SourceConfig] = []
    for index, table in enumerate(tables):
        label = "source" if "sources" not in data else f"sources[{index}]"
        if not isinstance(table, dict):
            problems.append(f"{label} = {shown(table)!r}: expected a table")
            continue
        source = read_source(Section(label, table, problems))
        if source is not None:
            sources.append(source)
    names = [source.name for source in sources]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"sources: name {name!r} is used twice: expected each source to have its own name")
    return tuple(sources)
