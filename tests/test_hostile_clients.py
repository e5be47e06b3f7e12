"""Hostile HTTP clients against a real ``jwksd serve`` process, over raw sockets.

Slow and idle clients are cut off at ``keepalive_timeout_s`` (1 s here); malformed, oversized,
smuggling and path-trick requests each get a 4xx, never a 5xx and never a key set; and after
every one of them a well-behaved client still gets the same set. Clients that pipeline requests
and never read the answers are cut at ``write_timeout_s``, and hundreds of them against a daemon
limited to 128 open files stop neither a normal client nor a refresh (jwksd/http/server.py).
"""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Secrets
from tests.daemon_process import JWKS, Daemon, sm_sections, wait_until
from tests.keys import jwk_set, rsa_jwk, rsa_key
from tests.slow_readers import Outages, attack, big_key_set, pipeline_and_never_read, poll

KEEPALIVE_S = 1.0
CUT_OFF_S = 10.0  # bound on waiting for the server to close a connection (the timeout is 1 s)
HOST = "Host: 127.0.0.1\r\n"
CLOSE = "Connection: close\r\n\r\n"


@pytest.fixture(scope="module")
def daemon(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, bytes]]:
    """One daemon for the module, with a 1 s keepalive, and the body it serves."""
    secrets = Secrets(moto_endpoint)
    secret = secrets.create(jwk_set(rsa_jwk(rsa_key(0), "hostile-0")))
    sections = {**sm_sections(secret), "server": {"keepalive_timeout_s": KEEPALIVE_S}}
    with Daemon.from_toml(tmp_path_factory.mktemp("hostile"), sections, endpoint=moto_endpoint) as running:
        status, _, body = running.get()
        assert status == 200
        yield running, body
        assert running.metric("jwksd_requests_total", status="500") == 0
        assert "Traceback" not in running.log_path.read_text(), "a hostile request was logged as a server error"


def connect(daemon: Daemon) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=CUT_OFF_S)
    sock.settimeout(CUT_OFF_S)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (bounded by the socket timeout)."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def exchange(daemon: Daemon, raw: bytes) -> tuple[int, bytes]:
    """Send ``raw``, read the reply until the server closes; the first status code and the whole reply."""
    with connect(daemon) as sock:
        sock.sendall(raw)
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1."), reply[:200]
    return int(reply.split(b" ", 2)[1]), reply


def assert_still_serving(daemon: Daemon, body: bytes) -> None:
    status, _, served = daemon.get()
    assert (status, served) == (200, body)


def test_silent_client_cut_off(daemon: tuple[Daemon, bytes]) -> None:
    """A client that connects and sends nothing is disconnected without a reply."""
    running, body = daemon
    with connect(running) as sock:
        assert read_until_closed(sock) == b""
    assert_still_serving(running, body)


def test_half_request_line_cut_off(daemon: tuple[Daemon, bytes]) -> None:
    """A client that sends half a request line and stops is disconnected."""
    running, body = daemon
    with connect(running) as sock:
        sock.sendall(b"GET /.well-known/jw")
        assert read_until_closed(sock) == b""
    assert_still_serving(running, body)


def test_one_header_byte_per_second_cut_off(daemon: tuple[Daemon, bytes]) -> None:
    """A client trickling one header byte a second is cut off at keepalive_timeout, not kept alive by each byte."""
    running, body = daemon
    request = f"GET {JWKS} HTTP/1.1\r\n{HOST}X-Slow: {'a' * 60}\r\n\r\n".encode()
    sent = 0
    with connect(running) as sock:
        sock.settimeout(1.5)
        try:
            for byte in request:
                sock.sendall(bytes([byte]))
                sent += 1
                if sock.recv(1) == b"":  # waits up to a second for the server to hang up
                    break
        except TimeoutError:
            pytest.fail("the server answered a request it never fully received")
        except (ConnectionResetError, BrokenPipeError):
            pass
    assert sent < len(request)  # cut off before the request was complete
    assert_still_serving(running, body)


def test_many_idle_connections_do_not_stop_service(daemon: tuple[Daemon, bytes]) -> None:
    """Two hundred idle connections do not stop others being served, and each is closed in turn."""
    running, body = daemon
    idle = [connect(running) for _ in range(200)]
    try:
        for _ in range(20):
            assert_still_serving(running, body)
        for sock in idle:
            assert read_until_closed(sock) == b""
    finally:
        for sock in idle:
            sock.close()


def test_slow_clients_while_others_are_served(daemon: tuple[Daemon, bytes]) -> None:
    """While slow clients hold connections, a steady client sees only 200s with the same body."""
    running, body = daemon
    results: list[int] = []
    stop = threading.Event()

    def steady() -> None:
        while not stop.is_set():
            status, _, served = running.get()
            results.append(status if served == body else -1)

    worker = threading.Thread(target=steady)
    worker.start()
    try:
        slow = [connect(running) for _ in range(20)]
        for sock in slow:
            sock.sendall(b"GET / HTTP/1.1\r\nHost")
        for sock in slow:
            assert read_until_closed(sock) == b""
            sock.close()
    finally:
        stop.set()
        worker.join(timeout=10)
    assert results and set(results) == {200}


