"""The command line contract: serve (signals, logs), check-config and validate, as other tools drive them."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jwksd.__main__ import main
from tests.conftest import REGION, Secrets, free_port
from tests.daemon_process import JWKS, Daemon, base_env, wait_until
from tests.keys import jwk_set, kid_map, rsa_jwk, rsa_key


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "jwksd", *args], input=stdin, capture_output=True, timeout=60,
                          check=False)


def test_check_config_ok(tmp_path: Path) -> None:
    """check-config exits 0 on a valid file and says what would run."""
    path = tmp_path / "c.toml"
    path.write_text('[source]\nsecret_id = "s"\n')
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert b"config ok" in result.stdout


def test_check_config_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """check-config exits 2 and prints every problem naming key, value and expectation."""
    path = tmp_path / "c.toml"
    path.write_text('[source]\nsecret_id = "s"\n[refresh]\ninterval_s = -1\n')
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "refresh.interval_s = -1: expected a number > 0" in err


def test_serve_refuses_bad_config(tmp_path: Path) -> None:
    """serve stops at start, exit 2, on a bad value."""
    env = {**os.environ, "JWKSD_SECRET_ID": "s", "JWKSD_LISTEN": "nowhere"}
    result = subprocess.run([sys.executable, "-m", "jwksd", "serve"], env=env, capture_output=True, timeout=60,
                            check=False)
    assert result.returncode == 2
    assert b"server.listen = 'nowhere'" in result.stderr


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another process already listens on."""
    with socket.create_server(("127.0.0.1", 0)) as holder:
        yield holder.getsockname()[1]


