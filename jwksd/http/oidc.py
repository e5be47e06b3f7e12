"""jwksd as an OpenID Connect issuer: the discovery document, derived from the algorithms of the served keys.

Served at ``<issuer path>/.well-known/openid-configuration`` by the JWKS handler (ETag, 304, gzip,
cache headers, CORS). The publisher rebuilds it as it swaps in a new set, and only when the set's
algorithms change, so its ETag and Last-Modified stay put across rotations with the same algorithms.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from functools import cached_property
from typing import Any

import structlog

from jwksd.config import OidcConfig
from jwksd.store import Snapshot, encoded
from jwksd.validate.jwk import ALGORITHMS, SIG_OPS

log = structlog.get_logger("jwksd.http.oidc")

# The JWS algorithms a served key may sign with, in the registry's order.
SIGNING_ALGS = tuple(alg for alg, (use, _) in ALGORITHMS.items() if use == "sig")


def key_algs(key: Mapping[str, Any]) -> tuple[str, ...]:
    """The signing algorithms one served key verifies: its ``alg``, else every one its type and curve can sign with.

    A key for encryption (``use: enc``, encryption ``key_ops`` or an encryption ``alg``) contributes none.
    """
    if key.get("use") == "enc" or ("key_ops" in key and not SIG_OPS & set(key["key_ops"])):
        return ()
    alg = key.get("alg")
    if alg is not None:
        return (alg,) if alg in SIGNING_ALGS else ()
    kind = (key.get("kty"), key.get("crv"))
    return tuple(name for name in SIGNING_ALGS if kind in ALGORITHMS[name][1])


def signing_algs(keys: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """The set's signing algorithms without repeats, in the registry's order (RS256 first when present)."""
    found = {alg for key in keys for alg in key_algs(key)}
    return tuple(alg for alg in SIGNING_ALGS if alg in found)


@dataclass(frozen=True)
class Discovery:
    """One discovery document as served: bytes, gzip copy and strong ETags, built once per algorithm list."""

    algs: tuple[str, ...]
    body: bytes
    gzip_body: bytes
    etag: str
    gzip_etag: str
    changed_at: float  # wall time the algorithm list last changed (Last-Modified)

    @cached_property
    def last_modified(self) -> str:
        return formatdate(self.changed_at, usegmt=True)


def metadata(config: OidcConfig, algs: tuple[str, ...]) -> dict[str, Any]:
    """The OpenID Provider metadata: the members jwksd writes, then the configured extra ones."""
    return {
        "issuer": config.issuer,
        "jwks_uri": config.jwks_uri,
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(algs),
        **dict(config.extra),
    }


def build_discovery(config: OidcConfig, algs: tuple[str, ...], changed_at: float) -> Discovery:
    """Serialise the document once, as the store does the JWKS."""
    body = json.dumps(metadata(config, algs), separators=(",", ":"), ensure_ascii=False).encode()
    gzip_body, etag, gzip_etag = encoded(body)
    return Discovery(algs=algs, body=body, gzip_body=gzip_body, etag=etag, gzip_etag=gzip_etag,
                     changed_at=changed_at)


class DiscoveryDocument:
    """The document of the set being served: the publisher calls ``update``, the JWKS handler ``represent``."""

    def __init__(self, config: OidcConfig) -> None:
        self.config = config
        self._document: Discovery | None = None

    def update(self, snapshot: Snapshot) -> Discovery:
        """Rebuild the document when ``snapshot`` brings another algorithm list; return the one in force."""
        algs = signing_algs(snapshot.keys)
        document = self._document
        if document is not None and document.algs == algs:
            return document
        document = self._document = build_discovery(self.config, algs, snapshot.changed_at)
        log.info("oidc_discovery_rebuilt", issuer=self.config.issuer, algs=list(algs))
        if "RS256" not in algs:
            # OpenID Connect Discovery 1.0 says RS256 MUST be listed; jwksd lists only what it can verify.
            log.warning("oidc_rs256_missing", algs=list(algs),
                        detail="no served key verifies RS256; strict OpenID Connect relying parties may refuse "
                               "this issuer")
        return document

    def represent(self, snapshot: Snapshot) -> Discovery:
        """The document in force (built from ``snapshot`` if the publisher has not installed a set yet)."""
        return self._document if self._document is not None else self.update(snapshot)
