"""A real ``jwksd serve`` process for tests: configured by TOML or by environment, JSON logs in a file, HTTP helpers.

``Daemon.from_toml`` writes a config file on free loopback ports with dummy AWS credentials;
``Daemon.from_env`` runs with the environment it is given. Both wait for /readyz unless told not to.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REGION, free_port

JWKS = "/.well-known/jwks.json"
DEADLINE_S = 20.0
SERVE = (sys.executable, "-m", "jwksd", "serve")
DUMMY_AWS = {"AWS_REGION": REGION, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
             "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
             "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


def terminate(process: subprocess.Popen[Any], timeout_s: float = 15.0) -> int:
    """SIGTERM (a no-op once reaped), then SIGKILL if it has not exited within ``timeout_s``; the exit code."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout=10)


def wait_until(predicate: Callable[[], Any], what: str, deadline_s: float = DEADLINE_S) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); fail naming ``what`` after ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out after {deadline_s:g}s waiting for {what}")


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 5.0,
             context: ssl.SSLContext | None = None) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body; HTTP errors are answers too. ``context`` verifies an https server."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def base_env(**variables: str) -> dict[str, str]:
    """This process's environment without JWKSD_*, NOTIFY_* or WATCHDOG_*, plus ``variables``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("JWKSD_", "NOTIFY_", "WATCHDOG_"))}
    env.update(variables)
    return env


def toml_config(sections: dict[str, dict[str, Any]]) -> str:
    """TOML text for flat tables of strings, numbers and booleans (JSON scalars are TOML scalars)."""
    lines: list[str] = []
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in table.items())
    return "\n".join(lines) + "\n"


def sm_sections(secret_id: str, **refresh: Any) -> dict[str, dict[str, Any]]:
    """Config tables for one secret, refreshed only when told (SIGUSR1) unless ``refresh`` says otherwise."""
    return {
        "source": {"secret_id": secret_id, "max_retries": 0, "connect_timeout_s": 1.0, "read_timeout_s": 2.0},
        "refresh": {"interval_s": 3600, "max_age_s": 3600, **refresh},
        "log": {"level": "info"},
    }


def _port(listen: str | None) -> int | None:
    """The port of a ``host:port`` listen setting; None for "off" or unset."""
    if listen is None or listen == "off":
        return None
    return int(listen.rpartition(":")[2])


class Daemon:
    """One running ``jwksd serve`` logging JSON lines to a file; a context manager that stops it."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path, *, port: int,
                 metrics_port: int | None = None, cwd: Path | None = None, wait_ready: bool = True,
                 tls: ssl.SSLContext | None = None) -> None:
        """Start ``argv``; unless ``wait_ready`` is False, wait for /readyz (stopping it if that fails).

        ``tls``: the listener speaks HTTPS, and this client context verifies it.
        """
        self.env = dict(env)
        self.tls = tls
        self.log_path = log_path
        self.port, self.metrics_port = port, metrics_port
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(list(argv), env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
        if wait_ready:
            try:
                self.wait_ready()
            except BaseException:
                self.stop()
                raise

    @classmethod
    def from_toml(cls, workdir: Path, sections: dict[str, dict[str, Any]], *, endpoint: str | None = None,
                  wrapper: Sequence[str] = (), wait_ready: bool = True, tls: ssl.SSLContext | None = None,
                  port: int | None = None) -> Daemon:
        """Config ``sections`` written to ``workdir``/jwksd.toml, listening on ``port`` or a free one, logging to
        jwksd.log."""
        port = port or free_port()
        metrics_port = free_port()
        while metrics_port == port:  # a port the caller picked was released, and may come back
            metrics_port = free_port()
        server = {"listen": f"127.0.0.1:{port}", "metrics_listen": f"127.0.0.1:{metrics_port}",
                  **sections.get("server", {})}
        config_path = workdir / "jwksd.toml"
        config_path.write_text(toml_config({**sections, "server": server}))
        env = {name: value for name, value in base_env().items() if not name.startswith("AWS_")}
        env.update(DUMMY_AWS, JWKSD_LOG_FORMAT="json")
        if endpoint is not None:
            env["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = endpoint
        return cls([*wrapper, *SERVE, "--config", str(config_path)], env, workdir / "jwksd.log", port=port,
                   metrics_port=metrics_port, wait_ready=wait_ready, tls=tls)

    @classmethod
    def from_env(cls, env: Mapping[str, str], log_path: Path, *, argv: Sequence[str] = SERVE,
                 cwd: Path | None = None, port: int | None = None, wait_ready: bool = True) -> Daemon:
        """Configured by ``env`` (the whole environment, JSON logs forced); ports from JWKSD_*LISTEN unless given."""
        env = {**env, "JWKSD_LOG_FORMAT": "json"}
        listen_port = port or _port(env["JWKSD_LISTEN"])
        assert listen_port is not None, "JWKSD_LISTEN is off: pass port"
        return cls(argv, env, log_path, port=listen_port, metrics_port=_port(env.get("JWKSD_METRICS_LISTEN")),
                   cwd=cwd, wait_ready=wait_ready)

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, path: str) -> str:
        return f"https://localhost:{self.port}{path}" if self.tls else f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str = JWKS, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        return http_get(self.url(path), headers, context=self.tls)

    def metrics_get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        """GET ``path`` from the metrics listener (/metrics, and /health with the upstream messages)."""
        assert self.metrics_port is not None, "this daemon has no metrics listener"
        return http_get(f"http://127.0.0.1:{self.metrics_port}{path}")

    def wait_ready(self) -> None:
        wait_until(lambda: self._alive() and self.get("/readyz")[0] == 200, "/readyz to answer 200")

    def _alive(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"jwksd exited with {self.process.returncode}:\n"
                                 f"{self.log_path.read_text(errors='replace')[-4000:]}")
        return True

    def kids(self) -> set[str]:
        status, _, body = self.get()
        assert status == 200, status
        return {key["kid"] for key in json.loads(body)["keys"]}

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the /metrics samples named ``name`` whose labels include ``labels`` (0 when none)."""
        assert self.metrics_port is not None, "this daemon has no metrics listener"
        _, _, text = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        return sum(float(sample.value) for family in text_string_to_metric_families(text.decode())
                   for sample in family.samples
                   if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()))

    def refresh(self) -> None:
        """SIGUSR1, then wait until one more refresh has completed."""
        before = self.metric("jwksd_refreshes_total")
        self.signal(signal.SIGUSR1)
        wait_until(lambda: self.metric("jwksd_refreshes_total") > before, "a refresh after SIGUSR1")

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The complete JSON log lines so far (only those named ``name`` when given)."""
        text = self.log_path.read_text(errors="replace")
        lines = text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]  # a line still being written
        events = [json.loads(line) for line in lines if line.startswith("{")]
        return [e for e in events if name is None or e.get("event") == name]

    def wait_event(self, name: str, count: int = 1) -> dict[str, Any]:
        """The ``count``-th log line named ``name``, waiting for it (bounded)."""
        wait_until(lambda: self._alive() and len(self.events(name)) >= count, f"log event {name!r} #{count}")
        return self.events(name)[count - 1]

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self) -> int:
        """SIGTERM (if still running), then SIGKILL after a bounded wait; the exit code."""
        return terminate(self.process)

    def kill(self) -> None:
        """SIGKILL if still running (cleanup after a test that did not stop it)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