def test_serve_names_a_port_already_taken(taken_port: int, moto_endpoint: str) -> None:
    """A listen address in use stops serve with exit 2 and one line naming the setting, not a traceback."""
    env = base_env(JWKSD_SECRET_ID="s", JWKSD_LISTEN=f"127.0.0.1:{taken_port}", JWKSD_METRICS_LISTEN="off",
                   AWS_ENDPOINT_URL=moto_endpoint)
    result = subprocess.run([sys.executable, "-m", "jwksd"], env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 2, result.stderr
    assert (f"jwksd: cannot start: invalid configuration:\n  - server.listen = '127.0.0.1:{taken_port}': cannot "
            "listen there (address already in use)\n") in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_names_a_port_already_taken(taken_port: int) -> None:
    """`jwksd demo --port` on a port in use exits 2 saying so and how to pick another, not with a traceback."""
    env = base_env(JWKSD_METRICS_LISTEN="off")
    result = subprocess.run([sys.executable, "-m", "jwksd", "demo", "--port", str(taken_port)], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert (f"jwksd demo: cannot start: invalid configuration:\n  - server.listen = '127.0.0.1:{taken_port}': "
            "cannot listen there (address already in use)\n  another jwksd may be running; `jwksd demo --port N` "
            "picks another port") in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_invalid_fallback(tmp_path: Path) -> None:
    """An invalid fallback file stops the daemon at start with a clear message."""
    fallback = tmp_path / "fallback.json"
    fallback.write_text('{"keys": []}')
    env = {**os.environ, "JWKSD_SECRET_ID": "s", "JWKSD_LISTEN": f"127.0.0.1:{free_port()}",
           "JWKSD_METRICS_LISTEN": "off", "JWKSD_FALLBACK_FILE": str(fallback),
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    result = subprocess.run([sys.executable, "-m", "jwksd"], env=env, capture_output=True, timeout=60, check=False)
    assert result.returncode == 2
    assert f"fallback_file {str(fallback)!r} is not a valid key set" in result.stderr.decode()


@pytest.mark.parametrize("form", [jwk_set, kid_map])
def test_validate_accepts(tmp_path: Path, form: Any) -> None:
    """validate exits 0 and lists the kids that would be served."""
    path = tmp_path / "doc.json"
    path.write_text(form(rsa_jwk(rsa_key(0), "a")))
    result = run_cli("validate", "--json", str(path))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"outcome": "accept", "served_kids": ["a"], "dropped": [], "reason": None}


def test_validate_drops_from_stdin() -> None:
    """validate - reads stdin; a partly valid document exits 0 with the drops listed."""
    document = jwk_set(rsa_jwk(rsa_key(0), "a"), {"kty": "oops", "kid": "b"}).encode()
    result = run_cli("validate", "--json", "-", stdin=document)
    assert result.returncode == 0
    out = json.loads(result.stdout)
    assert (out["outcome"], out["served_kids"]) == ("drop_keys", ["a"])
    assert [(d["kid"], d["reason"]) for d in out["dropped"]] == [("b", "bad_kty")]


def test_validate_rejects(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """validate exits 1 on a rejected document and names the reason."""
    path = tmp_path / "doc.json"
    path.write_text("[]")
    assert main(["validate", "--json", str(path)]) == 1
    out = json.loads(capsys.readouterr().out)
    assert (out["outcome"], out["served_kids"], out["reason"]) == ("reject_document", [], "not_an_object")


def test_validate_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """validate exits 2 on a missing file or a bad config."""
    assert main(["validate", str(tmp_path / "missing.json")]) == 2
    bad = tmp_path / "c.toml"
    bad.write_text("[validation]\nmax_keys = 0\n")
    (tmp_path / "d.json").write_text("{}")
    assert main(["validate", "--config", str(bad), str(tmp_path / "d.json")]) == 2
    assert "validation.max_keys = 0" in capsys.readouterr().err


def test_validate_applies_config(tmp_path: Path) -> None:
    """The [validation] section applies: require_thumbprint_kid drops a key whose kid is not its thumbprint."""
    config = tmp_path / "c.toml"
    config.write_text("[validation]\nrequire_thumbprint_kid = true\n")
    doc = tmp_path / "d.json"
    doc.write_text(jwk_set(rsa_jwk(rsa_key(0), "not-a-thumbprint")))
    result = run_cli("validate", "--json", "--config", str(config), str(doc))
    assert result.returncode == 1
    assert json.loads(result.stdout)["reason"] == "no_valid_keys"


@pytest.fixture
def daemon(secrets: Secrets, tmp_path: Path) -> Iterator[tuple[Daemon, str]]:
    """A real `jwksd serve` process against the moto server, logging JSON to a file; and its secret's id."""
    secret = secrets.create(jwk_set(rsa_jwk(rsa_key(0), "first")))
    env = base_env(JWKSD_SECRET_ID=secret, JWKSD_LISTEN=f"127.0.0.1:{free_port()}",
                   JWKSD_METRICS_LISTEN=f"127.0.0.1:{free_port()}", JWKSD_REFRESH_INTERVAL_S="3600",
                   JWKSD_MAX_AGE_S="3600", JWKSD_STATE_DIR=str(tmp_path),
                   AWS_ENDPOINT_URL_SECRETS_MANAGER=secrets.endpoint, AWS_REGION=REGION)
    running = Daemon.from_env(env, tmp_path / "jwksd.log")
    try:
        # Ready comes with the swap; the refresh's log line follows once last-known-good is written.
        running.wait_event("refresh")
        yield running, secret
    finally:
        running.kill()


def test_sigusr1_forces_refresh(daemon: tuple[Daemon, str], secrets: Secrets) -> None:
    """SIGUSR1 makes a running daemon refresh now, not at the next interval."""
    running, secret = daemon
    secrets.put(secret, jwk_set(rsa_jwk(rsa_key(1), "second")))
    running.signal(signal.SIGUSR1)
    wait_until(lambda: b'"second"' in running.get(JWKS)[2], "the refreshed set")


def test_sigterm_exits_cleanly_and_logs_are_clean(daemon: tuple[Daemon, str]) -> None:
    """SIGTERM stops the daemon with exit 0 in a few seconds; logs are JSON lines without key material."""
    running, _ = daemon
    assert running.get(JWKS)[0] == 200
    running.signal(signal.SIGTERM)
    assert running.process.wait(timeout=10) == 0
    events = [event["event"] for event in running.events()]
    assert "refresh" in events and "stopped" in events
    modulus = rsa_jwk(rsa_key(0), "first")["n"]
    text = running.log_path.read_text()
    assert modulus not in text and modulus[:40] not in text
    assert "testing" not in text  # the dummy credentials


def test_event_loop_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """asyncio is asyncio; auto takes uvloop only when it imports; uvloop demanded but missing is a config error."""
    from jwksd.__main__ import event_loop
    from jwksd.errors import ConfigError

    assert event_loop("asyncio") == (None, "asyncio")
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if not installed
    assert event_loop("auto") == (None, "asyncio")
    with pytest.raises(ConfigError, match=re.escape("server.event_loop = 'uvloop': expected uvloop to be installed")):
        event_loop("uvloop")


def test_event_loop_uvloop_when_installed() -> None:
    """With uvloop installed (the test extra has it), auto and uvloop both give its loop factory."""
    import uvloop

    from jwksd.__main__ import event_loop

    assert event_loop("auto") == (uvloop.new_event_loop, "uvloop")
