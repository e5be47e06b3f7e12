"""The OpenID discovery document: derived algorithms, the JWKS's HTTP treatment, and the specifications' rules."""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import pytest

from jwksd.config import Config, OidcConfig, load_config
from jwksd.http.oidc import key_algs, signing_algs
from tests.conftest import Secrets
from tests.daemon_helpers import get_jwks, kids_of, refresh_now, sm_config, start
from tests.keys import ec_jwk, ed25519_jwk, jwk_set, rsa_jwk, rsa_key
from tests.signing import signing_key

ISSUER = "https://auth.example.com/tenants/a"
DISCOVERY = "/tenants/a/.well-known/openid-configuration"
RSA_ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]


def oidc_config(config: Config, issuer: str = ISSUER, **toml: str) -> Config:
    """``config`` with [oidc] read by load_config, so the paths it adds are the daemon's own."""
    environ = {"JWKSD_SECRET_ID": "unused", "JWKSD_OIDC_ISSUER": issuer}
    loaded = load_config(None, environ)
    assert loaded.oidc is not None
    oidc: OidcConfig = replace(loaded.oidc, **toml) if toml else loaded.oidc
    return replace(config, oidc=oidc, server=replace(config.server, paths=loaded.server.paths))


def test_key_algs_follow_alg_then_type() -> None:
    """A key's alg wins; without one, every signing alg its type and curve fit; encryption keys give none."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    rsa = rsa_jwk(rsa_key(0), "r")
    assert key_algs(rsa) == ("RS256",)
    assert key_algs({k: v for k, v in rsa.items() if k != "alg"}) == tuple(RSA_ALGS)
    p384 = {k: v for k, v in ec_jwk(ec.generate_private_key(ec.SECP384R1()), "e", "ES384").items() if k != "alg"}
    assert key_algs(p384) == ("ES384",)
    ed = {k: v for k, v in ed25519_jwk(ed25519.Ed25519PrivateKey.generate(), "d").items() if k != "alg"}
    assert key_algs(ed) == ("EdDSA", "Ed25519")
    assert key_algs({**rsa, "alg": "RSA-OAEP", "use": "enc"}) == ()
    assert key_algs({k: v for k, v in rsa.items() if k not in ("alg", "use")} | {"key_ops": ["encrypt"]}) == ()


def test_signing_algs_in_registry_order() -> None:
    """The set's algorithms are listed once each, RS256 first, whatever order the keys come in."""
    keys = [signing_key("ES256", "e").jwk, rsa_jwk(rsa_key(0), "p", alg="PS256"), rsa_jwk(rsa_key(1), "r")]
    assert signing_algs(keys) == ("RS256", "PS256", "ES256")


async def test_document_served_with_jwks_treatment(aiohttp_client: Any, secrets: Secrets) -> None:
    """The document has the issuer's members and the JWKS's ETag, 304, gzip, cache and CORS headers."""
    secret = secrets.create(jwk_set(rsa_jwk(rsa_key(0), "key-0")))
    client = await start(aiohttp_client, oidc_config(sm_config(secrets.endpoint, secret)))
    status, headers, body = await get_jwks(client, DISCOVERY, **{"Accept-Encoding": "identity"})
    assert status == 200
    assert json.loads(body) == {
        "issuer": ISSUER, "jwks_uri": f"{ISSUER}/.well-known/jwks.json", "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"]}
    assert headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "public, max-age=120, stale-while-revalidate=60, stale-if-error=86400"
    assert re.fullmatch(r'"[A-Za-z0-9_-]{24}"', headers["ETag"])
    assert headers["Vary"] == "Accept-Encoding" and headers["Access-Control-Allow-Origin"] == "*"
    assert "Last-Modified" in headers
    status, again, _ = await get_jwks(client, DISCOVERY, **{"If-None-Match": headers["ETag"],
                                                            "Accept-Encoding": "identity"})
    assert status == 304 and again["ETag"] == headers["ETag"]
    async with client.get(DISCOVERY, headers={"Accept-Encoding": "gzip"}, auto_decompress=False) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert response.headers["ETag"] == headers["ETag"][:-1] + '-gz"'
        assert gzip.decompress(await response.read()) == body
    async with client.options(DISCOVERY, headers={"Origin": "https://app.example.com",
                                                  "Access-Control-Request-Method": "GET"}) as response:
        assert response.status == 204 and response.headers["Access-Control-Allow-Origin"] == "*"
    status, _, jwks = await get_jwks(client, "/tenants/a/.well-known/jwks.json")
    assert status == 200 and kids_of(jwks) == ["key-0"]