LONG = "a" * 5000
REQUESTS = {
    "oversized url": f"GET /{LONG} HTTP/1.1\r\n{HOST}\r\n",
    "oversized url on the jwks path": f"GET {JWKS}?{LONG} HTTP/1.1\r\n{HOST}\r\n",
    "oversized header": f"GET {JWKS} HTTP/1.1\r\n{HOST}X-Big: {LONG}\r\n\r\n",
    "too many headers": f"GET {JWKS} HTTP/1.1\r\n{HOST}" + "".join(f"X-{i}: 1\r\n" for i in range(40)) + "\r\n",
    "body on GET": f"GET {JWKS} HTTP/1.1\r\n{HOST}Content-Length: 5\r\nConnection: close\r\n\r\nhello",
    "chunked body on GET": f"GET {JWKS} HTTP/1.1\r\n{HOST}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                           "5\r\nhello\r\n0\r\n\r\n",
    "body on POST": f"POST {JWKS} HTTP/1.1\r\n{HOST}Content-Length: 5\r\nConnection: close\r\n\r\nhello",
    "content-length with transfer-encoding": f"GET {JWKS} HTTP/1.1\r\n{HOST}Content-Length: 48\r\n"
                                             "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                                             f"GET /health HTTP/1.1\r\n{HOST}\r\n",
    "two content-lengths": f"GET {JWKS} HTTP/1.1\r\n{HOST}Content-Length: 0\r\nContent-Length: 5\r\n\r\nhello",
    "obfuscated transfer-encoding": f"GET {JWKS} HTTP/1.1\r\n{HOST}Transfer-Encoding: xchunked\r\n\r\n",
    "dot-dot path": f"GET /.well-known/../.well-known/jwks.json HTTP/1.1\r\n{HOST}Connection: close\r\n\r\n",
    "encoded dot-dot path": f"GET /.well-known/%2E%2E/.well-known/jwks.json HTTP/1.1\r\n{HOST}{CLOSE}",
    "encoded slash": f"GET /.well-known%2Fjwks.json HTTP/1.1\r\n{HOST}Connection: close\r\n\r\n",
    "trailing slash": f"GET {JWKS}/ HTTP/1.1\r\n{HOST}Connection: close\r\n\r\n",
    "double slash": f"GET /{JWKS} HTTP/1.1\r\n{HOST}Connection: close\r\n\r\n",
    "dot segment": f"GET /.well-known/./jwks.json HTTP/1.1\r\n{HOST}Connection: close\r\n\r\n",
    "unknown method": f"FOO {JWKS} HTTP/1.1\r\n{HOST}Connection: close\r\n\r\n",
    "PUT": f"PUT {JWKS} HTTP/1.1\r\n{HOST}Content-Length: 0\r\nConnection: close\r\n\r\n",
    "DELETE": f"DELETE {JWKS} HTTP/1.1\r\n{HOST}Connection: close\r\n\r\n",
    "TRACE": f"TRACE {JWKS} HTTP/1.1\r\n{HOST}Connection: close\r\n\r\n",
    "garbage": "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n",
}
# The status each one gets (all 4xx: parse errors 400, bodies 413, unmatched raw paths 404).
EXPECTED_STATUS = {
    "oversized url": 400,
    "oversized url on the jwks path": 400,
    "oversized header": 400,
    "too many headers": 400,
    "body on GET": 413,
    "chunked body on GET": 413,
    "body on POST": 413,
    "content-length with transfer-encoding": 400,
    "two content-lengths": 400,
    "obfuscated transfer-encoding": 400,
    "dot-dot path": 404,
    "encoded dot-dot path": 404,
    "encoded slash": 404,
    "trailing slash": 404,
    "double slash": 404,
    "dot segment": 404,
    "unknown method": 400,
    "PUT": 405,
    "DELETE": 405,
    "TRACE": 405,
    "garbage": 400,
}


@pytest.mark.parametrize("name", REQUESTS)
def test_hostile_request_gets_4xx(daemon: tuple[Daemon, bytes], name: str) -> None:
    """Each malformed or tricky request gets a 4xx without a key set; the next client is served as before."""
    running, body = daemon
    status, reply = exchange(running, REQUESTS[name].encode("latin-1"))
    assert status == EXPECTED_STATUS[name], reply[:300]
    assert b'"keys"' not in reply
    assert len(re.findall(rb"HTTP/1\.[01] \d{3} ", reply)) == 1  # nothing smuggled behind it was answered
    assert_still_serving(running, body)



