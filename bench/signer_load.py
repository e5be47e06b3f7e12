"""The signer bench's load, run as its own process (``python -m bench.signer_load MODE ...``) so it has its own core.

Modes, each printing one ``SIGNER_LOAD {json}`` line (tokens, seconds, latency percentiles, errors):

- ``socket``: N callers, each on its own keep-alive connection to the signer's Unix socket, posting
  ``/v1/sign`` with a minimal HTTP/1.1 client (so the signer, not the load, is measured): back to
  back, or ``--rate`` tokens/s in all on a fixed schedule;
- ``client``: the same through :class:`jwksd.signer_client.SignerClient` (what a Python app pays);
- ``inprocess``: the same token (header, claims, iat, exp) signed in this process with ``cryptography``;
- ``kms``: KMS ``Sign`` called directly (aiobotocore, N at once) on the signer's KMS key: moto's own limit.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

CLAIMS = {"sub": "bench", "aud": "https://api.example.com", "scope": "read write"}
BODY = json.dumps({"claims": CLAIMS, "ttl_s": 300}, separators=(",", ":")).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def summary(latencies_ns: list[int], seconds: float, errors: int, statuses: dict[str, int]) -> dict[str, Any]:
    """Tokens per second and latency percentiles (ms) of one run."""
    ordered = sorted(latencies_ns)
    cut = statistics.quantiles(ordered, n=1000, method="inclusive") if len(ordered) > 1 else ordered * 999
    return {"tokens": len(ordered), "seconds": seconds, "tokens_s": len(ordered) / seconds, "errors": errors,
            "statuses": statuses, "p50_ms": cut[499] / 1e6 if cut else 0.0, "p99_ms": cut[989] / 1e6 if cut else 0.0,
            "max_ms": ordered[-1] / 1e6 if ordered else 0.0}


async def callers(call: Callable[[int], Awaitable[str]], connections: int, duration_s: float,
                  rate: float | None = None) -> dict[str, Any]:
    """``connections`` loops calling ``call(i)`` for ``duration_s``: its latencies and outcomes.

    Back to back without ``rate``; with it, the loops together start ``rate`` calls a second on a fixed
    schedule, and each latency counts from the scheduled start, so a stall is not hidden by the
    calls it delayed (coordinated omission).
    """
    latencies: list[int] = []
    statuses: dict[str, int] = {}
    stop = time.monotonic() + duration_s
    origin = time.perf_counter_ns()

    async def loop(i: int) -> None:
        sent = 0
        while time.monotonic() < stop:
            started = time.perf_counter_ns()
            if rate is not None:
                started = origin + int((sent * connections + i) * 1e9 / rate)
                sent += 1
                if (ahead := started - time.perf_counter_ns()) > 0:
                    await asyncio.sleep(ahead / 1e9)
            status = await call(i)
            if status == "200":
                latencies.append(time.perf_counter_ns() - started)
            statuses[status] = statuses.get(status, 0) + 1

    started = time.monotonic()
    await asyncio.gather(*(loop(i) for i in range(connections)))
    elapsed = time.monotonic() - started
    return summary(latencies, elapsed, sum(n for status, n in statuses.items() if status != "200"), statuses)


async def over_socket(path: str, connections: int, duration_s: float, rate: float | None = None) -> dict[str, Any]:
    """Raw HTTP/1.1 keep-alive requests on ``connections`` Unix socket connections."""
    streams = [await asyncio.open_unix_connection(path) for _ in range(connections)]
    request = (b"POST /v1/sign HTTP/1.1\r\nHost: signer\r\nContent-Type: application/json\r\n"
               b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)

    async def call(i: int) -> str:
        reader, writer = streams[i]
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        body = await reader.readexactly(length)
        status = head[9:12].decode()
        if status == "200" and not json.loads(body)["token"]:
            return "empty"
        return status

    try:
        return await callers(call, connections, duration_s, rate)
    finally:
        for _, writer in streams:
            writer.close()


async def through_client(path: str, connections: int, duration_s: float) -> dict[str, Any]:
    """SignerClient.sign from ``connections`` tasks sharing one client (its pool keeps the connections)."""
    from jwksd.errors import SignerError
    from jwksd.signer_client import SignerClient

    async with SignerClient(path) as client:
        async def call(_: int) -> str:
            try:
                await client.sign(CLAIMS, ttl_s=300)
            except SignerError as exc:
                return exc.code
            return "200"

        return await callers(call, connections, duration_s)


def in_process(alg: str, duration_s: float) -> dict[str, Any]:
    """The same token made here, one after another: header and claims encoded, signed with ``cryptography``."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    key: Any = ec.generate_private_key(ec.SECP256R1()) if alg == "ES256" else rsa.generate_private_key(65537, 2048)
    header = _b64(json.dumps({"alg": alg, "kid": "k" * 43, "typ": "JWT"}, separators=(",", ":")).encode())

    def token() -> str:
        now = int(time.time())
        claims = _b64(json.dumps({**CLAIMS, "iat": now, "exp": now + 300}, separators=(",", ":")).encode())
        signing_input = f"{header}.{claims}".encode()
        if alg == "ES256":
            r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        else:
            signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input.decode()}.{_b64(signature)}"

    latencies: list[int] = []
    started = time.monotonic()
    while time.monotonic() - started < duration_s:
        at = time.perf_counter_ns()
        token()
        latencies.append(time.perf_counter_ns() - at)
    return summary(latencies, time.monotonic() - started, 0, {"200": len(latencies)})


async def kms_direct(endpoint: str, key_id: str, connections: int, duration_s: float) -> dict[str, Any]:
    """KMS Sign (ECDSA_SHA_256, RAW) called directly, ``connections`` at a time, on the endpoint the signer uses."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    config = AioConfig(max_pool_connections=connections, retries={"max_attempts": 1})
    async with get_session().create_client("kms", endpoint_url=endpoint, config=config) as kms:
        async def call(_: int) -> str:
            try:
                await kms.sign(KeyId=key_id, Message=b"x" * 200, MessageType="RAW",
                               SigningAlgorithm="ECDSA_SHA_256")
            except Exception as exc:  # a failed call is counted, not fatal, in a load run
                return type(exc).__name__
            return "200"

        return await callers(call, connections, duration_s)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.signer_load", description=__doc__)
    parser.add_argument("mode", choices=["socket", "client", "inprocess", "kms"])
    parser.add_argument("--socket", help="the signer's socket (socket, client)")
    parser.add_argument("--alg", default="ES256", choices=["ES256", "RS256"], help="inprocess")
    parser.add_argument("--endpoint", help="kms: the KMS endpoint")
    parser.add_argument("--key-id", help="kms: the key")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration-s", type=float, default=2.0)
    parser.add_argument("--rate", type=float, help="socket: tokens/s offered in all, on a fixed schedule "
                                                   "(default: back to back)")
    args = parser.parse_args()
    if args.mode == "inprocess":
        result = in_process(args.alg, args.duration_s)
    elif args.mode == "kms":
        result = asyncio.run(kms_direct(args.endpoint, args.key_id, args.connections, args.duration_s))
    elif args.mode == "socket":
        result = asyncio.run(over_socket(args.socket, args.connections, args.duration_s, args.rate))
    else:
        result = asyncio.run(through_client(args.socket, args.connections, args.duration_s))
    print("SIGNER_LOAD " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
