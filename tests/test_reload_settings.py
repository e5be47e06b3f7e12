"""reload.py, setting by setting: SIGHUP to a real `jwksd serve` changes what each reloadable setting governs.

Each row starts a daemon with the setting at one value, checks the behaviour that value gives,
rewrites the file with the other value, sends SIGHUP and checks the behaviour the new value gives.
The two behaviours exclude each other, so a setting that a reload leaves in a component built at
start fails its row. A last test holds the table to the declarations: every setting not marked
restart-only has a row.
"""

from __future__ import annotations

import json
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from jwksd.config import all_settings
from jwksd.validate.jwk import thumbprint
from tests.conftest import Secrets
from tests.daemon_process import Daemon, toml_config, wait_until
from tests.keys import int_b64, jwk_set, key
from tests.redis_server import RedisServer

# Settings a running `serve` does not use: [rotation] is read by `jwksd keys` (and the signer) only,
# [signer] by `jwksd signer` at its start.
NOT_SERVED = ("rotation.", "signer.")
BIG = 5000  # bytes of the http source's document, between the two max_document_bytes values


@dataclass
class Row:
    """One running daemon of a row: its config, the moto secrets and what the row set up."""

    daemon: Daemon
    sections: dict[str, dict[str, Any]]
    workdir: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def refreshed(self) -> dict[str, Any]:
        """SIGUSR1, then the log line of the refresh it caused."""
        count = len(self.daemon.events("refresh"))
        self.daemon.signal(signal.SIGUSR1)
        return self.daemon.wait_event("refresh", count + 1)

    def jwks(self) -> tuple[int, dict[str, str], bytes]:
        return self.daemon.get()


def next_s(row: Row) -> float:
    """Seconds until the only source is asked again, as the refresh just run scheduled it."""
    return float(next(iter(row.refreshed()["next_s"].values())))


def cache_control(row: Row) -> str:
    status, headers, _ = row.jwks()
    assert status == 200
    return headers["Cache-Control"]


def served(row: Row) -> list[str] | None:
    """The kids served after one refresh, sorted ("" for a key without one); None for a 503."""
    row.refreshed()
    status, _, body = row.jwks()
    return sorted(k.get("kid", "") for k in json.loads(body)["keys"]) if status == 200 else None


def rejected(row: Row, reason: str) -> bool:
    """Whether one refresh rejected the document for ``reason``."""
    before = row.daemon.metric("jwksd_documents_rejected_total", reason=reason)
    row.refreshed()
    return row.daemon.metric("jwksd_documents_rejected_total", reason=reason) > before


def interval(row: Row, value: float) -> None:
    """A successful source is asked again after exactly interval_s (jitter 0)."""
    assert next_s(row) == value


def jitter(row: Row, value: float) -> None:
    """With interval_s 1000 the next fetch is 1000 s away, spread by up to jitter * 1000 (and spread when > 0)."""
    delay = next_s(row)
    assert abs(delay - 1000.0) <= 1000.0 * value
    assert (delay == 1000.0) is (value == 0)


def backoff(row: Row, base: float, cap: float) -> None:
    """A failing source waits between half and all of min(cap, interval, base * 2**(failures - 1))."""
    event = row.refreshed()
    ceiling = min(cap, 3600.0, base * 2 ** (event["consecutive_failures"] - 1))
    assert ceiling / 2 <= float(event["next_s"]["secretsmanager"]) <= ceiling, event


def max_age(row: Row, value: int) -> None:
    assert cache_control(row).startswith(f"public, max-age={value},")


def staleness(row: Row, value: float) -> None:
    """/health passes while the set is younger than max_staleness_s and warns after (here: after 1 s)."""
    expected = "pass" if value > 60 else "warn"
    wait_until(lambda: json.loads(row.daemon.get("/health")[2])["status"] == expected, f"/health {expected}")


def degraded(row: Row, value: int) -> None:
    """A set from disk (the fallback, the source failing) is cached for degraded_max_age_s only."""
    assert cache_control(row) == f"public, max-age={value}"


def swr(row: Row, value: int) -> None:
    assert f"stale-while-revalidate={value}," in cache_control(row)


def sie(row: Row, value: int) -> None:
    assert cache_control(row).endswith(f"stale-if-error={value}")


def state_dir(row: Row, value: str) -> None:
    """After a refresh the served set is in state_dir, the one in force (same content, another directory)."""
    row.refreshed()
    wait_until((row.workdir / value / "last-known-good.json").exists, f"last-known-good.json in {value}")


def fallback(row: Row, value: str | None) -> None:
    """With the source failing: 503 without a fallback file, the file's set once one is named."""
    status, headers, _ = row.jwks()
    assert (status, headers.get("X-JWKS-Source")) == ((503, None) if value is None else (200, "fallback"))


def document_bytes(row: Row, value: int) -> None:
    """The http source's document of BIG bytes is refused under a lower limit and served under a higher one."""
    assert served(row) == (None if value < BIG else ["key-0"])


