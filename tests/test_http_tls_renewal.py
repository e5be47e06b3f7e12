"""A real `jwksd serve` over HTTPS: Mozilla's intermediate policy, renewals on SIGHUP and on a file change,
keep-alive connections across them, and a broken renewal that keeps the old pair."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.daemon_process import SERVE, Daemon, base_env, toml_config, wait_until
from tests.keys import jwk_set
from tests.signing import signing_key
from tests.tls_ca import Leaf, TestCA


def serving_sections(tmp_path: Path, cert: Path, key: Path, **server: object) -> dict[str, dict[str, object]]:
    """A file source with one RSA key, TLS from ``cert`` and ``key``, a long keep-alive and a quick file watch."""
    keys = tmp_path / "keys.json"
    keys.write_text(jwk_set(signing_key("RS256", "key-0").jwk))
    return {"source": {"kind": "file", "path": str(keys)},
            "server": {"tls_cert_file": str(cert), "tls_key_file": str(key), "keepalive_timeout_s": 120,
                       "tls_watch_interval_s": 0.2, **server},
            "refresh": {"interval_s": 3600, "max_age_s": 3600}}


@pytest.fixture
def pair(tmp_path: Path, ca: TestCA) -> tuple[Path, Path, Leaf]:
    leaf = ca.issue()
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    leaf.write(cert, key)
    return cert, key, leaf


@pytest.fixture
def daemon(tmp_path: Path, ca: TestCA, pair: tuple[Path, Path, Leaf]) -> Iterator[Daemon]:
    cert, key, _ = pair  # renewals by SIGHUP only: the file watch looks once an hour
    sections = serving_sections(tmp_path, cert, key, tls_watch_interval_s=3600)
    with Daemon.from_toml(tmp_path, sections, tls=ca.client_context()) as running:
        yield running


def served_serial(daemon: Daemon, context: ssl.SSLContext | None = None, server_name: str | None = "localhost") -> int:
    """The serial number of the leaf a new connection is handed (``server_name`` None: no SNI)."""
    assert daemon.tls is not None
    context = context or (daemon.tls if server_name else _no_sni(daemon.tls))
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=server_name) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _no_sni(context: ssl.SSLContext) -> ssl.SSLContext:
    """A copy of the client context that sends no server name (as a client dialling an IP address does)."""
    bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bare.check_hostname = False
    bare.load_verify_locations(cadata=context.get_ca_certs(binary_form=True)[0])
    return bare


class KeepAlive:
    """One HTTPS connection held open across a renewal; a context manager that closes it."""

    def __init__(self, daemon: Daemon) -> None:
        self.connection = http.client.HTTPSConnection("localhost", daemon.port, timeout=5, context=daemon.tls)
        assert self.get() == 200
        self.socket = self.connection.sock
        der = self.socket.getpeercert(binary_form=True)
        self.serial = x509.load_der_x509_certificate(der).serial_number

    def __enter__(self) -> KeepAlive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.connection.close()

    def get(self) -> int:
        self.connection.request("GET", "/.well-known/jwks.json")
        response = self.connection.getresponse()
        response.read()
        return response.status

    def still_works(self) -> bool:
        """A request on the very same socket (no reconnect) answers 200 under the old certificate."""
        status = self.get()
        same = self.connection.sock is self.socket
        serial = x509.load_der_x509_certificate(self.connection.sock.getpeercert(binary_form=True)).serial_number
        return status == 200 and same and serial == self.serial


class Hammer:
    """New connections, one request each, on a thread until stopped: every one must get a 200."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.serials: set[int] = set()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            connection = http.client.HTTPSConnection("localhost", self.daemon.port, timeout=5,
                                                     context=self.daemon.tls)
            try:
                connection.request("GET", "/.well-known/jwks.json")
                response = connection.getresponse()
                response.read()
                der = connection.sock.getpeercert(binary_form=True)
                self.serials.add(x509.load_der_x509_certificate(der).serial_number)
                if response.status != 200:
                    self.failures.append(f"status {response.status}")
            except OSError as exc:
                self.failures.append(repr(exc))
            finally:
                connection.close()

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_https_policy(daemon: Daemon, pair: tuple[Path, Path, Leaf]) -> None:
    """The chain verifies against the root alone; TLS 1.1 and a cipher outside Mozilla's intermediate list fail."""
    assert served_serial(daemon) == pair[2].serial
    assert daemon.get()[0] == 200
    assert daemon.tls is not None
    old = _no_sni(daemon.tls)
    with warnings.catch_warnings():  # the client side of the refusal needs the deprecated version
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError):
        served_serial(daemon, old, None)
    weak = _no_sni(daemon.tls)
    weak.maximum_version = ssl.TLSVersion.TLSv1_2
    weak.set_ciphers("AES128-GCM-SHA256")  # RSA key exchange: no forward secrecy
    with pytest.raises(ssl.SSLError):
        served_serial(daemon, weak, None)
    strong = _no_sni(daemon.tls)
    strong.maximum_version = ssl.TLSVersion.TLSv1_2
    strong.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    assert served_serial(daemon, strong, None) == pair[2].serial


