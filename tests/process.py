"""A real `jwksd serve` process for tests: start it, talk HTTP to it, read its JSON log, stop it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

DEADLINE_S = 20.0


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """Status and body; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_until(predicate: Callable[[], Any], what: str, deadline_s: float = DEADLINE_S) -> Any:
    """Poll ``predicate`` until it returns something true (its value is returned), bounded."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out after {deadline_s:g}s waiting for {what}")


class Daemon:
    """One jwksd process logging JSON lines to a file; killed if a test leaves it running."""

    def __init__(self, env: Mapping[str, str], log_path: Path, *, argv: Sequence[str] = (sys.executable, "-m", "jwksd",
                 "serve"), cwd: Path | None = None, port: int | None = None) -> None:
        self.env = {**env, "JWKSD_LOG_FORMAT": "json"}
        self.log_path = log_path
        self.port = port or int(self.env["JWKSD_LISTEN"].rpartition(":")[2])
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(list(argv), env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            cwd=cwd)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self) -> None:
        wait_until(lambda: self._alive() and http_get(self.url("/readyz"))[0] == 200, "/readyz to answer 200")

    def _alive(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"jwksd exited with {self.process.returncode}:\n{self.log_path.read_text()}")
        return True

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines so far (only those named ``name`` when given)."""
        lines = self.log_path.read_text().splitlines()
        events = [json.loads(line) for line in lines if line.startswith("{")]
        return [e for e in events if name is None or e.get("event") == name]

    def wait_event(self, name: str, count: int = 1) -> dict[str, Any]:
        """The ``count``-th log line named ``name``, waiting for it (bounded)."""
        found = wait_until(lambda: self._alive() and len(self.events(name)) >= count, f"log event {name!r} #{count}")
        assert found
        return self.events(name)[count - 1]

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self) -> int:
        """SIGTERM and wait (bounded) for the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=15)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def base_env(**variables: str) -> dict[str, str]:
    """The test environment (dummy AWS credentials, no JWKSD_*) plus ``variables``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("JWKSD_", "NOTIFY_", "WATCHDOG_"))}
    env.update(variables)
    return env
