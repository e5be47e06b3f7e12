"""jwksd.signer_client against a real `jwksd signer` process: tokens, the active key, the signer's errors as
SignerError with its code and message, and what the client says when the signer does not answer."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web

from jwksd.config import RotationConfig
from jwksd.errors import SignerError
from jwksd.rotation.kms import KmsBackend
from jwksd.rotation.rotate import rotate
from jwksd.signer_client import ActiveKey, SignedToken, SignerClient
from tests.conftest import free_port
from tests.rotation_helpers import T0, keyring, rotation_config
from tests.signer_helpers import SignerProcess, rotation_table

TOKEN = "b" * 40


@pytest.fixture
def tcp_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def signer(registry: RotationConfig, moto_endpoint: str, tmp_path: Path, tcp_url: str) -> Iterator[SignerProcess]:
    """`jwksd signer` on the registry, its socket and a loopback TCP port with a bearer token."""
    token_file = tmp_path / "signer.token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    process = SignerProcess.start(tmp_path, rotation_table(registry, moto_endpoint),
                                  signer={"tcp_listen": tcp_url.removeprefix("http://"), "token_file": str(token_file)})
    yield process
    process.kill()


async def public_key(config: RotationConfig, kid: str) -> Any:
    async with keyring(config, create_table=False) as ring:
        record = next(r for r in await ring.registry.records() if r.kid == kid)
        assert isinstance(ring.backend, KmsBackend)
        return jwt.PyJWK(await ring.backend.public_jwk(record)).key


async def test_signs_and_names_the_active_key(signer: SignerProcess, registry: RotationConfig) -> None:
    """sign() returns a token that verifies with the active key, with ttl_s and jti honoured; active() names it."""
    async with SignerClient(signer.socket_path) as client:
        active = await client.active()
        signed = await client.sign({"sub": "alice", "aud": "api"}, ttl_s=120, jti=True)
        plain = await client.sign({"sub": "bob", "aud": "api"})
    assert isinstance(active, ActiveKey) and isinstance(signed, SignedToken)
    assert (signed.kid, signed.alg, plain.kid) == (active.kid, "ES256", active.kid)
    assert active.next is not None and active.next.kid != active.kid and active.next.promotable_from > 0
    claims = jwt.decode(signed.token, await public_key(registry, active.kid), algorithms=["ES256"], audience="api")
    assert (claims["sub"], claims["exp"], claims["exp"] - claims["iat"]) == ("alice", signed.exp, 120)
    assert len(claims["jti"]) == 22
    unverified = jwt.decode(plain.token, options={"verify_signature": False})
    assert unverified["exp"] - unverified["iat"] == 3600 and "jti" not in unverified


async def test_the_signers_refusals_are_signer_errors(signer: SignerProcess) -> None:
    """A 400 is a SignerError with the signer's own code and message, status 400, not marked unavailable."""
    async with SignerClient(signer.socket_path) as client:
        with pytest.raises(SignerError) as caught:
            await client.sign({"sub": "alice", "exp": 1})
        with pytest.raises(SignerError) as over:
            await client.sign({"sub": "alice"}, ttl_s=3601)
    error = caught.value
    assert (error.code, error.message, error.status, error.unavailable) == (
        "reserved_claim", "claims.exp: set by the signer (iat and exp from ttl_s; no nbf); leave it out", 400, False)
    assert (over.value.code, over.value.message) == ("bad_ttl", "ttl_s: 3601 is over the registry's "
                                                                "max_token_lifetime_s (3600)")


async def test_tcp_with_the_bearer_token(signer: SignerProcess, tcp_url: str) -> None:
    """Over loopback TCP the token is sent and a token comes back; a wrong one is the signer's 401, as SignerError."""
    async with SignerClient(url=tcp_url, token=TOKEN) as client:
        assert (await client.sign({"sub": "alice"})).kid == (await client.active()).kid
    async with SignerClient(url=tcp_url, token="wrong" * 8) as client:
        with pytest.raises(SignerError) as caught:
            await client.sign({"sub": "alice"})
    assert (caught.value.status, caught.value.unavailable) == (401, False)
    assert caught.value.code == "unauthorized"


async def test_no_active_key_is_unavailable_with_retry_after(moto_endpoint: str, tmp_path: Path) -> None:
    """A signer without an active key (only a pending one) answers 503: unavailable, with its Retry-After."""
    config = rotation_config(moto_endpoint)
    async with keyring(config) as ring:
        await rotate(ring, T0)  # v1 pending, not yet promotable
    signer = SignerProcess.start(tmp_path, rotation_table(config, moto_endpoint), signer={"refresh_s": 2.0},
                                 wait_ready=False)
    try:
        async with SignerClient(signer.socket_path) as client:
            error = await wait_for_error(client)
    finally:
        signer.kill()
    assert (error.code, error.status, error.unavailable, error.retry_after_s) == ("no_active_key", 503, True, 2.0)


