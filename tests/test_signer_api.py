"""The signer's HTTP API in process, over its real Unix socket, on a moto registry: tokens, refusals, 503s."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from moto.server import ThreadedMotoServer
from structlog.testing import capture_logs

from jwksd.config import Config, Listen, RotationConfig, SignerConfig
from jwksd.rotation.kms import KmsBackend
from jwksd.rotation.policy import single
from jwksd.rotation.rotate import rotate
from jwksd.signer import api
from jwksd.signer.app import Signer
from jwksd.signer.run import serve_signer
from tests.conftest import endpoint_of, free_port
from tests.rotation_helpers import T0, keyring, rotation_config
from tests.signer_helpers import active_registry

TOKEN = "t" * 40


@dataclass
class Running:
    """A signer serving in this process, and an HTTP session on its socket."""

    signer: Signer
    session: aiohttp.ClientSession
    base: str = "http://signer"

    async def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        async with self.session.request(method, self.base + path, data=data, headers=headers) as response:
            return response.status, dict(response.headers), await response.json(content_type=None)

    async def ready(self) -> None:
        async with asyncio.timeout(20):
            while (await self.call("GET", "/readyz"))[0] != 200:
                await asyncio.sleep(0.05)


@asynccontextmanager
async def serving(rotation: RotationConfig, tmp_path: Path, **settings: Any) -> AsyncIterator[Running]:
    """``jwksd signer`` on ``rotation``'s registry, in this task's loop, until the block ends."""
    signer_config = SignerConfig(**{"socket": tmp_path / "signer.sock", "metrics_listen": None, "refresh_s": 0.2,
                                    **settings})
    stop, parts = asyncio.Event(), []
    task = asyncio.create_task(serve_signer(Config(sources=(), rotation=rotation, signer=signer_config), stop=stop,
                                            started=parts.append))
    try:
        async with asyncio.timeout(20):
            while not parts:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        connector = aiohttp.UnixConnector(path=str(signer_config.socket))
        async with aiohttp.ClientSession(connector=connector) as session:
            yield Running(parts[0], session)
    finally:
        stop.set()
        await task


def tokens(signer: Signer, outcome: str) -> float:
    """jwksd_signer_tokens_total of ``outcome``, every kid together."""
    return sum(sample.value for family in signer.metrics.registry.collect() for sample in family.samples
               if sample.name == "jwksd_signer_tokens_total" and sample.labels["outcome"] == outcome)


async def public_jwk(config: RotationConfig, kid: str) -> dict[str, Any]:
    async with keyring(config, create_table=False) as ring:
        record = next(r for r in await ring.registry.records() if r.kid == kid)
        assert isinstance(ring.backend, KmsBackend)
        return await ring.backend.public_jwk(record)


async def test_signs_with_the_active_key(registry: RotationConfig, tmp_path: Path) -> None:
    """A token carries the active kid, iat/exp from ttl_s, a jti when asked, and verifies; one audit line names it."""
    async with keyring(registry, create_table=False) as ring:
        records = await ring.registry.records()
    active, pending = single(records, "active"), single(records, "pending")
    assert active is not None and pending is not None
    async with serving(registry, tmp_path) as running:
        await running.ready()
        with capture_logs() as logs:
            status, _, answer = await running.call("POST", "/v1/sign", {"claims": {"sub": "svc", "aud": "api"},
                                                                        "ttl_s": 60, "jti": True})
        assert status == 200 and set(answer) == {"token", "kid", "alg", "exp"}
        key = jwt.PyJWK(await public_jwk(registry, active.kid))
        claims = jwt.decode(answer["token"], key, algorithms=["ES256"], audience="api")
        assert jwt.get_unverified_header(answer["token"]) == {"alg": "ES256", "kid": active.kid, "typ": "JWT"}
        assert (answer["kid"], answer["alg"], answer["exp"]) == (active.kid, "ES256", claims["exp"])
        assert claims["exp"] - claims["iat"] == 60 and len(claims["jti"]) == 22 and claims["sub"] == "svc"
        (line,) = [entry for entry in logs if entry["event"] == "token_signed"]
        assert line == {"event": "token_signed", "log_level": "info", "kid": active.kid, "sub": "svc",
                        "jti": claims["jti"], "exp": claims["exp"], "uid": line["uid"], "gid": line["gid"],
                        "pid": line["pid"]}
        assert (line["pid"], line["uid"]) == (os.getpid(), os.getuid())
        status, _, answer = await running.call("POST", "/v1/sign", {"claims": {}})
        default = jwt.decode(answer["token"], options={"verify_signature": False})
        assert status == 200 and default["exp"] - default["iat"] == 3600 and "jti" not in default
        assert await running.call("GET", "/v1/active") == (200, *(await running.call("GET", "/v1/active"))[1:2], {
            "kid": active.kid, "alg": "ES256", "active_since": T0 + 1500,
            "next": {"kid": pending.kid, "promotable_from": T0 + 3000}})
        assert (await running.call("GET", "/healthz"))[::2] == (200, {"status": "ok"})
        assert (await running.call("GET", "/readyz"))[::2] == (200, {"status": "ready", "kid": active.kid,
                                                                     "alg": "ES256"})


BAD_REQUESTS = [
    ({"claims": {"sub": "a", "exp": 1}}, "reserved_claim",
     "claims.exp: set by the signer (iat and exp from ttl_s; no nbf); leave it out"),
    ({"claims": {"nbf": 1}}, "reserved_claim", "claims.nbf: set by the signer (iat and exp from ttl_s; no nbf); "
                                               "leave it out"),
    ({"claims": {}, "ttl_s": 3601}, "bad_ttl", "ttl_s: 3601 is over the registry's max_token_lifetime_s (3600)"),
    ({"claims": {}, "ttl_s": 0}, "bad_ttl", "ttl_s: expected a whole number of seconds >= 1, got 0"),
    ({"claims": {}, "ttl_s": True}, "bad_ttl", "ttl_s: expected a whole number of seconds >= 1, got true"),
    ([{"claims": {}}], "not_an_object", "request body: expected a JSON object, got an array"),
    ("claims", "not_an_object", "request body: expected a JSON object, got a string"),
    (b'{"claims": ', "bad_json", "request body: not valid JSON (Expecting value at line 1 column 12)"),
    (b'{"claims": {"n": NaN}}', "bad_json", "request body: NaN is not JSON"),
    (b'{"claims": {"sub": "a", "sub": "b"}}', "bad_json", 'request body: the member "sub" appears twice in one object'),
    (b"\xff", "bad_json", "request body: not UTF-8 (byte 0)"),
    (b"[" * 5000 + b"]" * 5000, "bad_json", "request body: nested too deeply"),
    ({"claims": {}, "tll_s": 60}, "unknown_member", 'request body: unknown member "tll_s": expected claims, ttl_s, '
                                                    "jti"),
    ({"ttl_s": 60}, "bad_claims", "claims: expected a JSON object, got none"),
    ({"claims": ["sub"]}, "bad_claims", "claims: expected a JSON object, got an array"),
    ({"claims": {}, "jti": "yes"}, "bad_jti", "jti: expected true or false, got a string"),
    ({"claims": {"jti": "mine"}, "jti": True}, "reserved_claim",
     'claims.jti: "jti": true asks the signer for one; leave it out of the claims'),
    (b"x" * 16385, "body_too_large", "request body: 16385 bytes; at most 16384 (signer.max_body_bytes)"),
]


async def test_each_bad_request_gets_its_exact_400(registry: RotationConfig, tmp_path: Path) -> None:
    """Each malformed request is a 400 naming what was wrong, counted, and the next good one is signed."""
    async with serving(registry, tmp_path) as running:
        await running.ready()
        for body, code, message in BAD_REQUESTS:
            raw = body if isinstance(body, bytes) else None
            answer = await running.call("POST", "/v1/sign", None if raw else body, raw=raw)
            assert answer[::2] == (400, {"error": {"code": code, "message": message}}), (body, answer)

        async def chunked() -> AsyncIterator[bytes]:
            for _ in range(20):
                yield b" " * 1000

        async with running.session.post(running.base + "/v1/sign", data=chunked()) as response:
            assert (response.status, await response.json()) == (400, {"error": {
                "code": "body_too_large", "message": "request body: over 16384 bytes (signer.max_body_bytes)"}})
        status, _, answer = await running.call("POST", "/v1/sign", {"claims": {"pad": "x" * 5000}})
        assert (status, answer["error"]["code"]) == (400, "claims_too_large")
        assert re.fullmatch(r"the JWS signing input is \d+ bytes: KMS signs at most 4096", answer["error"]["message"])
        assert tokens(running.signer, "bad_request") == len(BAD_REQUESTS) + 2
        assert (await running.call("POST", "/v1/sign", {"claims": {"sub": "after"}}))[0] == 200
        assert (await running.call("GET", "/v1/nope"))[::2] == (404, {"error": {
            "code": "not_found", "message": "GET /v1/nope: Not Found"}})
        assert (await running.call("GET", "/v1/sign"))[::2] == (405, {"error": {
            "code": "method_not_allowed", "message": "GET /v1/sign: Method Not Allowed"}})


async def test_no_active_key_is_503_with_retry_after(moto_endpoint: str, tmp_path: Path) -> None:
    """Before the first promotion the signer answers 503 with Retry-After, and is not ready."""
    config = rotation_config(moto_endpoint)
    async with keyring(config) as ring:
        await rotate(ring, T0)  # v1 pending, not yet promotable
    async with serving(config, tmp_path, refresh_s=2.0) as running:
        async with asyncio.timeout(20):
            while running.signer.view.confirmed is None:
                await asyncio.sleep(0.02)
        message = f"{config.table} has no active key yet"
        status, headers, answer = await running.call("POST", "/v1/sign", {"claims": {}})
        assert (status, headers["Retry-After"], answer) == (503, "2", {"error": {"code": "no_active_key",
                                                                                 "message": message}})
        assert (await running.call("GET", "/v1/active"))[::2] == (503, {"error": {"code": "no_active_key",
                                                                                  "message": message}})
        assert (await running.call("GET", "/readyz"))[::2] == (503, {"status": "not_ready", "code": "no_active_key",
                                                                     "message": message})
        assert tokens(running.signer, "unavailable") == 1


async def test_tcp_needs_the_bearer_token(registry: RotationConfig, tmp_path: Path) -> None:
    """Over loopback TCP, /v1/ without the bearer token or with a wrong one is 401; with it, a token."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    port = free_port()
    async with serving(registry, tmp_path, tcp_listen=Listen("127.0.0.1", port), token_file=token_file) as running:
        await running.ready()
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as tcp:
            for headers in ({}, {"Authorization": "Bearer " + "u" * 40}, {"Authorization": f"Basic {TOKEN}"},
                            {"Authorization": "Bearer " + TOKEN[:-1]}):
                async with tcp.post(url + "/v1/sign", json={"claims": {}}, headers=headers) as response:
                    assert (response.status, response.headers["WWW-Authenticate"], await response.json()) == (
                        401, 'Bearer realm="jwksd-signer"', {"error": {"code": "unauthorized", "message": (
                            "expected the header Authorization: Bearer <signer.token_file>")}})
            async with tcp.get(url + "/readyz") as response:
                assert response.status == 200  # probes need no token
            async with tcp.post(url + "/v1/sign", json={"claims": {"sub": "tcp"}},
                                headers={"Authorization": f"Bearer {TOKEN}"}) as response:
                assert response.status == 200 and (await response.json())["kid"]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # a token that is not UTF-8: 401, not 500
        writer.write(b"POST /v1/sign HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe" + b"t" * 38
                     + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        async with asyncio.timeout(20):
            assert (await reader.readline()).startswith(b"HTTP/1.1 401 ")
        writer.close()
        assert tokens(running.signer, "unauthorized") == 5
        assert (await running.call("POST", "/v1/sign", {"claims": {}}))[0] == 200  # the socket needs none


async def test_unreachable_registry_stops_signing_after_max_view_age(own_moto: ThreadedMotoServer,
                                                                     tmp_path: Path) -> None:
    """A signer that cannot read the registry for max_view_age_s stops signing (it could miss a revoke)."""
    endpoint = endpoint_of(own_moto)
    config = replace(rotation_config(endpoint), connect_timeout_s=0.5, read_timeout_s=0.5)
    async with keyring(config, publish=True) as ring:
        await active_registry(ring, f"{config.private_secret_prefix}/public")
    async with serving(config, tmp_path, max_view_age_s=1.0) as running:
        await running.ready()
        own_moto.stop()
        async with asyncio.timeout(20):
            while (answer := await running.call("POST", "/v1/sign", {"claims": {}}))[0] != 503 or \
                    answer[2]["error"]["code"] == "signing_failed":  # KMS is down too, and found so first
                await asyncio.sleep(0.1)
        status, _, body = answer
        assert (status, body["error"]["code"]) == (503, "registry_unreachable")
        assert body["error"]["message"].startswith("the registry was last read ")
        failed = running.signer.metrics.view_reads.labels("failed")
        async with asyncio.timeout(20):
            while running.signer.view.error is None:  # the first failure: logged
                await asyncio.sleep(0.1)
        with capture_logs() as logs:
            async with asyncio.timeout(20):
                start = failed._value.get()
                while failed._value.get() < start + 2:
                    await asyncio.sleep(0.1)
        assert running.signer.view.error is not None
        assert running.signer.view.error.startswith("network: GetItem: ")
        assert [e["event"] for e in logs if e["event"].startswith("registry_read")] == []  # said once, above
        assert tokens(running.signer, "unavailable") >= 1


async def test_a_policy_the_local_config_disagrees_with_stops_signing(registry: RotationConfig, tmp_path: Path) -> None:
    """A registry policy changed to disagree with a value the signer's file sets: 503 naming both values."""
    mine = replace(registry, explicit=frozenset({"max_token_lifetime_s"}))
    async with serving(mine, tmp_path) as running:
        await running.ready()
        async with keyring(registry, create_table=False) as ring:
            head = await ring.registry.head()
            assert head is not None
            await ring.registry.set_policy(replace(head.policy, max_token_lifetime_s=600), head.revision)
        async with asyncio.timeout(20):
            while (answer := await running.call("POST", "/v1/sign", {"claims": {}}))[0] == 200:
                await asyncio.sleep(0.05)
        assert answer[::2] == (503, {"error": {"code": "policy_mismatch", "message": (
            f"rotation.max_token_lifetime_s = 3600 in the environment, but registry {registry.table} holds 600: "
            "remove it from the file to follow the registry, or change the registry's policy with `jwksd keys "
            "policy --apply`")}})


async def test_a_stalled_body_is_refused_after_the_body_timeout(registry: RotationConfig, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller that stops sending its chunked body gets a 400 body_timeout instead of holding the request open."""
    monkeypatch.setattr(api, "BODY_TIMEOUT_S", 0.3)
    async with serving(registry, tmp_path) as running:
        await running.ready()
        release = asyncio.Event()

        async def stalled() -> AsyncIterator[bytes]:
            yield b'{"claims": '
            await release.wait()

        async with asyncio.timeout(20), running.session.post(running.base + "/v1/sign", data=stalled()) as response:
            assert (response.status, await response.json()) == (400, {"error": {
                "code": "body_timeout", "message": "request body: not received within 0.3s (11 bytes arrived)"}})
        release.set()