async def test_algorithms_follow_the_key_set(aiohttp_client: Any, secrets: Secrets) -> None:
    """A rotation with the same algorithms keeps the document and its ETag; a new algorithm rebuilds it."""
    secret = secrets.create(jwk_set(rsa_jwk(rsa_key(0), "key-0")))
    config = oidc_config(sm_config(secrets.endpoint, secret, version_stages=("AWSCURRENT",)))
    client = await start(aiohttp_client, config)
    _, first, body = await get_jwks(client, DISCOVERY)
    secrets.put(secret, jwk_set(rsa_jwk(rsa_key(1), "key-1")))
    await refresh_now(client)
    assert kids_of((await get_jwks(client))[2]) == ["key-1"]
    _, same, same_body = await get_jwks(client, DISCOVERY)
    assert (same["ETag"], same["Last-Modified"], same_body) == (first["ETag"], first["Last-Modified"], body)
    secrets.put(secret, jwk_set(rsa_jwk(rsa_key(1), "key-1"), signing_key("ES256", "key-e").jwk,
                                {k: v for k, v in rsa_jwk(rsa_key(2), "key-2").items() if k != "alg"}))
    await refresh_now(client)
    status, changed, changed_body = await get_jwks(client, DISCOVERY, **{"If-None-Match": first["ETag"]})
    assert status == 200 and changed["ETag"] != first["ETag"]
    assert json.loads(changed_body)["id_token_signing_alg_values_supported"] == [*RSA_ALGS, "ES256"]


async def test_extra_members_and_configured_jwks_uri(aiohttp_client: Any, secrets: Secrets) -> None:
    """Configured extra members follow jwksd's own; a configured jwks_uri is published unchanged."""
    secret = secrets.create(jwk_set(signing_key("ES256", "key-e").jwk))
    config = oidc_config(sm_config(secrets.endpoint, secret), "https://auth.example.com",
                         jwks_uri="https://cdn.example.com/keys.json",
                         extra=(("claims_supported", ["sub", "aud"]),))
    client = await start(aiohttp_client, config)
    status, _, body = await get_jwks(client, "/.well-known/openid-configuration")
    document = json.loads(body)
    assert status == 200 and list(document)[-1] == "claims_supported"
    assert document["jwks_uri"] == "https://cdn.example.com/keys.json"
    assert document["id_token_signing_alg_values_supported"] == ["ES256"]


async def test_nothing_served_means_503(aiohttp_client: Any, secrets: Secrets) -> None:
    """Without a valid key set the document is unavailable too (no empty algorithm list is published)."""
    secret = secrets.create("not json")
    client = await start(aiohttp_client, oidc_config(sm_config(secrets.endpoint, secret)))
    status, headers, _ = await get_jwks(client, DISCOVERY)
    assert status == 503 and headers["Cache-Control"] == "no-store"


# The rules of OpenID Connect Discovery 1.0 (section 3 metadata, section 4 the request and response)
# and RFC 8414 (sections 2 and 3) that a JWKS-only issuer can and must follow. authorization_endpoint
# and token_endpoint are left out as Kubernetes and SPIRE leave them out: jwksd issues no tokens.
REQUIRED_ARRAYS = ("response_types_supported", "subject_types_supported", "id_token_signing_alg_values_supported")


