"""The connection cap fitted under the open-file limit (jwksd/http/server.py), on its own and in real processes."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from jwksd.errors import ConfigError
from jwksd.http.server import DEFAULT_MAX_CONNECTIONS, Budget, GuardedSite, Listener, plan_budget
from jwksd.metrics import Metrics
from tests.daemon_process import SERVE, Daemon, base_env, sm_sections, toml_config

UNIT = Path(__file__).parent.parent / "systemd" / "jwksd.service"
BODY = b"k" * 100_000  # a few hundred of these fill any socket buffer
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
BOUND_S = 10.0  # bound on every wait below (the write timeout is 0.2 s)


async def body(_: web.Request) -> web.Response:
    return web.Response(body=BODY)


HELD = asyncio.Event()  # released at the end of the test that holds a request


async def held(_: web.Request) -> web.Response:
    await HELD.wait()
    return web.Response(body=b"held")


@asynccontextmanager
async def guarded(max_connections: int) -> AsyncIterator[tuple[Listener, int, Metrics]]:
    """A one-route app behind a GuardedSite on 127.0.0.1: its listener, port and metrics."""
    app = web.Application()
    app.router.add_get("/", body)
    app.router.add_get("/held", held)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=BOUND_S)
    await runner.setup()
    assert runner.server is not None
    metrics = Metrics()
    listener = Listener("main", runner.server, max_connections=max_connections, write_timeout_s=0.2,
                        metrics=metrics)
    site = GuardedSite(runner, "127.0.0.1", 0, listener, backlog=8)
    await site.start()
    try:
        yield listener, site.port, metrics
    finally:
        await runner.cleanup()


def cut(metrics: Metrics, reason: str) -> float:
    return metrics.registry.get_sample_value("jwksd_connections_cut_total", {"listener": "main", "reason": reason}) or 0


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Wait for ``predicate``, failing after BOUND_S with ``what`` in the message."""
    try:
        async with asyncio.timeout(BOUND_S):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out after {BOUND_S:g}s waiting for {what}") from None


