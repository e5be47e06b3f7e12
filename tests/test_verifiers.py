"""Real JWT verifiers against a real jwksd: PyJWT, jwcrypto, joserfc and Node.js jose, through a rotation.

Each verifier fetches the served set over HTTP as it does in production, and none may answer from
its own cache: PyJWKClient runs with ``cache_jwk_set=False, cache_keys=False`` (a new client per
token too), jwcrypto and joserfc parse a fresh GET each time (they have no fetcher of their own),
and jose gets a new ``createRemoteJWKSet`` per token with ``cacheMaxAge: 0``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import jwt as pyjwt
import pytest
from joserfc import jwt as joserfc_jwt
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import KeySet
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jwt as jwcrypto_jwt
from jwcrypto.common import JWException

from tests.conftest import Secrets
from tests.daemon_process import JWKS, Daemon, sm_sections
from tests.keys import jwk_set
from tests.signing import SigningKey, signing_key

NODE_DIR = Path(__file__).parent / "node"
# One daemon per group; every algorithm of the group is served by it at once.
GROUPS = {"rsa": ("RS256", "RS384", "RS512", "PS256"), "ec": ("ES256", "ES384", "ES512"), "okp": ("EdDSA",)}

Verify = Callable[[str, str, str], tuple[bool, str]]


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
        return body


def pyjwt_verify(url: str, token: str, alg: str) -> tuple[bool, str]:
    client = pyjwt.PyJWKClient(url, cache_jwk_set=False, cache_keys=False, timeout=5)
    try:
        key = client.get_signing_key_from_jwt(token)
        pyjwt.decode(token, key.key, algorithms=[alg])
    except pyjwt.PyJWTError as exc:
        return False, type(exc).__name__
    return True, ""


def jwcrypto_verify(url: str, token: str, alg: str) -> tuple[bool, str]:
    keyset = jwcrypto_jwk.JWKSet.from_json(fetch(url))
    try:
        jwcrypto_jwt.JWT(jwt=token, key=keyset, algs=[alg])
    except JWException as exc:
        return False, type(exc).__name__
    return True, ""


def joserfc_verify(url: str, token: str, alg: str) -> tuple[bool, str]:
    keyset = KeySet.import_key_set(json.loads(fetch(url)))
    try:
        with warnings.catch_warnings():
            # joserfc flags the alg name "EdDSA" as superseded by "Ed25519" (RFC 9864); tokens still say EdDSA.
            warnings.simplefilter("ignore", SecurityWarning)
            joserfc_jwt.decode(token, keyset, algorithms=[alg])
    except (JoseError, ValueError) as exc:
        return False, type(exc).__name__
    return True, ""


class NodeJose:
    """One long-lived ``node verify.mjs`` process answering one verification per line."""

    def __init__(self) -> None:
        node = shutil.which("node")
        assert node, "node is required (Debian package nodejs)"
        assert (NODE_DIR / "node_modules" / "jose").is_dir(), "run `make test` (npm ci --prefix tests/node)"
        self.process = subprocess.Popen([node, str(NODE_DIR / "verify.mjs")], cwd=NODE_DIR, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def __call__(self, url: str, token: str, alg: str) -> tuple[bool, str]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"url": url, "token": token, "alg": alg}) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())  # the script answers every line (5 s fetch timeout)
        return bool(answer["ok"]), str(answer.get("code", ""))

    def close(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)
        self.process.stdout.close()


@pytest.fixture(scope="module")
def verifiers() -> Iterator[dict[str, Verify]]:
    node = NodeJose()
    yield {"pyjwt": pyjwt_verify, "jwcrypto": jwcrypto_verify, "joserfc": joserfc_verify, "jose": node}
    node.close()


def check(verifiers: dict[str, Verify], url: str, tokens: list[tuple[str, str, str, bool]]) -> list[str]:
    """Every (label, alg, token, expected) through every verifier; the mismatches, in words."""
    problems = []
    for name, verify in verifiers.items():
        for label, alg, token, expected in tokens:
            ok, why = verify(url, token, alg)
            if ok != expected:
                problems.append(f"{name} {alg} {label}: expected {'accept' if expected else 'refuse'}, got "
                                f"{'accept' if ok else 'refuse (' + why + ')'}")
    return problems


def tokens_of(keys: dict[str, SigningKey], label: str, expected: bool) -> list[tuple[str, str, str, bool]]:
    return [(label, alg, key.sign(), expected) for alg, key in keys.items()]


@pytest.mark.parametrize("group", GROUPS)
def test_verifiers_through_rotation(group: str, secrets: Secrets, tmp_path: Path,
                                    verifiers: dict[str, Verify]) -> None:
    """Each verifier accepts served keys, refuses unknown kids, and follows a rotation and a removal."""
    algs = GROUPS[group]
    generations: dict[str, dict[str, SigningKey]] = {
        gen: {alg: signing_key(alg, f"{alg.lower()}-{gen}", index=10 + n * len(algs) + i)
              for i, alg in enumerate(algs)}
        for n, gen in enumerate(("old", "new", "newest"))}
    old, new, newest = generations["old"], generations["new"], generations["newest"]
    secret = secrets.create(jwk_set(*(key.jwk for key in old.values())))
    with Daemon.from_toml(tmp_path, sm_sections(secret), endpoint=secrets.endpoint) as daemon:
        url = daemon.url(JWKS)
        unknown = [("unknown kid", alg, key.sign(kid="not-served"), False) for alg, key in old.items()]
        problems = check(verifiers, url, tokens_of(old, "served", True) + unknown)

        secrets.put(secret, jwk_set(*(key.jwk for key in new.values())))  # new is AWSCURRENT, old AWSPREVIOUS
        daemon.refresh()
        assert daemon.kids() == {key.kid for key in (*old.values(), *new.values())}
        problems += check(verifiers, url, tokens_of(old, "previous", True) + tokens_of(new, "current", True))

        secrets.put(secret, jwk_set(*(key.jwk for key in newest.values())))  # old leaves the secret
        daemon.refresh()
        assert daemon.kids() == {key.kid for key in (*new.values(), *newest.values())}
        problems += check(verifiers, url, tokens_of(old, "removed", False) + tokens_of(new, "previous", True)
                          + tokens_of(newest, "current", True))
    assert problems == []


def test_verifier_refuses_forged_signature(secrets: Secrets, tmp_path: Path, verifiers: dict[str, Verify]) -> None:
    """A token signed by a key that is not served, under a served kid, is refused by every verifier."""
    served, forger = signing_key("ES256", "es256-served"), signing_key("ES256", "es256-served")
    secret = secrets.create(jwk_set(served.jwk))
    with Daemon.from_toml(tmp_path, sm_sections(secret), endpoint=secrets.endpoint) as daemon:
        tokens: list[tuple[str, str, str, bool]] = [("served", "ES256", served.sign(), True),
                                                    ("forged", "ES256", forger.sign(), False)]
        assert check(verifiers, daemon.url(JWKS), tokens) == []
