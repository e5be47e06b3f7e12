"""URLs as jwksd shows them: never a password, user name or query token, in check-config, logs or health."""

from __future__ import annotations

import json
import signal
import tomllib
from pathlib import Path
from typing import Any

import pytest

from jwksd.__main__ import main
from jwksd.redact import public_url, shown
from tests.conftest import Secrets, free_port
from tests.daemon_process import Daemon, sm_sections, toml_config, wait_until
from tests.keys import jwk_set, key

PASSWORD, TOKEN = "hunter2-pw", "s3cr3t-token"  # what must never be shown


def test_public_url() -> None:
    """User info, query and fragment are each shown as ***; scheme, host, port and path stay."""
    assert public_url(f"https://alice:{PASSWORD}@idp.example:8443/jwks?token={TOKEN}#x") == \
        "https://***@idp.example:8443/jwks?***#***"
    assert public_url(f"redis://:{PASSWORD}@10.0.0.5:6380/2") == "redis://***@10.0.0.5:6380/2"
    assert public_url("https://idp.example/jwks") == "https://idp.example/jwks"
    assert public_url("http://[::1") == "<not a URL>"
    assert shown([f"https://u:{PASSWORD}@a.example/j", 3]) == ["https://***@a.example/j", 3]


def bad_http_source(work: Path) -> Path:
    """A config whose http source URL carries a password and a token, and is refused (plain http, not loopback)."""
    path = work / "jwksd.toml"
    path.write_text(toml_config({"source": {"kind": "http", "url": f"http://alice:{PASSWORD}@idp.example/jwks"
                                                                    f"?token={TOKEN}"}}))
    return path


def test_check_config_never_shows_url_credentials(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """check-config names the refused URL without its user info and query."""
    assert main(["check-config", "--config", str(bad_http_source(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert "source.url = 'http://***@idp.example/jwks?***': expected an https:// URL" in err
    for secret in (PASSWORD, TOKEN, "alice"):
        assert secret not in err


def test_reload_rejected_log_never_shows_url_credentials(tmp_path: Path, moto_endpoint: str,
                                                         secrets: Secrets) -> None:
    """A SIGHUP to a config with a bad URL logs reload_rejected naming it without its password or token."""
    with Daemon.from_toml(tmp_path, sm_sections(secrets.create(jwk_set(key(0)))), endpoint=moto_endpoint) as daemon:
        config = tomllib.loads((tmp_path / "jwksd.toml").read_text())
        config["source"] = {"kind": "http", "url": f"http://alice:{PASSWORD}@idp.example/jwks?token={TOKEN}"}
        (tmp_path / "jwksd.toml").write_text(toml_config(config))
        daemon.signal(signal.SIGHUP)
        event = daemon.wait_event("reload_rejected")
        assert any(p.startswith("source.url = 'http://***@idp.example/jwks?***': expected")
                   for p in event["problems"])
    log = daemon.log_path.read_text()
    for secret in (PASSWORD, TOKEN):
        assert secret not in log


def test_failing_http_source_never_shows_url_credentials(tmp_path: Path) -> None:
    """An http source whose URL holds a password and a token fails: logs and both /health documents omit them."""
    port = free_port()  # nothing listens there: every fetch fails
    url = f"http://alice:{PASSWORD}@127.0.0.1:{port}/jwks?token={TOKEN}"
    sections: dict[str, dict[str, Any]] = {
        "source": {"kind": "http", "url": url, "allow_insecure_loopback": True, "max_retries": 0},
        "refresh": {"interval_s": 3600, "max_age_s": 3600}}
    with Daemon.from_toml(tmp_path, sections, wait_ready=False) as daemon:
        daemon.wait_event("refresh")
        wait_until(lambda: daemon.metrics_get("/health")[0] == 503, "the detailed /health")
        public, detailed = daemon.get("/health")[2].decode(), daemon.metrics_get("/health")[2].decode()
        message = json.loads(detailed)["checks"]["jwks"]["last_error"]["message"]
        assert message.startswith(f"GET http://***@127.0.0.1:{port}/jwks?***: ")
    for text in (public, detailed, daemon.log_path.read_text()):
        for secret in (PASSWORD, TOKEN, "alice"):
            assert secret not in text
