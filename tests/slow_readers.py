"""Clients that pipeline GETs and never read the answers, and a normal client timing its outages.

Used by tests/test_hostile_clients.py and ``python -m bench.slow_readers``. The attack keeps
reconnecting from ``threads`` threads, holding every socket (unread) until it stops.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.daemon_process import JWKS, http_get

PIPELINE = f"GET {JWKS} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: identity\r\n\r\n".encode() * 2000


def big_key_set(prefix: str, count: int = 100) -> str:
    """``count`` Ed25519 keys (~12 kB served): a burst of pipelined GETs overfills any socket buffer."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from tests.keys import ed25519_jwk, jwk_set

    return jwk_set(*(ed25519_jwk(ed25519.Ed25519PrivateKey.generate(), f"{prefix}-{i}") for i in range(count)))


def pipeline_and_never_read(port: int) -> socket.socket | None:
    """Connect and push as many pipelined GETs as the socket takes without blocking; None if that failed."""
    sock = socket.socket()
    try:
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        sock.send(PIPELINE)
    except OSError:
        sock.close()
        return None
    return sock


@contextmanager
def attack(port: int, threads: int = 2) -> Iterator[list[socket.socket]]:
    """Never-reading pipeliners against ``port`` until the block ends; yields the sockets made so far."""
    sockets: list[socket.socket] = []
    done = threading.Event()

    def run() -> None:
        while not done.is_set():
            sock = pipeline_and_never_read(port)
            if sock is not None:
                sockets.append(sock)

    workers = [threading.Thread(target=run, name=f"attacker-{i}") for i in range(threads)]
    for worker in workers:
        worker.start()
    try:
        yield sockets
    finally:
        done.set()
        for worker in workers:
            worker.join(timeout=60)
        for sock in sockets:
            sock.close()


@dataclass
class Outages:
    """What a normal client saw: the longest time without a 200, and every status (or error) it got."""

    longest_s: float = 0.0
    requests: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    bodies_seen: set[bytes] = field(default_factory=set)


def poll(url: str, keep_going: Callable[[Outages], bool], *, timeout_s: float, marker: bytes = b"") -> Outages:
    """GET ``url`` one request after another while ``keep_going``; a request fails after ``timeout_s``.

    ``marker``: when a 200's body contains it, it is added to ``bodies_seen``.
    """
    seen = Outages()
    last_ok = time.monotonic()
    while keep_going(seen):
        try:
            status, _, body = http_get(url, timeout=timeout_s)
            outcome = str(status)
        except OSError as exc:  # refused, reset, timed out: the outage being measured
            outcome, body = type(exc).__name__, b""
        now = time.monotonic()
        seen.requests += 1
        seen.statuses[outcome] = seen.statuses.get(outcome, 0) + 1
        seen.longest_s = max(seen.longest_s, now - last_ok)  # for a 200: since the previous one, this one included
        if outcome == "200":
            last_ok = now
            if marker and marker in body:
                seen.bodies_seen.add(marker)
    return seen
