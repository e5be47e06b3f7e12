"""The signer in tests: a registry with an active key on moto, `jwksd signer` processes, HTTP over a Unix socket."""

from __future__ import annotations

import http.client
import json
import socket
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jwksd.config import RotationConfig
from jwksd.rotation.keyring import Keyring
from jwksd.rotation.publish import confirm_published, publish
from jwksd.rotation.rotate import rotate
from tests.conftest import free_port
from tests.daemon_process import DUMMY_AWS, Daemon, base_env, toml_config, wait_until
from tests.rotation_helpers import T0

P = 1500  # publish_ahead_s with the serving side's defaults
SIGNER = (sys.executable, "-m", "jwksd", "signer")


class UnixConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a Unix socket (http.client speaks it; only the connect differs)."""

    def __init__(self, path: Path | str, timeout: float = 10.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def request(connection: http.client.HTTPConnection, method: str, path: str, body: Any = None, *,
            raw: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    """Status, headers and the JSON answer of one request (``raw`` bytes, or ``body`` as JSON)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    connection.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    response = connection.getresponse()
    content = response.read()
    return response.status, dict(response.headers), json.loads(content) if content else None


def call(socket_path: Path | str, method: str, path: str, body: Any = None, **options: Any
         ) -> tuple[int, dict[str, str], Any]:
    """One request on a new connection to the signer's socket."""
    connection = UnixConnection(socket_path)
    try:
        return request(connection, method, path, body, **options)
    finally:
        connection.close()


async def active_registry(ring: Keyring, secret_id: str) -> None:
    """v1 active since T0 + P and v2, the next key, published (confirmed) since then, as the rotator leaves them."""
    for now in (T0, T0 + P):
        await rotate(ring, now)
        await publish(ring, secret_id)
        await confirm_published(ring, now)


def rotation_table(config: RotationConfig, endpoint: str, **extra: Any) -> dict[str, Any]:
    """The [rotation] table of a signer (or rotator) on ``config``'s registry and backend."""
    return {"table": config.table, "backend": config.backend, "private_secret_prefix": config.private_secret_prefix,
            "key_spec": config.key_spec, "endpoint_url": endpoint, "read_timeout_s": 5.0, **extra}


class SignerProcess(Daemon):
    """One running `jwksd signer` logging JSON lines to a file; ready when its /readyz answers 200."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], workdir: Path, socket_path: Path, *,
                 metrics_port: int, wait_ready: bool = True) -> None:
        self.socket_path = socket_path
        super().__init__(argv, env, workdir / "signer.log", port=0, metrics_port=metrics_port, wait_ready=wait_ready)

    @classmethod
    def start(cls, workdir: Path, rotation: dict[str, Any], *, signer: dict[str, Any] | None = None,
              wrapper: Sequence[str] = (), wait_ready: bool = True, env: dict[str, str] | None = None,
              refresh: dict[str, Any] | None = None) -> SignerProcess:
        """A signer on ``rotation``'s registry with its socket in ``workdir``, reading the registry every 0.2 s."""
        metrics_port = free_port()
        socket_path = workdir / "signer.sock"
        settings = {"socket": str(socket_path), "metrics_listen": f"127.0.0.1:{metrics_port}", "refresh_s": 0.2,
                    **(signer or {})}
        sections: dict[str, dict[str, Any]] = {"rotation": rotation, "signer": settings, "log": {"level": "info"}}
        if refresh:
            sections["refresh"] = refresh
        config = workdir / "signer.toml"
        config.write_text(toml_config(sections))
        environment = {name: value for name, value in base_env().items() if not name.startswith("AWS_")}
        environment.update(DUMMY_AWS, JWKSD_LOG_FORMAT="json", **(env or {}))
        return cls([*wrapper, *SIGNER, "--config", str(config)], environment, workdir, Path(settings["socket"]),
                   metrics_port=metrics_port, wait_ready=wait_ready)

    def wait_ready(self) -> None:
        wait_until(lambda: self._alive() and self.call("GET", "/readyz")[0] == 200,
                   "the signer's /readyz to answer 200")

    def call(self, method: str, path: str, body: Any = None, **options: Any) -> tuple[int, dict[str, str], Any]:
        return call(self.socket_path, method, path, body, **options)

    def sign(self, claims: dict[str, Any] | None = None, **members: Any) -> dict[str, Any]:
        """A token (the answer of POST /v1/sign), asserting it was signed."""
        status, _, answer = self.call("POST", "/v1/sign", {"claims": claims or {"sub": "svc"}, **members})
        assert status == 200, answer
        result: dict[str, Any] = answer
        return result


class Load:
    """Callers signing without pause on threads of their own; every answer kept in order, refused ones too."""

    def __init__(self, socket_path: Path, callers: int = 4) -> None:
        self.socket_path = socket_path
        self.answers: list[tuple[int, dict[str, Any] | None]] = []  # (status, answer); 0: no connection
        self.lock = threading.Lock()
        self.running = threading.Event()
        self.threads = [threading.Thread(target=self._caller, daemon=True) for _ in range(callers)]

    def __enter__(self) -> Load:
        self.running.set()
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.running.clear()
        for thread in self.threads:
            thread.join(timeout=30)

    def _caller(self) -> None:
        while self.running.is_set():
            try:
                status, _, answer = call(self.socket_path, "POST", "/v1/sign", {"claims": {"sub": "load"}})
            except OSError:
                status, answer = 0, None
                time.sleep(0.01)  # restarting: the socket is gone for a moment
            with self.lock:
                self.answers.append((status, answer))

    def mark(self) -> int:
        """The number of answers so far: those after it were asked for later."""
        with self.lock:
            return len(self.answers)

    def tokens(self, start: int = 0) -> list[dict[str, Any]]:
        """The tokens handed out after answer ``start``."""
        with self.lock:
            return [answer for status, answer in self.answers[start:] if status == 200 and answer is not None]

    def wait_for(self, predicate: Any, what: str) -> None:
        """Until a token handed out from now on satisfies ``predicate`` (bounded)."""
        start = self.mark()
        wait_until(lambda: any(predicate(token) for token in self.tokens(start)), what)