def max_keys(row: Row, value: int) -> None:
    assert rejected(row, "too_many_keys") is (value < 2)


def max_depth(row: Row, value: int) -> None:
    assert rejected(row, "too_deep") is (value < 4)


def require_kid(row: Row, value: bool) -> None:
    assert served(row) == (["key-0"] if value else ["", "key-0"])


def thumbprint_kid(row: Row, value: bool) -> None:
    assert served(row) == ([THUMBPRINT] if value else sorted(["key-0", THUMBPRINT]))


def secp256k1(row: Row, value: bool) -> None:
    assert served(row) == (["k1", "key-0"] if value else ["key-0"])


def revoked_kids(row: Row, value: tuple[str, ...]) -> None:
    assert served(row) == (["key-0"] if value else ["key-0", "key-1"])


def log_level(row: Row, value: str) -> None:
    """SIGUSR1's info line ("refresh_requested", written before the refresh runs) appears only at info or below."""
    count = len(row.daemon.events("refresh_requested"))
    row.daemon.refresh()
    assert (len(row.daemon.events("refresh_requested")) > count) is (value in ("debug", "info"))


def sources(row: Row, value: str) -> None:
    assert served(row) == (["key-0"] if value == "first" else ["key-1"])


def last_refresh(row: Row) -> dict[str, Any]:
    """The latest refresh's log line: the first one, or the one a reload started (SIGUSR1 would bypass the cache)."""
    row.daemon.wait_event("refresh")
    return row.daemon.events("refresh")[-1]


def shared_interval(row: Row, value: float) -> None:
    """A shared source asks again when its entry goes stale: never later than the interval in force."""
    assert value / 2 < float(last_refresh(row)["next_s"]["secretsmanager"]) <= value


def shared_validation(row: Row, value: int) -> None:
    """The cache validates what it reads with the limits in force: a 2-key entry is written, or refused once read."""
    last_refresh(row)
    assert (row.daemon.metric("jwksd_shared_cache_events_total", event="invalid_entry") > 0) is (value < 2)


def secp256k1_jwk() -> dict[str, Any]:
    numbers = ec.generate_private_key(ec.SECP256K1()).public_key().public_numbers()
    return {"kty": "EC", "kid": "k1", "use": "sig", "alg": "ES256K", "crv": "secp256k1",
            "x": int_b64(numbers.x, 32), "y": int_b64(numbers.y, 32)}


THUMBPRINT = thumbprint(key(1))
NO_KID = {k: v for k, v in key(2).items() if k != "kid"}
DEEP = json.dumps({"keys": [key(0)], "about": {"a": {"b": {}}}})  # nests 4 levels deep


@dataclass(frozen=True)
class Case:
    """A setting, two values, and a check that passes for the behaviour each value gives."""

    setting: str
    before: Any
    after: Any
    check: Callable[[Row, Any], None]
    document: str | None = jwk_set(key(0))  # the secret's content; None: no such secret (the source fails)
    refresh: dict[str, Any] = field(default_factory=dict)  # [refresh] besides interval_s = 3600, jitter = 0
    source: dict[str, Any] = field(default_factory=dict)  # replaces the Secrets Manager [source]
    shared_cache: bool = False
    fallback: bool = False  # state.fallback_file names a valid one-key file
    ready: bool = True  # the daemon serves a set before the reload


CASES = [
    Case("refresh.interval_s", 3600, 100, interval),
    Case("refresh.jitter", 0.0, 0.5, jitter, refresh={"interval_s": 1000}),
    Case("refresh.retry_base_s", 1000, 10, lambda row, v: backoff(row, v, 3600), document=None,
         refresh={"retry_cap_s": 3600}, ready=False),
    Case("refresh.retry_cap_s", 3600, 10, lambda row, v: backoff(row, 1000, v), document=None,
         refresh={"retry_base_s": 1000}, ready=False),
    Case("refresh.max_age_s", 3600, 7200, max_age),
    Case("refresh.max_staleness_s", 86400, 1, staleness),
    Case("http_cache.stale_while_revalidate_s", 60, 5, swr),
    Case("http_cache.stale_if_error_s", 86400, 7, sie),
    Case("http_cache.degraded_max_age_s", 30, 5, degraded, document=None, fallback=True),
    Case("state.state_dir", "a", "b", state_dir),
    Case("state.fallback_file", None, "fallback.json", fallback, document=None, ready=False),
    Case("validation.max_document_bytes", 4096, 65536, document_bytes, document=None, ready=False,
         source={"kind": "http", "url": "", "allow_insecure_loopback": True, "max_retries": 0}),
    Case("validation.max_keys", 5, 1, max_keys, document=jwk_set(key(0), key(1))),
    Case("validation.max_depth", 20, 3, max_depth, document=DEEP),
    Case("validation.require_kid", True, False, require_kid, document=jwk_set(key(0), NO_KID)),
    Case("validation.require_thumbprint_kid", False, True, thumbprint_kid,
         document=jwk_set(key(0), dict(key(1), kid=THUMBPRINT))),
    Case("validation.allow_secp256k1", False, True, secp256k1, document=jwk_set(key(0), secp256k1_jwk())),
    Case("validation.revoked_kids", (), ("key-1",), revoked_kids, document=jwk_set(key(0), key(1))),
    Case("log.level", "info", "warning", log_level),
    Case("sources", "first", "second", sources),
    Case("refresh.interval_s", 3600, 100, shared_interval, shared_cache=True),
    Case("validation.max_keys", 5, 1, shared_validation, document=jwk_set(key(0), key(1)), shared_cache=True),
]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One redis-server for the shared cache rows."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def big_document() -> Iterator[str]:
    """An http upstream on 127.0.0.1 serving a valid one-key document of BIG bytes (a long member before the keys)."""
    body = json.dumps({"about": "", "keys": [key(0)]}).encode()
    body = json.dumps({"about": "x" * (BIG - len(body)), "keys": [key(0)]}).encode()
    assert len(body) == BIG

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    server.shutdown()
    server.server_close()


