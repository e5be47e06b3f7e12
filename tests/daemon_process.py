"""A real ``jwksd serve`` process for tests: a TOML config, JSON logs in a file, HTTP and metrics helpers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REGION, free_port

JWKS = "/.well-known/jwks.json"
DEADLINE_S = 20.0


def toml_config(sections: dict[str, dict[str, Any]]) -> str:
    """TOML text for flat tables of strings, numbers and booleans (JSON scalars are TOML scalars)."""
    lines: list[str] = []
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in table.items())
    return "\n".join(lines) + "\n"


def wait_until(predicate: Callable[[], Any], what: str, deadline_s: float = DEADLINE_S) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def http_get(url: str, headers: dict[str, str] | None = None,
             timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class Daemon:
    """One running ``jwksd serve``; stop it with :meth:`stop` (tests use it as a context manager)."""

    def __init__(self, workdir: Path, sections: dict[str, dict[str, Any]], *, endpoint: str | None = None,
                 wrapper: Sequence[str] = (), stdout_to_pipe: bool = False, wait_ready: bool = True) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        server = {"listen": f"127.0.0.1:{self.port}", "metrics_listen": f"127.0.0.1:{self.metrics_port}",
                  **sections.get("server", {})}
        self.config_path = workdir / "jwksd.toml"
        self.config_path.write_text(toml_config({**sections, "server": server}))
        self.log_path = workdir / "jwksd.log"
        self.base = f"http://127.0.0.1:{self.port}"
        env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "JWKSD_"))}
        env.update(AWS_REGION=REGION, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                   AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=os.devnull,
                   AWS_SHARED_CREDENTIALS_FILE=os.devnull, JWKSD_LOG_FORMAT="json")
        if endpoint is not None:
            env["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = endpoint
        command = [*wrapper, sys.executable, "-m", "jwksd", "serve", "--config", str(self.config_path)]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        if wait_ready:
            try:
                wait_until(lambda: self.process.poll() is not None or self.get("/readyz")[0] == 200, "readiness")
                assert self.process.poll() is None, f"jwksd exited: {self.log_path.read_text()[-2000:]}"
            except BaseException:
                self.stop()
                raise

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def get(self, path: str = JWKS, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        return http_get(self.base + path, headers)

    def kids(self) -> set[str]:
        status, _, body = self.get()
        assert status == 200, status
        return {key["kid"] for key in json.loads(body)["keys"]}

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the /metrics samples named ``name`` whose labels include ``labels`` (0 when none)."""
        _, _, text = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        return sum(float(sample.value) for family in text_string_to_metric_families(text.decode())
                   for sample in family.samples
                   if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()))

    def refresh(self) -> None:
        """SIGUSR1, then wait until one more refresh has completed."""
        before = self.metric("jwksd_refreshes_total")
        self.process.send_signal(signal.SIGUSR1)
        wait_until(lambda: self.metric("jwksd_refreshes_total") > before, "a refresh after SIGUSR1")

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after a bounded wait; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


def sm_sections(secret_id: str, **refresh: Any) -> dict[str, dict[str, Any]]:
    """Config tables for one secret, refreshed only when told (SIGUSR1) unless ``refresh`` says otherwise."""
    return {
        "source": {"secret_id": secret_id, "max_retries": 0, "connect_timeout_s": 1.0, "read_timeout_s": 2.0},
        "refresh": {"interval_s": 3600, "max_age_s": 3600, **refresh},
        "log": {"level": "info"},
    }
