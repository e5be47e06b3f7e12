"""HTTP caching of the served set: conditional GET (ETag, If-Modified-Since), gzip negotiation, the cache headers.

Every header set is built once per snapshot, config and source label; a request only picks one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Protocol

from aiohttp import hdrs, web

from jwksd.config import Config, HttpCacheConfig
from jwksd.http.accept_encoding import accepts_gzip

_ETAG = re.compile(r'(?:W/)?"([^"]*)"')
ALLOWED_REQUEST_HEADERS = "If-None-Match, If-Modified-Since"
EXPOSED_HEADERS = "ETag, Last-Modified, X-JWKS-Source"


class Representation(Protocol):
    """What a conditional GET serves: a snapshot of the key set, or a document derived from one."""

    @property
    def body(self) -> bytes: ...

    @property
    def gzip_body(self) -> bytes: ...

    @property
    def etag(self) -> str: ...

    @property
    def gzip_etag(self) -> str: ...

    @property
    def changed_at(self) -> float: ...

    @property
    def last_modified(self) -> str: ...


def etag_matches(header: str, snapshot: Representation) -> bool:
    """Weak comparison of If-None-Match (a list or ``*``) against either representation's ETag."""
    if header in (snapshot.etag, snapshot.gzip_etag):  # a client echoing our ETag: most requests
        return True
    if header.strip() == "*":
        return True
    ours = (snapshot.etag.strip('"'), snapshot.gzip_etag.strip('"'))
    return any(tag in ours for tag in _ETAG.findall(header))


def not_modified_since(header: str, snapshot: Representation) -> bool:
    """True when If-Modified-Since is a valid date no earlier than the content's last change."""
    try:
        since = parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError, IndexError):
        return False
    return int(snapshot.changed_at) <= since


DEGRADED = frozenset({"last-known-good", "fallback"})


@functools.lru_cache(maxsize=8)
def cache_control(max_age_s: float, cache: HttpCacheConfig, *, degraded: bool = False) -> str:
    """The Cache-Control value for the settings in force, built once per setting.

    ``degraded`` (a set read from disk, not from the source): at most ``degraded_max_age_s`` and no
    stale-* directives, so neither a client nor a CDN keeps it long after the source is back.
    """
    if degraded:
        return f"public, max-age={int(min(max_age_s, cache.degraded_max_age_s))}"
    return (f"public, max-age={int(max_age_s)}, stale-while-revalidate={cache.stale_while_revalidate_s}, "
            f"stale-if-error={cache.stale_if_error_s}")


@dataclass(frozen=True)
class ResponseHeaders:
    """The four header sets of one snapshot and source: identity or gzip, for a 304 or with the body."""

    plain: Mapping[str, str]
    plain_body: Mapping[str, str]
    gzip: Mapping[str, str]
    gzip_body: Mapping[str, str]


class ConditionalGet:
    """Answers a GET of a representation: 304 when the client's copy is current, else the body it can decode."""

    def __init__(self) -> None:
        self._cached: tuple[Representation, Config, str, ResponseHeaders] | None = None

    def headers(self, snapshot: Representation, config: Config, source: str) -> ResponseHeaders:
        """The header sets for this snapshot, config and source, built once each: requests only pick one."""
        cached = self._cached
        if cached is not None and cached[0] is snapshot and cached[1] is config and cached[2] == source:
            return cached[3]
        common = {
            hdrs.CACHE_CONTROL: cache_control(config.refresh.max_age_s, config.http_cache, degraded=source in DEGRADED),
            hdrs.LAST_MODIFIED: snapshot.last_modified,
            hdrs.VARY: "Accept-Encoding",
            hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: "*",
            hdrs.ACCESS_CONTROL_EXPOSE_HEADERS: EXPOSED_HEADERS,
            "X-JWKS-Source": source,
        }
        plain = {**common, hdrs.ETAG: snapshot.etag}
        gzip = {**common, hdrs.ETAG: snapshot.gzip_etag}
        content_type: dict[str, str] = {hdrs.CONTENT_TYPE: "application/json"}
        headers = ResponseHeaders(plain=plain, plain_body={**plain, **content_type}, gzip=gzip,
                                  gzip_body={**gzip, **content_type, hdrs.CONTENT_ENCODING: "gzip"})
        self._cached = (snapshot, config, source, headers)
        return headers

    def respond(self, request: web.Request, snapshot: Representation, config: Config, source: str) -> web.Response:
        """304 on a matching If-None-Match (or, without one, If-Modified-Since); else 200, gzip when accepted."""
        headers = self.headers(snapshot, config, source)
        request_headers = request.headers
        accept = request_headers.get(hdrs.ACCEPT_ENCODING)
        gzip = accept is not None and accepts_gzip(accept)
        inm = request_headers.get(hdrs.IF_NONE_MATCH)
        ims = request_headers.get(hdrs.IF_MODIFIED_SINCE)
        if (inm is not None and etag_matches(inm, snapshot)) or (
                inm is None and ims is not None and not_modified_since(ims, snapshot)):
            return web.Response(status=304, headers=headers.gzip if gzip else headers.plain)
        if gzip:
            return web.Response(body=snapshot.gzip_body, headers=headers.gzip_body)
        return web.Response(body=snapshot.body, headers=headers.plain_body)


async def preflight(request: web.Request) -> web.Response:
    """CORS preflight: browsers send one before a conditional GET from another origin."""
    return web.Response(status=204, headers={
        hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: "*",
        hdrs.ACCESS_CONTROL_ALLOW_METHODS: "GET, HEAD, OPTIONS",
        hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ALLOWED_REQUEST_HEADERS,
        hdrs.ACCESS_CONTROL_MAX_AGE: "86400",
    })