async def wait_for_error(client: SignerClient) -> SignerError:
    """The first SignerError after the signer's first registry read (``unreachable``, ``not_ready`` until then)."""
    async with asyncio.timeout(20):
        while True:
            try:
                await client.active()
            except SignerError as exc:
                if exc.code not in ("unreachable", "not_ready"):
                    return exc
            await asyncio.sleep(0.05)


async def test_no_signer_at_the_socket_is_unreachable(tmp_path: Path) -> None:
    """A socket path where nothing listens: SignerError unreachable, naming the path and the OS error."""
    missing = tmp_path / "signer.sock"
    async with SignerClient(missing) as client:
        with pytest.raises(SignerError) as caught:
            await client.sign({"sub": "alice"})
    assert (caught.value.code, caught.value.unavailable, caught.value.status) == ("unreachable", True, 0)
    assert caught.value.message == (f"cannot connect to the signer at {missing}: [Errno 2] No such file or "
                                    "directory")


async def test_a_silent_signer_times_out(tmp_path: Path) -> None:
    """A socket that accepts and never answers: SignerError timeout after timeout_s, not a hang."""
    path = tmp_path / "silent.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen()
        async with SignerClient(path, timeout_s=0.3, connect_timeout_s=0.2) as client:
            with pytest.raises(SignerError) as caught:
                await client.active()
    assert (caught.value.code, caught.value.message, caught.value.unavailable) == (
        "timeout", f"the signer at {path} did not answer within 0.3 s", True)


@pytest.mark.parametrize(("body", "status", "message"), [
    (b"<html>hi</html>", 200, "not a jwksd signer answer: HTTP 200 with a body that is not JSON"),
    (b"[1]", 200, "not a jwksd signer answer: HTTP 200 with a JSON list, expected an object"),
    (b'{"kid": "k", "alg": "ES256", "active_since": "yesterday", "next": null}', 200,
     "not a jwksd signer answer: active_since is str, expected int"),
    (b'{"message": "no"}', 502, "not a jwksd signer answer: HTTP 502 without the signer's error object"),
])
async def test_an_answer_that_is_not_the_signers_is_bad_response(tmp_path: Path, body: bytes, status: int,
                                                                 message: str) -> None:
    """Something else on the socket (a proxy's error page, another service): SignerError bad_response."""
    async def answer(_: web.Request) -> web.Response:
        return web.Response(body=body, status=status)

    app = web.Application()
    app.router.add_get("/v1/active", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.UnixSite(runner, str(tmp_path / "other.sock")).start()
    try:
        async with SignerClient(tmp_path / "other.sock") as client:
            with pytest.raises(SignerError) as caught:
                await client.active()
    finally:
        await runner.cleanup()
    assert (caught.value.code, caught.value.message) == ("bad_response", message)


async def test_an_answer_arriving_in_pieces_is_read_whole(tmp_path: Path) -> None:
    """A large answer that arrives in several writes (big claims) is read to its end, not cut at the first."""
    kid = "k" * 30000
    body = json.dumps({"kid": kid, "alg": "ES256", "active_since": 1, "next": None}).encode()

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        await response.prepare(request)
        for start in range(0, len(body), 4096):
            await response.write(body[start:start + 4096])
            await asyncio.sleep(0.01)  # each piece its own read on the client's side
        return response

    app = web.Application()
    app.router.add_get("/v1/active", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.UnixSite(runner, str(tmp_path / "pieces.sock")).start()
    try:
        async with SignerClient(tmp_path / "pieces.sock") as client:
            assert (await client.active()).kid == kid
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("arguments", "message"), [
    ({"url": "http://10.0.0.5:8490", "token": TOKEN}, "SignerClient: url 'http://10.0.0.5:8490': expected "
     "http://127.0.0.1:PORT (the signer listens on loopback only, and the bearer token must not leave the host)"),
    ({"url": "https://127.0.0.1:8490", "token": TOKEN}, "SignerClient: url 'https://127.0.0.1:8490': expected "
     "http://127.0.0.1:PORT (the signer listens on loopback only, and the bearer token must not leave the host)"),
    ({"url": "http://127.0.0.1:8490"}, "SignerClient: url needs token (the signer's signer.token_file)"),
    ({"token": TOKEN}, "SignerClient: token is sent over TCP only (url=...); the socket checks the caller's uid"),
    ({"socket": "/s", "url": "http://127.0.0.1:1", "token": TOKEN}, "SignerClient: give socket or url, not both"),
    ({"timeout_s": 1.0, "connect_timeout_s": 2.0}, "SignerClient: expected 0 < connect_timeout_s (2.0) <= timeout_s "
     "(1.0)"),
])
def test_arguments_that_cannot_work_are_refused(arguments: dict[str, Any], message: str) -> None:
    """A client that could only fail, or leak its token beyond the host, is refused when made, with the reason."""
    with pytest.raises(ValueError) as caught:
        SignerClient(**arguments)
    assert str(caught.value) == message