@pytest.mark.parametrize(("how", "trigger"), [("in_place", "SIGHUP"), ("in_place", "file_change"),
                                              ("symlink_swap", "SIGHUP"), ("symlink_swap", "file_change")])
def test_renewal_served_to_new_connections(tmp_path: Path, ca: TestCA, how: str, trigger: str) -> None:
    """A pair renewed in place or by a symlink swap (as certbot and Kubernetes do) is served to new connections
    after SIGHUP or the file watch alone; an open keep-alive connection goes on and no request is refused."""
    first, renewed = ca.issue(), ca.issue(valid_days=25)
    for name, leaf in (("v1", first), ("v2", renewed)):
        (tmp_path / name).mkdir()
        leaf.write(tmp_path / name / "tls.crt", tmp_path / name / "tls.key")
    (tmp_path / "live").symlink_to("v1")
    cert, key = tmp_path / "live" / "tls.crt", tmp_path / "live" / "tls.key"
    watch_s = 0.2 if trigger == "file_change" else 3600  # with SIGHUP, only the signal can load the new pair
    # Both event loops hand handshakes over: asyncio's for the SIGHUP cases, uvloop (auto) for the others.
    loop = "asyncio" if trigger == "SIGHUP" else "auto"
    sections = serving_sections(tmp_path, cert, key, tls_watch_interval_s=watch_s, event_loop=loop)
    with Daemon.from_toml(tmp_path, sections, tls=ca.client_context()) as daemon:
        with KeepAlive(daemon) as held, Hammer(daemon) as hammer:
            wait_until(lambda: hammer.serials, "a first connection under the first pair")
            if how == "in_place":
                renewed.write(cert, key)
            else:
                (tmp_path / "next").symlink_to("v2")
                os.replace(tmp_path / "next", tmp_path / "live")
            if trigger == "SIGHUP":
                daemon.signal(signal.SIGHUP)
            event = daemon.wait_event("tls_reloaded")
            assert event["trigger"] == trigger and event["subject"] == "CN=localhost"
            wait_until(lambda: renewed.serial in hammer.serials, "a new connection under the renewed pair")
            assert served_serial(daemon) == renewed.serial
            assert served_serial(daemon, server_name=None) == renewed.serial  # clients without SNI too
            assert held.still_works() and held.serial == first.serial
        assert hammer.failures == [] and first.serial in hammer.serials
        assert daemon.metric("jwksd_tls_reloads_total", outcome="applied") == 1
        assert daemon.metric("jwksd_tls_certificate_expiry_timestamp_seconds") == int(renewed.not_after.timestamp())


