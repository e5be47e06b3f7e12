"""The listeners: a connection cap that fits under the open-file limit, and a deadline on every write.

aiohttp speaks HTTP; each accepted socket is first wrapped in a :class:`Guard`, which

- admits it while fewer than ``max_connections`` are open. At the cap it cuts the connection whose
  writes have been stalled longest to make room, and refuses the newcomer (503, closed) when none is;
- sets the transport's write-buffer high-water mark to 0, so any byte the kernel will not take
  pauses the writer, and aborts the connection when writing stays paused ``write_timeout_s``.
  ``close()`` would wait for a reader that never comes; ``abort()`` frees the descriptor at once.
- caps the kernel's send buffer at ``SEND_BUFFER_BYTES``: Linux grows it to 4 MB for a peer that
  does not read, which is 4 MB of kernel memory per hostile connection and hundreds of answers to
  write before its writes stall (and it can be cut or evicted).

Pipelining is bounded by aiohttp itself: with one request being answered it parses at most 31
more, then stops reading the socket until they drain (web_protocol.MAX_MSG_QUEUE_SIZE, 32).
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import structlog
from aiohttp import web

from jwksd.config import Listen, ServerConfig
from jwksd.errors import ConfigError

if TYPE_CHECKING:
    from aiohttp.web_protocol import RequestHandler

    from jwksd.metrics import Metrics

log = structlog.get_logger("jwksd.http.server")

# Descriptors kept free for everything that is not a client: AWS and HTTP-source connection pools
# (aiobotocore opens at most 10 per client), Redis, the state file and its directory, the fallback
# file, the sd_notify socket.
RESERVED_FDS = 32
METRICS_MAX_CONNECTIONS = 8  # the /metrics listener: a scraper or two, and someone with curl
METRICS_BACKLOG = 8
MAX_BACKLOG = 128  # aiohttp's default listen backlog
DEFAULT_MAX_CONNECTIONS = 1024
MIN_CONNECTIONS = 8
SEND_BUFFER_BYTES = 64 * 1024  # the kernel doubles it; a 64 kB key set still goes out in one write
CUT_REASONS = ("write_timeout", "capacity_evicted", "capacity_refused")
REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n"
           b"Retry-After: 1\r\nConnection: close\r\n\r\ntoo many connections\n")


@dataclass(frozen=True)
class Budget:
    """How many connections the main listener takes, and its listen backlog (accepted in one burst)."""

    max_connections: int
    backlog: int
    nofile: int
    open_fds: int


def open_file_limit() -> int:
    """RLIMIT_NOFILE's soft limit: what this process may have open."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def open_fd_count() -> int:
    """Descriptors open now (Linux: /proc/self/fd, less the one listing it)."""
    return len(os.listdir("/proc/self/fd")) - 1