# Never-reading pipelining clients (issue 10), against a daemon limited to 128 open files.
WRITE_TIMEOUT_S = 1.0
NOFILE = 128
HOSTILE = 300  # at least this many never-reading connections are made
HOLD_S = 15.0  # how long the attack lasts at least
LONGEST_OUTAGE_S = 8.0  # generous bound on a normal client's longest wait for a 200 (write timeout 1 s)


@pytest.fixture
def limited(moto_endpoint: str, tmp_path: Path) -> Iterator[tuple[Daemon, Secrets, str]]:
    """A daemon limited to 128 open files, with a 1 s write timeout and a last-known-good directory."""
    secrets = Secrets(moto_endpoint)
    secret = secrets.create(big_key_set("before"))
    sections = {**sm_sections(secret), "state": {"state_dir": str(tmp_path / "state")},
                "server": {"keepalive_timeout_s": 2.0, "write_timeout_s": WRITE_TIMEOUT_S}}
    (tmp_path / "state").mkdir()
    with Daemon.from_toml(tmp_path, sections, endpoint=moto_endpoint,
                          wrapper=("prlimit", f"--nofile={NOFILE}:{NOFILE}", "--")) as running:
        yield running, secrets, secret
        assert running.process.poll() is None, "the daemon died"


def test_never_reading_client_cut_at_write_timeout(limited: tuple[Daemon, Secrets, str]) -> None:
    """One client that pipelines thousands of GETs and reads nothing is cut once its writes stall write_timeout_s."""
    running, _, _ = limited
    assert running.events("connection_limits")[0]["max_connections"] < NOFILE  # fitted under the limit
    sock = pipeline_and_never_read(running.port)
    assert sock is not None
    with sock:
        wait_until(lambda: running.metric("jwksd_connections_cut_total", reason="write_timeout") == 1,
                   "the stalled connection to be cut")
        sock.setblocking(True)
        sock.settimeout(CUT_OFF_S)
        with pytest.raises(ConnectionResetError):  # aborted: after what the kernel held, a reset
            while sock.recv(1 << 20):
                pass
    assert running.metric("jwksd_connections_open", listener="main") == 0


def test_hundreds_of_never_reading_clients_under_low_fd_limit(limited: tuple[Daemon, Secrets, str],
                                                             tmp_path: Path) -> None:
    """Hundreds of never-reading pipeliners against 128 descriptors: a normal client waits a few seconds at most
    for a 200, a rotation during the attack is fetched and written to last-known-good, and nothing hits EMFILE."""
    running, secrets, secret = limited
    started = time.monotonic()
    rotated = False
    with attack(running.port) as hostile:

        def keep_going(_: Outages) -> bool:
            nonlocal rotated
            if not rotated and len(hostile) >= HOSTILE // 2:  # mid-attack the source changes, then SIGUSR1
                secrets.put(secret, big_key_set("after"))
                running.signal(signal.SIGUSR1)
                rotated = True
            elapsed = time.monotonic() - started
            return elapsed < HOLD_S or (len(hostile) < HOSTILE and elapsed < 60)

        seen = poll(running.url(JWKS), keep_going, timeout_s=LONGEST_OUTAGE_S, marker=b'"after-0"')
        made = len(hostile)
    assert rotated and made >= HOSTILE, f"only {made} hostile connections were made"
    assert seen.longest_s <= LONGEST_OUTAGE_S, seen
    assert seen.bodies_seen == {b'"after-0"'}, "the rotation made during the attack was never served"
    assert '"after-0"' in "".join(path.read_text() for path in (tmp_path / "state").iterdir())
    cut = sum(running.metric("jwksd_connections_cut_total", reason=r) for r in ("write_timeout", "capacity_evicted"))
    assert cut > 0
    log = running.log_path.read_text()
    assert "Too many open files" not in log and "EMFILE" not in log


def test_full_house_of_silent_clients_gets_503(moto_endpoint: str, tmp_path: Path) -> None:
    """At server.max_connections with no stalled connection to cut, a newcomer gets a 503 with Retry-After, and is
    served again once the silent ones time out."""
    secret = Secrets(moto_endpoint).create(jwk_set(rsa_jwk(rsa_key(0), "full-0")))
    sections = {**sm_sections(secret), "server": {"keepalive_timeout_s": 2.0, "max_connections": 8}}
    with Daemon.from_toml(tmp_path, sections, endpoint=moto_endpoint) as running:
        silent = [connect(running) for _ in range(8)]
        try:
            wait_until(lambda: running.metric("jwksd_connections_open", listener="main") == 8, "8 open connections")
            status, reply = exchange(running, f"GET {JWKS} HTTP/1.1\r\n{HOST}{CLOSE}".encode())
            assert status == 503, reply
            assert b"\r\nRetry-After: 1\r\n" in reply and reply.endswith(b"too many connections\n")
            assert running.metric("jwksd_connections_cut_total", listener="main", reason="capacity_refused") == 1
            for sock in silent:
                assert read_until_closed(sock) == b""  # cut by keepalive_timeout_s
        finally:
            for sock in silent:
                sock.close()
        assert running.kids() == {"full-0"}
