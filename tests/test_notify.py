"""sd_notify: the messages a real jwksd process sends to a NOTIFY_SOCKET, in order, and what config reads."""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from jwksd.config import SystemdConfig, load_config
from jwksd.errors import ConfigError
from jwksd.notify import Notifier, socket_address
from tests.conftest import REGION, Secrets, free_port
from tests.daemon_process import Daemon, base_env
from tests.keys import jwk_set, rsa_jwk, rsa_key

WATCHDOG_S = 0.4
RECV_DEADLINE_S = 20.0


class NotifySocket:
    """A datagram socket standing in for systemd's end of NOTIFY_SOCKET; keeps every message it receives."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        bound = socket_address(address)
        assert bound is not None
        self.sock.bind(bound)
        self.messages: list[dict[str, str]] = []

    def receive_until(self, field: str, value: str | None = None) -> list[dict[str, str]]:
        """Receive (bounded) until a message has ``field`` (with ``value``); return the messages received meanwhile."""
        start = len(self.messages)
        deadline = time.monotonic() + RECV_DEADLINE_S
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                break
            message = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.messages.append(message)
            if field in message and (value is None or message[field] == value):
                return self.messages[start:]
        raise AssertionError(f"no {field}={value} within {RECV_DEADLINE_S:g}s; got {self.messages[start:]}")

    def count(self, field: str) -> int:
        return sum(field in message for message in self.messages)


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    """An abstract-namespace datagram socket, so no path length or cleanup trouble."""
    listener = NotifySocket(f"@jwksd-test-{uuid.uuid4()}")
    yield listener
    listener.sock.close()


def test_ready_only_after_keys_then_reload_and_stop(secrets: Secrets, notify_socket: NotifySocket,
                                                    tmp_path: Path) -> None:
    """READY=1 comes only once keys are served; watchdog pings meanwhile; RELOADING/READY on SIGHUP; STOPPING."""
    secret_id = f"jwksd-test/{uuid.uuid4()}"  # not created yet: nothing to serve at start
    env = base_env(JWKSD_SECRET_ID=secret_id, JWKSD_LISTEN=f"127.0.0.1:{free_port()}", JWKSD_METRICS_LISTEN="off",
                   JWKSD_REFRESH_INTERVAL_S="3600", JWKSD_MAX_AGE_S="3600", AWS_REGION=REGION,
                   AWS_ENDPOINT_URL_SECRETS_MANAGER=secrets.endpoint, NOTIFY_SOCKET=notify_socket.address,
                   WATCHDOG_USEC=str(int(WATCHDOG_S * 1_000_000)))
    started = time.monotonic()
    daemon = Daemon.from_env(env, tmp_path / "jwksd.log", wait_ready=False)
    try:
        before_keys = []
        while notify_socket.count("WATCHDOG") < 3:  # the loop runs and says so, but nothing is served yet
            before_keys += notify_socket.receive_until("WATCHDOG", "1")
        assert not any("READY" in message for message in before_keys)
        assert before_keys[0]["STATUS"].startswith("waiting for a valid key set")
        assert daemon.get("/readyz")[0] == 503

        secrets.client.create_secret(Name=secret_id, SecretString=jwk_set(rsa_jwk(rsa_key(0), "k1")))
        daemon.signal(signal.SIGUSR1)
        ready = notify_socket.receive_until("READY", "1")[-1]
        assert ready["STATUS"] == "serving 1 key (fresh)"
        assert daemon.get("/readyz")[0] == 200  # READY=1 was sent after the set was installed

        daemon.signal(signal.SIGHUP)
        reload = notify_socket.receive_until("READY", "1")
        reloading = [message for message in reload if "RELOADING" in message]
        assert len(reloading) == 1 and reloading[0]["MONOTONIC_USEC"].isdigit()
        assert reload.index(reloading[0]) < len(reload) - 1  # RELOADING=1, then READY=1

        daemon.signal(signal.SIGTERM)
        assert notify_socket.receive_until("STOPPING", "1")[-1]["STATUS"] == "stopping"
        assert daemon.process.wait(timeout=15) == 0
        elapsed = time.monotonic() - started
    finally:
        daemon.kill()
    pings = notify_socket.count("WATCHDOG")
    # Pings come every WATCHDOG_USEC/2 from a sleep that never wakes early: never more often than that.
    assert 3 <= pings <= elapsed / (WATCHDOG_S / 2) + 1
    assert daemon.events("watchdog_withheld") == []


def test_notifier_path_socket_and_no_socket(tmp_path: Path) -> None:
    """A filesystem NOTIFY_SOCKET gets the message; without one, sending is a no-op that reports False."""
    path = str(tmp_path / "notify.sock")
    listener = NotifySocket(path)
    try:
        notifier = Notifier(path)
        assert notifier.ready("serving 2 keys (fresh)")
        assert listener.receive_until("READY", "1") == [{"READY": "1", "STATUS": "serving 2 keys (fresh)"}]
        notifier.close()
    finally:
        listener.sock.close()
    assert Notifier(None).watchdog() is False
    assert socket_address("vsock:2:1234") is None


def test_notifier_survives_a_missing_socket(tmp_path: Path) -> None:
    """A NOTIFY_SOCKET nobody listens on never raises: the send reports False."""
    notifier = Notifier(str(tmp_path / "gone.sock"))
    assert notifier.enabled
    assert notifier.stopping() is False
    notifier.close()


def test_config_reads_systemd_environment() -> None:
    """NOTIFY_SOCKET and WATCHDOG_USEC are read by config; a watchdog meant for another PID is ignored."""
    base = {"JWKSD_SECRET_ID": "s", "NOTIFY_SOCKET": "@sd"}
    assert load_config(None, base).systemd == SystemdConfig(notify_socket="@sd")
    mine = {**base, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    assert load_config(None, mine).systemd == SystemdConfig(notify_socket="@sd", watchdog_s=30.0)
    other = {**mine, "WATCHDOG_PID": str(os.getpid() + 1)}
    assert load_config(None, other).systemd.watchdog_s is None
    with pytest.raises(ConfigError) as error:
        load_config(None, {**base, "WATCHDOG_USEC": "soon"})
    assert error.value.problems == ["WATCHDOG_USEC = 'soon': expected a whole number of microseconds > 0"]
