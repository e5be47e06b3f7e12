"""Certificate renewal on the running listener: on SIGHUP and when the files change, the old pair kept on failure.

cert-manager and certbot replace the files in place or by swapping a symlink; either changes what
``file_signature`` sees. A change is loaded once the files have stayed the same for one poll, so a
certificate written a moment before its key is not refused as a mismatch.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from jwksd.errors import ConfigError
from jwksd.http.tls import file_signature, load_pair
from jwksd.metrics import Metrics
from jwksd.status import iso_time

log = structlog.get_logger("jwksd.http.tls")


class TlsRenewal:
    """The pair in force, the listener's context that hands each handshake to it, and the last renewal's fate."""

    def __init__(self, cert_file: Path, key_file: Path, metrics: Metrics, *, watch_interval_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        """Load the first pair (ConfigError when it cannot be served: the daemon does not start)."""
        self.cert_file, self.key_file = cert_file, key_file
        self.metrics = metrics
        self.watch_interval_s = watch_interval_s
        self.clock = clock
        self._seen = file_signature(cert_file, key_file)
        self.pair = load_pair(cert_file, key_file, now=clock())
        self.listener = self.pair.context
        self.listener.sni_callback = self._hand_over
        self.last_error: tuple[str, float] | None = None
        metrics.tls_certificate_expiry.set(self.pair.not_after)

    def _hand_over(self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None,
                   context: ssl.SSLContext) -> None:
        """Serve this handshake with the pair in force (a no-op until the first renewal)."""
        current = self.pair.context
        if connection.context is not current:
            connection.context = current

    def reload(self, trigger: str) -> bool:
        """Load the files again; on any problem keep the pair in force, record why and return False."""
        self._seen = file_signature(self.cert_file, self.key_file)
        try:
            pair = load_pair(self.cert_file, self.key_file, now=self.clock())
        except ConfigError as exc:
            self.last_error = ("; ".join(exc.problems), self.clock())
            self.metrics.tls_reloads.labels("rejected").inc()
            log.error("tls_reload_rejected", trigger=trigger, problems=exc.problems,
                      detail=f"the certificate in force stays (expires {iso_time(self.pair.not_after)})")
            return False
        self.pair, self.last_error = pair, None
        self.metrics.tls_certificate_expiry.set(pair.not_after)
        self.metrics.tls_reloads.labels("applied").inc()
        log.info("tls_reloaded", trigger=trigger, subject=pair.subject, not_after=iso_time(pair.not_after))
        return True

    async def watch(self) -> None:
        """Poll the files every ``watch_interval_s``; reload a change once it has held for one poll."""
        pending: tuple[tuple[int, int, int, int], ...] | None = None
        while True:
            await asyncio.sleep(self.watch_interval_s)
            current = file_signature(self.cert_file, self.key_file)
            if current == self._seen:
                pending = None
            elif current != pending:
                pending = current  # still being written, perhaps: look again next poll
            else:
                pending = None
                self.reload("file_change")

    def health(self) -> dict[str, Any]:
        """The /health check: warn while a renewal is refused or the certificate in force has expired."""
        expired = self.pair.not_after <= self.clock()
        return {
            "status": "warn" if self.last_error is not None or expired else "pass",
            "subject": self.pair.subject,
            "not_after": iso_time(self.pair.not_after),
            "loaded_at": iso_time(self.pair.loaded_at),
            "last_error": ({"message": self.last_error[0], "at": iso_time(self.last_error[1])}
                           if self.last_error else None),
        }