def plan_budget(setting: int | None, *, nofile: int, open_fds: int, metrics_listener: bool) -> Budget:
    """Fit the connection cap under ``nofile`` with headroom; raise ConfigError naming the figures when it cannot.

    ``setting`` None means automatic: ``DEFAULT_MAX_CONNECTIONS``, or less when the limit is lower.
    Headroom: ``RESERVED_FDS``, the metrics listener's connections and backlog, and twice this
    listener's backlog: the loop accepts up to a backlog of sockets in one go before any is refused,
    and the connections cut to make room for them close on its next turn.
    """
    metrics_fds = METRICS_MAX_CONNECTIONS + METRICS_BACKLOG if metrics_listener else 0
    available = nofile - open_fds - RESERVED_FDS - metrics_fds
    backlog = min(MAX_BACKLOG, max(1, available // 8))
    fits = available - 2 * backlog
    spent = (f"the open-file limit (RLIMIT_NOFILE) is {nofile}: {open_fds} are open at start, {RESERVED_FDS} are "
             f"kept for AWS, Redis and state files, {metrics_fds} for the metrics listener and 2 x {backlog} for "
             f"the accept backlog, which leaves {max(fits, 0)}")
    if setting is None:
        if fits < MIN_CONNECTIONS:
            raise ConfigError([f"server.max_connections: {spent} (at least {MIN_CONNECTIONS} needed); "
                               "raise LimitNOFILE or `ulimit -n`"])
        return Budget(min(DEFAULT_MAX_CONNECTIONS, fits), backlog, nofile, open_fds)
    if setting > fits:
        raise ConfigError([f"server.max_connections = {setting}: {spent}; raise LimitNOFILE or `ulimit -n`, "
                           "or lower server.max_connections"])
    return Budget(setting, min(backlog, setting), nofile, open_fds)


class Listener:
    """The open connections of one listening socket, its cap, and how they end."""

    def __init__(self, name: str, server: web.Server, *, max_connections: int, write_timeout_s: float,
                 metrics: Metrics) -> None:
        self.name = name
        self.server = server
        self.max_connections = max_connections
        self.write_timeout_s = write_timeout_s
        self.metrics = metrics
        self.open: set[Guard] = set()
        self.stalled: set[Guard] = set()
        metrics.connections_max.labels(name).set(max_connections)
        metrics.connections_open.labels(name).set_function(lambda: len(self.open))
        for reason in CUT_REASONS:
            metrics.connections_cut.labels(name, reason)

    def admit(self, guard: Guard) -> bool:
        """Take ``guard`` if there is room, making room by cutting the longest-stalled connection if need be."""
        if len(self.open) >= self.max_connections:
            if not self.stalled:
                self.metrics.connections_cut.labels(self.name, "capacity_refused").inc()
                return False
            min(self.stalled, key=lambda g: g.stalled_since).cut("capacity_evicted")
        self.open.add(guard)
        return True

    def release(self, guard: Guard) -> None:
        self.open.discard(guard)
        self.stalled.discard(guard)


class Guard(asyncio.Protocol):
    """One accepted connection: admission, the write deadline, then aiohttp's protocol for everything else."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.handler: RequestHandler | None = None
        self.transport: asyncio.Transport | None = None
        self.stalled_since = 0.0
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass, only the same interface
        self.transport = transport
        if not self.listener.admit(self):
            transport.write(REFUSAL)
            transport.close()
            return
        transport.set_write_buffer_limits(high=0)  # every unsent byte pauses the writer: see the module docstring
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        self.handler = self.listener.server()
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.handler is not None:
            self.handler.data_received(data)

    def eof_received(self) -> None:
        if self.handler is not None:  # aiohttp answers what it has read, then closes
            self.handler.eof_received()

    def pause_writing(self) -> None:
        loop = asyncio.get_running_loop()
        self.stalled_since = loop.time()
        self.listener.stalled.add(self)
        self.deadline = loop.call_later(self.listener.write_timeout_s, self.cut, "write_timeout")
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        self._clear_deadline()
        if self.handler is not None:
            self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._clear_deadline()
        self.listener.release(self)
        if self.handler is not None:
            self.handler.connection_lost(exc)

    def cut(self, reason: str) -> None:
        """Drop the connection now, unsent bytes and all, and count why."""
        self._clear_deadline()
        self.listener.release(self)  # its descriptor is closed on the loop's next turn
        self.listener.metrics.connections_cut.labels(self.listener.name, reason).inc()
        log.debug("connection_cut", listener=self.listener.name, reason=reason)
        if self.transport is not None:
            self.transport.abort()

    def _clear_deadline(self) -> None:
        self.listener.stalled.discard(self)
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through a :class:`Listener` first."""

    __slots__ = ("_host", "_listener", "_port")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, listener: Listener, *, backlog: int,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(runner, backlog=backlog, ssl_context=ssl_context)
        self._host, self._port, self._listener = host, port, listener

    @property
    def name(self) -> str:
        return f"{'https' if self._ssl_context else 'http'}://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        """The port listened on (the one the system chose, for port 0)."""
        sockets = getattr(self._server, "sockets", None)  # asyncio's and uvloop's servers have them
        return int(sockets[0].getsockname()[1]) if sockets else self._port

    async def start(self) -> None:
        await super().start()
        listener = self._listener
        self._server = await asyncio.get_running_loop().create_server(
            lambda: Guard(listener), self._host, self._port, backlog=self._backlog, reuse_address=True,
            ssl=self._ssl_context,
            # A connection counts once its handshake is done: one that stalls there is dropped as a write would be.
            ssl_handshake_timeout=listener.write_timeout_s if self._ssl_context else None)


async def start_listeners(server: ServerConfig, metrics: Metrics, runner: web.AppRunner,
                          metrics_runner: web.AppRunner | None, ssl_context: ssl.SSLContext | None) -> None:
    """Set up the apps, fit the connection cap under the open-file limit (or raise ConfigError), then listen."""
    await runner.setup()
    if metrics_runner is not None:
        await metrics_runner.setup()
    budget = plan_budget(server.max_connections, nofile=open_file_limit(), open_fds=open_fd_count(),
                         metrics_listener=metrics_runner is not None)
    log.info("connection_limits", max_connections=budget.max_connections, write_timeout_s=server.write_timeout_s,
             open_file_limit=budget.nofile, open_at_start=budget.open_fds, backlog=budget.backlog)
    assert runner.server is not None
    main = Listener("main", runner.server, max_connections=budget.max_connections,
                    write_timeout_s=server.write_timeout_s, metrics=metrics)
    await _listen("server.listen", server.listen, GuardedSite(
        runner, server.listen.host, server.listen.port, main, backlog=budget.backlog, ssl_context=ssl_context))
    if metrics_runner is not None and server.metrics_listen is not None:
        assert metrics_runner.server is not None
        side = Listener("metrics", metrics_runner.server, max_connections=METRICS_MAX_CONNECTIONS,
                        write_timeout_s=server.write_timeout_s, metrics=metrics)
        await _listen("server.metrics_listen", server.metrics_listen, GuardedSite(
            metrics_runner, server.metrics_listen.host, server.metrics_listen.port, side, backlog=METRICS_BACKLOG))


async def _listen(key: str, address: Listen, site: GuardedSite) -> None:
    """Start ``site``; a port taken or an address not here is a ConfigError naming the setting, not a traceback."""
    try:
        await site.start()
    except OSError as exc:
        reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)  # asyncio's text repeats the address
        raise ConfigError([f"{key} = {str(address)!r}: cannot listen there ({reason})"]) from exc