async def stalled_client(port: int) -> asyncio.StreamWriter:
    """A client that pipelines 200 GETs and reads nothing."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST * 200)
    return writer


async def get(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    try:
        async with asyncio.timeout(BOUND_S):
            return await reader.read()
    finally:
        writer.close()


async def test_stalled_connection_is_cut_at_write_timeout() -> None:
    """A connection whose answers the kernel will not take for write_timeout_s is aborted and counted."""
    async with guarded(max_connections=4) as (listener, port, metrics):
        writer = await stalled_client(port)
        await until(lambda: cut(metrics, "write_timeout") == 1, "the cut")
        assert listener.open == set() and listener.stalled == set()
        assert (await get(port)).endswith(BODY)
        writer.close()


async def test_longest_stalled_connection_makes_room() -> None:
    """At the cap, a newcomer is served in place of the connection stalled longest."""
    async with guarded(max_connections=2) as (listener, port, metrics):
        listener.write_timeout_s = BOUND_S * 10  # only eviction may end them here
        first = await stalled_client(port)
        await until(lambda: len(listener.stalled) == 1, "the first stall")
        second = await stalled_client(port)
        await until(lambda: len(listener.stalled) == 2, "the second stall")
        oldest = min(listener.stalled, key=lambda guard: guard.stalled_since)
        assert (await get(port)).endswith(BODY)
        assert cut(metrics, "capacity_evicted") == 1 and oldest not in listener.open and len(listener.open) == 1
        first.close()
        second.close()


async def test_full_house_without_a_stalled_connection_refuses() -> None:
    """At the cap with nothing stalled, a newcomer gets 503 "too many connections" and the others stay."""
    async with guarded(max_connections=1) as (listener, port, metrics):
        _, idle = await asyncio.open_connection("127.0.0.1", port)
        await until(lambda: len(listener.open) == 1, "the idle connection")
        reply = await get(port)
        assert reply.startswith(b"HTTP/1.1 503 Service Unavailable\r\n") and reply.endswith(b"too many connections\n")
        assert cut(metrics, "capacity_refused") == 1 and len(listener.open) == 1
        idle.close()


def test_automatic_cap_is_the_default_under_a_roomy_limit() -> None:
    """With 4096 descriptors the automatic cap is 1024, beside a full 128 backlog."""
    assert plan_budget(None, nofile=4096, open_fds=20, metrics_listener=True) == Budget(1024, 128, 4096, 20)


def test_automatic_cap_shrinks_to_fit_a_low_limit() -> None:
    """With 128 descriptors the cap leaves room for the reserve, the metrics listener and twice the backlog."""
    budget = plan_budget(None, nofile=128, open_fds=12, metrics_listener=True)
    assert budget == Budget(max_connections=52, backlog=8, nofile=128, open_fds=12)
    assert budget.max_connections + 2 * budget.backlog + 12 + 32 + 16 == 128


def test_explicit_cap_that_fits_is_kept() -> None:
    """An explicit server.max_connections under the limit is used as given, its backlog no larger than itself."""
    assert plan_budget(8, nofile=4096, open_fds=20, metrics_listener=False) == Budget(8, 8, 4096, 20)


def test_explicit_cap_that_does_not_fit_is_refused() -> None:
    """server.max_connections above what the limit leaves is refused, naming every figure."""
    with pytest.raises(ConfigError) as caught:
        plan_budget(1000, nofile=128, open_fds=12, metrics_listener=True)
    assert caught.value.problems == [
        "server.max_connections = 1000: the open-file limit (RLIMIT_NOFILE) is 128: 12 are open at start, 32 are "
        "kept for AWS, Redis and state files, 16 for the metrics listener and 2 x 8 for the accept backlog, which "
        "leaves 52; raise LimitNOFILE or `ulimit -n`, or lower server.max_connections"]


def test_limit_too_low_for_any_cap_is_refused() -> None:
    """A limit that leaves fewer than 8 connections refuses to start even with the automatic cap."""
    with pytest.raises(ConfigError) as caught:
        plan_budget(None, nofile=64, open_fds=12, metrics_listener=True)
    assert caught.value.problems == [
        "server.max_connections: the open-file limit (RLIMIT_NOFILE) is 64: 12 are open at start, 32 are kept for "
        "AWS, Redis and state files, 16 for the metrics listener and 2 x 1 for the accept backlog, which leaves 2 "
        "(at least 8 needed); raise LimitNOFILE or `ulimit -n`"]


def test_daemon_refuses_a_cap_over_its_limit(moto_endpoint: str, tmp_path: Path) -> None:
    """`jwksd serve` under 128 descriptors with server.max_connections = 1000 exits 2, saying what does not fit."""
    config = tmp_path / "jwksd.toml"
    config.write_text(toml_config({**sm_sections("unused"), "server": {"listen": "127.0.0.1:0",
                                                                       "max_connections": 1000}}))
    result = subprocess.run(["prlimit", "--nofile=128:128", "--", *SERVE, "--config", str(config)],
                            env=base_env(AWS_ENDPOINT_URL_SECRETS_MANAGER=moto_endpoint), capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert re.search(r"jwksd: cannot start: invalid configuration:\n  - server\.max_connections = 1000: the "
                     r"open-file limit \(RLIMIT_NOFILE\) is 128: \d+ are open at start, .* which leaves \d+; raise "
                     r"LimitNOFILE or `ulimit -n`, or lower server\.max_connections\n", result.stderr), result.stderr


def test_unit_limit_fits_the_default_cap(moto_endpoint: str, tmp_path: Path) -> None:
    """Under the systemd unit's LimitNOFILE the daemon starts with the default cap of 1024 connections."""
    limit = int(re.findall(r"^LimitNOFILE=(\d+)$", UNIT.read_text(), re.MULTILINE)[-1])
    with Daemon.from_toml(tmp_path, sm_sections("unused"), endpoint=moto_endpoint, wait_ready=False,
                          wrapper=("prlimit", f"--nofile={limit}:{limit}", "--")) as running:
        limits = running.wait_event("connection_limits")
    assert limits["open_file_limit"] == limit
    assert limits["max_connections"] == DEFAULT_MAX_CONNECTIONS


async def test_pipelining_is_bounded_while_a_request_is_answered() -> None:
    """While one request is being answered, 31 more are parsed at most and the socket is no longer read."""
    # The bound is aiohttp's (web_protocol.MAX_MSG_QUEUE_SIZE), read here from its private state: this
    # fails if an aiohttp upgrade drops the bound jwksd/http/server.py relies on.
    async with guarded(max_connections=4) as (listener, port, _):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /held HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 1000)
        try:
            await until(lambda: any(g.handler is not None and g.handler._buffer_paused for g in listener.open),
                        "the connection to stop being read")
            (guard,) = listener.open
            assert guard.handler is not None
            assert (guard.handler._request_count, len(guard.handler._messages)) == (32, 31)
        finally:
            HELD.set()
            writer.close()