def test_broken_renewal_keeps_the_old_pair(daemon: Daemon, ca: TestCA, pair: tuple[Path, Path, Leaf]) -> None:
    """A renewed certificate with the wrong key keeps the old pair, and the log, metric and /health say why."""
    cert, key, first = pair
    cert.write_bytes(ca.issue().chain_pem)  # the key stays the old one: a mismatch
    daemon.signal(signal.SIGHUP)
    event = daemon.wait_event("tls_reload_rejected")
    reason = f"server.tls_cert_file {str(cert)!r} and server.tls_key_file {str(key)!r}: the key does not match " \
             "the certificate"
    assert event["problems"] == [reason]
    assert served_serial(daemon) == first.serial
    assert daemon.metric("jwksd_tls_reloads_total", outcome="rejected") >= 1
    status, _, body = daemon.metrics_get("/health")  # the public /health has no messages
    check = json.loads(body)["checks"]["tls"]
    assert status == 200 and json.loads(body)["status"] == "warn"
    assert check["status"] == "warn" and check["last_error"]["message"] == reason
    renewed = ca.issue()
    renewed.write(cert, key)
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: served_serial(daemon) == renewed.serial, "the repaired renewal")
    assert json.loads(daemon.get("/health")[2])["checks"]["tls"]["status"] == "pass"


def test_world_readable_key_stops_start(tmp_path: Path, pair: tuple[Path, Path, Leaf]) -> None:
    """serve exits 2 on a key others can read, and check-config says the same."""
    cert, key, _ = pair
    key.chmod(0o644)
    config = tmp_path / "jwksd.toml"
    config.write_text(toml_config(serving_sections(tmp_path, cert, key)))
    expected = f"server.tls_key_file {str(key)!r}: is readable by others than the daemon's user (mode 0644): " \
               "chmod 0600 it"
    for command in (SERVE, (*SERVE[:-1], "check-config")):
        result = subprocess.run([*command, "--config", str(config)], env=base_env(), capture_output=True, text=True,
                                timeout=60, check=False)
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr


def test_renewal_object_reports_and_recovers(tmp_path: Path, ca: TestCA, pair: tuple[Path, Path, Leaf]) -> None:
    """In process: a refused renewal keeps the pair, counts and reports; the next good one clears the report."""
    from jwksd.http.tls_renewal import TlsRenewal
    from jwksd.metrics import Metrics

    cert, key, first = pair
    metrics = Metrics()
    renewal = TlsRenewal(cert, key, metrics, watch_interval_s=3600)
    in_force = renewal.pair
    assert renewal.health()["status"] == "pass" and renewal.health()["last_error"] is None
    key.write_bytes(ca.issue().key_pem)
    assert renewal.reload("SIGHUP") is False
    assert renewal.pair is in_force and renewal.health()["status"] == "warn"
    assert renewal.health()["last_error"]["message"].endswith("the key does not match the certificate")
    assert metrics.registry.get_sample_value("jwksd_tls_reloads_total", {"outcome": "rejected"}) == 1
    renewed = ca.issue(valid_days=30)
    renewed.write(cert, key)
    assert renewal.reload("SIGHUP") is True
    assert renewal.health()["status"] == "pass" and renewal.pair.not_after == int(renewed.not_after.timestamp())
    assert metrics.registry.get_sample_value("jwksd_tls_certificate_expiry_timestamp_seconds") == \
        int(renewed.not_after.timestamp())
    assert first.serial != renewed.serial


async def test_watch_loads_a_change_once_it_holds_still(tmp_path: Path, ca: TestCA,
                                                        pair: tuple[Path, Path, Leaf]) -> None:
    """In process: the watch loads rewritten files after they stay unchanged for one poll, then stays quiet."""
    import asyncio

    from jwksd.http.tls_renewal import TlsRenewal
    from jwksd.metrics import Metrics

    cert, key, _ = pair
    metrics = Metrics()
    renewal = TlsRenewal(cert, key, metrics, watch_interval_s=0.05)
    first = renewal.pair
    task = asyncio.create_task(renewal.watch())
    try:
        ca.issue().write(cert, key)
        for _ in range(200):  # bounded: 10 s
            if renewal.pair is not first:
                break
            await asyncio.sleep(0.05)
        assert renewal.pair is not first
        await asyncio.sleep(0.3)  # several more polls of unchanged files
        assert metrics.registry.get_sample_value("jwksd_tls_reloads_total", {"outcome": "applied"}) == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