def discovery_rule_violations(document: dict[str, Any], configured_issuer: str, path: str,
                              headers: Any) -> list[str]:
    """Every rule the served document breaks, in words."""
    broken = []
    issuer = document.get("issuer")
    if issuer != configured_issuer:  # OIDC Discovery 4.3, RFC 8414 3.3: identical to the issuer it was fetched for
        broken.append("issuer differs from the issuer the document was fetched for")
    parts = urlsplit(str(issuer))
    if parts.scheme != "https" or parts.query or parts.fragment:  # OIDC Discovery 3, RFC 8414 2
        broken.append("issuer is not an https URL without query and fragment")
    if path != parts.path.rstrip("/") + "/.well-known/openid-configuration":  # OIDC Discovery 4
        broken.append("document not at the issuer path followed by /.well-known/openid-configuration")
    if urlsplit(str(document.get("jwks_uri"))).scheme != "https":  # OIDC Discovery 3 (REQUIRED), RFC 8414 2
        broken.append("jwks_uri missing or not https")
    for member in REQUIRED_ARRAYS:
        values = document.get(member)
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            broken.append(f"{member} is not a non-empty JSON array of strings")
    if "RS256" not in document.get("id_token_signing_alg_values_supported", []):  # OIDC Discovery 3
        broken.append("id_token_signing_alg_values_supported does not include RS256")
    if "none" in document.get("id_token_signing_alg_values_supported", []):
        broken.append("alg none listed for ID Tokens returned from the authorization endpoint")
    if not set(document.get("subject_types_supported", [])) <= {"public", "pairwise"}:
        broken.append("subject_types_supported holds a type other than public or pairwise")
    if not headers.get("Content-Type", "").startswith("application/json"):  # OIDC Discovery 4.2, RFC 8414 3.2
        broken.append("not served as application/json")
    if any(value is None for value in document.values()):  # RFC 8414 3.2: omit members without a value
        broken.append("a member with a null value")
    return broken


@pytest.mark.parametrize("issuer", ["https://auth.example.com", "https://auth.example.com/tenants/a/"])
async def test_document_follows_discovery_rules(aiohttp_client: Any, secrets: Secrets, issuer: str) -> None:
    """The served document breaks none of the OpenID Connect Discovery 1.0 and RFC 8414 rules above."""
    secret = secrets.create(jwk_set(rsa_jwk(rsa_key(0), "key-0"), signing_key("ES256", "key-e").jwk))
    client = await start(aiohttp_client, oidc_config(sm_config(secrets.endpoint, secret), issuer))
    path = urlsplit(issuer).path.rstrip("/") + "/.well-known/openid-configuration"
    status, headers, body = await get_jwks(client, path)
    assert status == 200
    assert discovery_rule_violations(json.loads(body), issuer, path, headers) == []


def test_rule_check_can_fail() -> None:
    """The rule check names what a wrong document breaks (so the test above can fail)."""
    document = {"issuer": "http://a.example.com?x", "jwks_uri": None, "response_types_supported": [],
                "subject_types_supported": ["secret"], "id_token_signing_alg_values_supported": ["ES256", "none"]}
    assert discovery_rule_violations(document, "https://a.example.com", "/openid-configuration",
                                     {"Content-Type": "text/html"}) == [
        "issuer differs from the issuer the document was fetched for",
        "issuer is not an https URL without query and fragment",
        "document not at the issuer path followed by /.well-known/openid-configuration",
        "jwks_uri missing or not https",
        "response_types_supported is not a non-empty JSON array of strings",
        "id_token_signing_alg_values_supported does not include RS256",
        "alg none listed for ID Tokens returned from the authorization endpoint",
        "subject_types_supported holds a type other than public or pairwise",
        "not served as application/json",
        "a member with a null value",
    ]
