"""sd_notify(3) without libsystemd: readiness, status, watchdog, reload and stop, over NOTIFY_SOCKET.

One datagram per message, newline-separated ``KEY=VALUE`` fields, to the unix socket systemd
names in ``NOTIFY_SOCKET`` (``@name`` is the abstract namespace). Without a socket, or with one we
cannot use, every call does nothing: the daemon runs the same outside systemd.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import structlog

log = structlog.get_logger("jwksd.notify")


def socket_address(value: str | None) -> str | bytes | None:
    """The sendto() address for a NOTIFY_SOCKET value: a path, an abstract name, or None if unusable."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # e.g. vsock: addresses, which this daemon never runs under


class Notifier:
    """Sends sd_notify messages; never raises, and warns once if the socket refuses them."""

    def __init__(self, notify_socket: str | None) -> None:
        self.address = socket_address(notify_socket)
        if notify_socket and self.address is None:
            log.warning("notify_socket_unsupported", notify_socket=notify_socket)
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send one message; False when there is no socket or the send failed."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)  # called from the event loop: never wait on systemd
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("notify_failed", error=exc.strerror or str(exc))
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets systemd (253+, Type=notify-reload) match this message to the reload it asked for.
        return self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}",
                         "STATUS=reloading the configuration")

    def stopping(self) -> bool:
        return self.send("STOPPING=1", "STATUS=stopping")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def watchdog_loop(notifier: Notifier, watchdog_s: float, alive: Callable[[], bool]) -> None:
    """Ping WATCHDOG=1 every half of WatchdogSec while ``alive()``; withhold it otherwise, so systemd restarts us.

    The pings come from a task on the event loop, so a blocked loop stops them too.
    """
    withheld = False
    while True:
        await asyncio.sleep(watchdog_s / 2)
        if alive():
            notifier.watchdog()
            withheld = False
        elif not withheld:
            withheld = True
            log.error("watchdog_withheld", reason="the refresh task has stopped")
