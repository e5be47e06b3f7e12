"""docs/signer.md's examples run as written against a real `jwksd signer`: curl, Node's http, the Python client
and its command line each get a token that verifies with the active key."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from jwksd.config import RotationConfig
from jwksd.rotation.kms import KmsBackend
from tests.daemon_process import DUMMY_AWS
from tests.markdown import ROOT, Document
from tests.rotation_helpers import keyring, rotation_config
from tests.signer_helpers import SignerProcess, active_registry, rotation_table

DOC = ROOT / "docs" / "signer.md"
DOCUMENTED_SOCKET = "/run/jwksd-signer/signer.sock"


def blocks(kind: str, containing: str) -> list[str]:
    """The fenced ``kind`` blocks of docs/signer.md that contain ``containing``."""
    found = [s.text for s in Document.read(DOC).snippets if s.kind == kind and containing in s.text]
    assert found, f"docs/signer.md has no {kind} block with {containing!r}"
    return found


@pytest.fixture(scope="module")
def signed_with(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SignerProcess, Any]]:
    """One signer for the module, on a KMS registry with an active key, and that key's public half."""
    config = rotation_config(moto_endpoint)
    with pytest.MonkeyPatch.context() as patch:  # the autouse dummy credentials come later, per test
        for name, value in DUMMY_AWS.items():
            patch.setenv(name, value)
        key = asyncio.run(prepare(config))
    signer = SignerProcess.start(tmp_path_factory.mktemp("signer"), rotation_table(config, moto_endpoint))
    yield signer, key
    signer.kill()


async def prepare(config: RotationConfig) -> Any:
    async with keyring(config, publish=True) as ring:
        await active_registry(ring, f"{config.private_secret_prefix}/public")
        (active,) = [record for record in await ring.registry.records() if record.status == "active"]
        assert isinstance(ring.backend, KmsBackend)
        return jwt.PyJWK(await ring.backend.public_jwk(active)).key


def verified(token: str, key: Any) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, key, algorithms=["ES256"], audience="https://api.example.com")
    return claims


def run(argv: list[str], cwd: Path | None = None) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=cwd, check=False)
    assert result.returncode == 0, (argv, result.stdout, result.stderr)
    return result.stdout


def json_values(text: str) -> list[Any]:
    """Each JSON value of ``text``, one after another (curl prints the answers without newlines)."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while at < len(text.strip()):
        value, at = decoder.raw_decode(text, at)
        values.append(value)
        while at < len(text) and text[at].isspace():
            at += 1
    return values


def test_curl_examples(signed_with: tuple[SignerProcess, Any]) -> None:
    """The curl block signs a 300 s token with a jti, then names the active key that signed it."""
    signer, key = signed_with
    (block,) = blocks("sh", "curl -s --unix-socket")
    script = block.replace(DOCUMENTED_SOCKET, str(signer.socket_path))
    token, active = json_values(run(["bash", "-euc", script]))
    claims = verified(token["token"], key)
    assert (claims["sub"], claims["exp"] - claims["iat"], token["exp"]) == ("alice", 300, claims["exp"])
    assert len(claims["jti"]) == 22
    assert token["kid"] == active["kid"] == jwt.get_unverified_header(token["token"])["kid"]


def test_node_example(signed_with: tuple[SignerProcess, Any], tmp_path: Path) -> None:
    """The Node.js block, run by node as written, prints a token of the claims it asked for."""
    signer, key = signed_with
    (block,) = blocks("js", "socketPath")
    script = tmp_path / "sign.cjs"
    script.write_text(block.replace(DOCUMENTED_SOCKET, str(signer.socket_path)))
    claims = verified(run(["node", str(script)]).strip(), key)
    assert (claims["sub"], claims["exp"] - claims["iat"]) == ("alice", 300)


def test_node_example_reports_the_signers_error(signed_with: tuple[SignerProcess, Any], tmp_path: Path) -> None:
    """The Node.js block turns the signer's refusal into its code and message on stderr and a failing exit."""
    signer, _ = signed_with
    (block,) = blocks("js", "socketPath")
    script = tmp_path / "sign.cjs"
    script.write_text(block.replace(DOCUMENTED_SOCKET, str(signer.socket_path)).replace(", 300)", ", 999999)"))
    result = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "bad_ttl: ttl_s: 999999 is over the registry's max_token_lifetime_s (3600)\n"


def test_python_example(signed_with: tuple[SignerProcess, Any], tmp_path: Path) -> None:
    """The Python block, run as written with the package's client, prints a token with a jti."""
    signer, key = signed_with
    (block,) = blocks("python", "SignerClient")
    script = tmp_path / "sign.py"
    script.write_text(block.replace(DOCUMENTED_SOCKET, str(signer.socket_path)))
    claims = verified(run([sys.executable, str(script)], cwd=ROOT).strip(), key)
    assert (claims["sub"], claims["exp"] - claims["iat"], len(claims["jti"])) == ("alice", 300, 22)


def test_command_line_examples(signed_with: tuple[SignerProcess, Any]) -> None:
    """`python -m jwksd.signer_client` prints the active key, then a token it signed, as JSON."""
    signer, key = signed_with
    (block,) = blocks("sh", "python -m jwksd.signer_client")
    outputs = []
    for line in block.splitlines():
        argv = line.replace(DOCUMENTED_SOCKET, str(signer.socket_path)).split(" ", 1)
        assert argv[0] == "python", line
        outputs.append(json.loads(run(["bash", "-euc", f"{sys.executable} {argv[1]}"], cwd=ROOT)))
    active, signed = outputs
    assert set(active) == {"kid", "alg", "active_since", "next"} and signed["kid"] == active["kid"]
    assert jwt.decode(signed["token"], key, algorithms=["ES256"])["sub"] == "alice"
