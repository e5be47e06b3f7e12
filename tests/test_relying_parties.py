"""Real relying parties start from a jwksd issuer with a path, over TLS with a test CA, and verify a token.

Node.js: openid-client's discovery, then jose through the discovered jwks_uri. Python: the
discovery document over urllib, then PyJWT's PyJWKClient on its jwks_uri. Both check the issuer.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.conftest import free_port
from tests.daemon_process import Daemon
from tests.keys import jwk_set
from tests.signing import SigningKey, signing_key
from tests.tls_ca import TestCA

NODE_DIR = Path(__file__).parent / "node"
AUDIENCE = "jwksd-test-audience"


class Issuer:
    """A running jwksd with TLS and [oidc], its CA and the key that signs its tokens."""

    def __init__(self, daemon: Daemon, ca: TestCA, issuer: str, key: SigningKey, root_file: Path) -> None:
        self.daemon, self.ca, self.issuer, self.key, self.root_file = daemon, ca, issuer, key, root_file

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        return self.key.sign({"iss": self.issuer, "aud": AUDIENCE, "sub": "workload-1", "iat": now,
                              "exp": now + 600, **claims})


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Issuer]:
    workdir = tmp_path_factory.mktemp("issuer")
    ca = TestCA()
    cert, key_file = workdir / "tls.crt", workdir / "tls.key"
    ca.issue().write(cert, key_file)
    key = signing_key("RS256", "issuer-key-1")
    (workdir / "keys.json").write_text(jwk_set(key.jwk, signing_key("ES256", "issuer-key-2").jwk))
    port = free_port()
    url = f"https://localhost:{port}/tenants/a"
    sections = {"source": {"kind": "file", "path": str(workdir / "keys.json")},
                "server": {"listen": f"127.0.0.1:{port}", "tls_cert_file": str(cert), "tls_key_file": str(key_file)},
                "refresh": {"interval_s": 3600, "max_age_s": 3600},
                "oidc": {"issuer": url}}
    with Daemon.from_toml(workdir, sections, tls=ca.client_context(), port=port) as daemon:
        yield Issuer(daemon, ca, url, key, ca.write_root(workdir / "root.pem"))


def node_relying_party(issuer: Issuer, token: str, claimed_issuer: str | None = None) -> dict[str, Any]:
    """Run tests/node/discover.mjs: openid-client discovery, then jose verification."""
    node = shutil.which("node")
    assert node, "node is required (Debian package nodejs)"
    assert (NODE_DIR / "node_modules" / "openid-client").is_dir(), "run `make test` (npm ci --prefix tests/node)"
    result = subprocess.run([node, "discover.mjs", claimed_issuer or issuer.issuer, token, AUDIENCE], cwd=NODE_DIR,
                            env={"PATH": "/usr/bin:/bin", "NODE_EXTRA_CA_CERTS": str(issuer.root_file)},
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def python_relying_party(issuer: Issuer, token: str) -> dict[str, Any]:
    """Discovery by hand (PyJWT has none), then PyJWKClient on the discovered jwks_uri."""
    context = issuer.ca.client_context()
    with urllib.request.urlopen(f"{issuer.issuer}/.well-known/openid-configuration", context=context,
                                timeout=5) as response:
        metadata = json.load(response)
    assert metadata["issuer"] == issuer.issuer  # OpenID Connect Discovery 1.0 section 4.3
    client = jwt.PyJWKClient(metadata["jwks_uri"], ssl_context=context, timeout=5)
    signing = client.get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(token, signing, algorithms=metadata["id_token_signing_alg_values_supported"],
                                        issuer=issuer.issuer, audience=AUDIENCE)
    return claims


def test_node_client_discovers_and_verifies(issuer: Issuer) -> None:
    """openid-client discovers the issuer with a path over TLS; jose verifies through the discovered jwks_uri."""
    answer = node_relying_party(issuer, issuer.token())
    assert answer == {"ok": True, "kid": "issuer-key-1", "jwks_uri": f"{issuer.issuer}/.well-known/jwks.json",
                      "algs": ["RS256", "ES256"]}


def test_node_client_refuses_a_foreign_issuer(issuer: Issuer) -> None:
    """A token whose iss is another issuer fails verification in the same client (the check can fail)."""
    answer = node_relying_party(issuer, issuer.token(iss="https://elsewhere.example.com"))
    assert answer["ok"] is False and answer["code"] == "ERR_JWT_CLAIM_VALIDATION_FAILED"


def test_python_client_discovers_and_verifies(issuer: Issuer) -> None:
    """PyJWT verifies a token with the key found through the discovered jwks_uri, issuer and audience checked."""
    claims = python_relying_party(issuer, issuer.token())
    assert claims["iss"] == issuer.issuer and claims["sub"] == "workload-1"
    with pytest.raises(jwt.InvalidIssuerError):
        python_relying_party(issuer, issuer.token(iss="https://elsewhere.example.com"))