def sections_for(case: Case, value: Any, row_env: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The config tables of a row with the setting at ``value`` (a None value leaves the key out)."""
    secret = row_env["secrets"][value if case.setting == "sources" else "first"]
    source = dict(case.source or {"secret_id": secret, "max_retries": 0, "connect_timeout_s": 1.0,
                                  "read_timeout_s": 2.0})
    if source.get("kind") == "http":
        source["url"] = row_env["url"]
    sections: dict[str, dict[str, Any]] = {
        "source": source,
        "refresh": {"interval_s": 3600, "max_age_s": 3600, "jitter": 0.0, **case.refresh},
        "log": {"level": "info"},
    }
    if case.fallback:
        sections["state"] = {"fallback_file": str(row_env["workdir"] / "fallback.json")}
    if case.shared_cache:
        sections["shared_cache"] = {"url": row_env["redis"], "namespace": row_env["namespace"],
                                    "hmac_key_file": str(row_env["workdir"] / "hmac.key")}
    section, _, name = case.setting.partition(".")
    if name and value is not None:
        paths = {"state_dir", "fallback_file"}
        sections.setdefault(section, {})[name] = str(row_env["workdir"] / value) if name in paths else value
    return sections


@pytest.mark.parametrize("case", CASES, ids=[f"{c.setting}{' shared' if c.shared_cache else ''}" for c in CASES])
def test_sighup_applies_the_setting(case: Case, secrets: Secrets, tmp_path: Path, request: pytest.FixtureRequest
                                    ) -> None:
    """The behaviour the setting governs follows its new value after SIGHUP, without a restart."""
    first = secrets.create(case.document) if case.document is not None else "jwksd-test/missing"
    env: dict[str, Any] = {"workdir": tmp_path, "secrets": {"first": first, "second": secrets.create(jwk_set(key(1)))},
                           "namespace": f"reload-{uuid.uuid4().hex}"}
    if case.shared_cache:
        env["redis"] = request.getfixturevalue("redis_url")
    if case.source.get("kind") == "http":
        env["url"] = request.getfixturevalue("big_document")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    (tmp_path / "fallback.json").write_text(jwk_set(key(3)))
    (tmp_path / "hmac.key").write_bytes(b"k" * 32)
    daemon = Daemon.from_toml(tmp_path, sections_for(case, case.before, env), endpoint=secrets.endpoint,
                              wait_ready=case.ready)
    try:
        if not case.ready:
            daemon.wait_event("refresh")
        row = Row(daemon, sections_for(case, case.before, env), tmp_path)
        case.check(row, case.before)

        after = sections_for(case, case.after, env)
        server = {"listen": f"127.0.0.1:{daemon.port}", "metrics_listen": f"127.0.0.1:{daemon.metrics_port}"}
        (tmp_path / "jwksd.toml").write_text(toml_config({**after, "server": server}))
        refreshes = len(daemon.events("refresh"))
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: daemon.metric("jwksd_config_reloads_total", outcome="applied") == 1, "reload applied")
        if case.setting != "log.level":  # at level warning, reload_applied (info) is not written
            applied = daemon.wait_event("reload_applied")
            assert (applied["restart_needed"], case.setting in applied["changed"]) == ([], True), applied
        if case.setting.split(".")[0] in ("sources", "refresh", "validation", "state"):
            daemon.wait_event("refresh", refreshes + 1)  # the refresh a reload of these starts at once
        case.check(Row(daemon, after, tmp_path), case.after)
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_every_reloadable_setting_has_a_row() -> None:
    """The table names each setting not declared restart-only (a source's keys count as "sources")."""
    reloadable = {s.key for s in all_settings()
                  if not s.restart and not s.key.startswith(("source.", *NOT_SERVED))} | {"sources"}
    assert {case.setting for case in CASES} == reloadable
