"""An upstream JWKS URL through one aiohttp client session: conditional requests, bounded retries.

A 304 answers with the documents of the last 200. The upstream's ``Cache-Control: max-age``
(less its ``Age``) says when to ask again, clamped to ``min_refresh_s``..``max_refresh_s``; the
refresh loop schedules this source by it. Redirects are not followed, so an https URL can never
be downgraded to plain http. The body is read up to the validator's size limit plus one byte.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import aiohttp
import structlog
from aiohttp import hdrs

from jwksd import __version__
from jwksd.aws.retry import with_retries
from jwksd.config import HttpSourceConfig
from jwksd.errors import SourceError
from jwksd.metrics import UPSTREAM_RESULTS, Metrics
from jwksd.redact import public_url
from jwksd.sources import Document, Fetch

log = structlog.get_logger("jwksd.sources.http")

ACCEPT = "application/jwk-set+json, application/json;q=0.9"
LABEL = "upstream"


def freshness_s(headers: Mapping[str, str]) -> float | None:
    """Seconds the upstream says its answer stays fresh (max-age less Age; no-cache/no-store: 0), or None."""
    directives: dict[str, str] = {}
    for part in headers.get(hdrs.CACHE_CONTROL, "").split(","):
        name, _, value = part.strip().partition("=")
        directives[name.strip().lower()] = value.strip().strip('"')
    if "no-store" in directives or "no-cache" in directives:
        return 0.0
    if not directives.get("max-age", "").isdigit():
        return None
    age = headers.get(hdrs.AGE, "0").strip()
    return max(0.0, float(directives["max-age"]) - (float(age) if age.isdigit() else 0.0))


def result_label(status: int) -> str:
    """The ``jwksd_upstream_requests_total`` result of an HTTP status."""
    return str(status) if status in (200, 304) else f"{status // 100}xx"


class HttpSource:
    """Reads one upstream JWKS URL; owns its client session (create it inside the running loop)."""

    def __init__(self, config: HttpSourceConfig, metrics: Metrics, *, max_document_bytes: int) -> None:
        self.name = config.name
        self.config = config
        self.metrics = metrics
        self.limit = max_document_bytes
        self.display = public_url(config.url)
        self._etag: str | None = None
        self._last_modified: str | None = None
        self._document: Document | None = None  # the last 200's body, answered again on 304
        timeout = aiohttp.ClientTimeout(total=config.connect_timeout_s + config.read_timeout_s,
                                        connect=config.connect_timeout_s, sock_read=config.read_timeout_s)
        self._session = aiohttp.ClientSession(
            timeout=timeout, headers={hdrs.USER_AGENT: f"jwksd/{__version__}", hdrs.ACCEPT: ACCEPT},
            connector=aiohttp.TCPConnector(limit=2))
        for result in UPSTREAM_RESULTS:
            metrics.upstream_requests.labels(self.name, result)

    async def fetch(self) -> Fetch:
        return await with_retries(self._get, self.config, "upstream_retry", source=self.name)

    async def _get(self) -> Fetch:
        """One conditional GET, translating everything aiohttp can raise into SourceError."""
        headers: dict[str, str] = {}
        if self._document is not None:
            if self._etag:
                headers[hdrs.IF_NONE_MATCH] = self._etag
            if self._last_modified:
                headers[hdrs.IF_MODIFIED_SINCE] = self._last_modified
        result = "network"
        try:
            async with self._session.get(self.config.url, headers=headers, allow_redirects=False) as response:
                result = result_label(response.status)
                if response.status == 304 and self._document is not None:
                    return Fetch((self._document,), refresh_in_s=self._refresh_in(response.headers))
                if response.status != 200:
                    raise SourceError(f"http_{response.status}", f"GET {self.display}: HTTP {response.status}"
                                      + (" (redirects are not followed)" if 300 <= response.status < 400 else ""),
                                      retryable=response.status >= 500 or response.status == 429)
                content = await self._read(response)
                etag = response.headers.get(hdrs.ETAG)
                self._etag, self._last_modified = etag, response.headers.get(hdrs.LAST_MODIFIED)
                version = etag or hashlib.sha256(content).hexdigest()[:16]
                self._document = Document(label=LABEL, content=content, required=True, version=version)
                return Fetch((self._document,), refresh_in_s=self._refresh_in(response.headers))
        except TimeoutError as exc:
            result = "timeout"
            raise SourceError("timeout", f"GET {self.display}: no complete answer within "
                                         f"{self.config.connect_timeout_s + self.config.read_timeout_s:g}s",
                              retryable=True) from exc
        except aiohttp.ClientError as exc:
            result = "network"
            raise SourceError("network", f"GET {self.display}: {type(exc).__name__}", retryable=True) from exc
        finally:
            self.metrics.upstream_requests.labels(self.name, result).inc()

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        """The body up to limit + 1 bytes: enough for the validator to refuse an oversized one by name."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(16384):
            chunks.append(chunk)
            size += len(chunk)
            if size > self.limit:
                break
        return b"".join(chunks)[: self.limit + 1]

    def _refresh_in(self, headers: Mapping[str, str]) -> float | None:
        fresh = freshness_s(headers)
        if fresh is None:
            return None
        return min(self.config.max_refresh_s, max(self.config.min_refresh_s, fresh))

    async def close(self) -> None:
        await self._session.close()
