"""`jwksd status`: where it looks by default, colour only on a terminal without NO_COLOR, the shared cache line."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from jwksd.status_cli import DEFAULT_URL, EXIT_OK, EXIT_USAGE, Paint, default_url, run_status, summary
from tests.conftest import HMAC_KEY, Secrets
from tests.daemon_helpers import start
from tests.keys import jwk_set, key
from tests.test_fleet_cache import fleet_config
from tests.test_http_status import side


class Terminal(io.StringIO):
    """Standard output as a terminal."""

    def isatty(self) -> bool:
        return True


def test_default_url_is_the_configs_metrics_listener(tmp_path: Path) -> None:
    """No config: the default listener; --config or JWKSD_CONFIG: its server.metrics_listen; "off": a usage error."""
    config = tmp_path / "jwksd.toml"
    config.write_text('[source]\nsecret_id = "s"\n[server]\nmetrics_listen = "127.0.0.2:9999"\n')
    assert default_url(None, {}) == DEFAULT_URL == "http://127.0.0.1:9464"
    assert default_url(str(config), {}) == default_url(None, {"JWKSD_CONFIG": str(config)}) == "http://127.0.0.2:9999"
    config.write_text('[source]\nsecret_id = "s"\n[server]\nmetrics_listen = "off"\n')
    assert run_status(None, str(config), out=io.StringIO(), environ={}) == EXIT_USAGE


async def test_colour_only_on_a_terminal_without_no_color(aiohttp_client: Any, secrets: Secrets, redis: Any,
                                                          tmp_path: Path) -> None:
    """A terminal gets ANSI colour, NO_COLOR or a pipe plain text; the shared cache's state has its own line."""
    key_file = tmp_path / "hmac.key"
    key_file.write_bytes(HMAC_KEY)
    config = fleet_config(secrets.endpoint, secrets.create(jwk_set(key(0))), redis.url, hmac_key_file=key_file)
    status = await side(aiohttp_client, await start(aiohttp_client, config))
    url = str(status.make_url(""))
    outputs = []
    for out, environ in ((Terminal(), {}), (Terminal(), {"NO_COLOR": "1"}), (io.StringIO(), {})):
        assert await asyncio.to_thread(run_status, url, None, out=out, environ=environ) == EXIT_OK
        outputs.append(out.getvalue())
    coloured, no_color, piped = outputs
    assert "\033[32mpass\033[0m (ready), serving \033[32mfresh\033[0m" in coloured
    assert "\033[" not in no_color and "\033[" not in piped
    assert piped.splitlines()[3] == "cache     reachable"
    doc = await (await status.get("/status.json")).json()
    assert doc["shared_cache"] == {"url": redis.url, "reachable": True, "last_error": None}


@pytest.mark.parametrize("bad", ["not json", '{"version": 2}', '{"version": 1, "served": []}'])
async def test_a_document_it_does_not_know_is_unreadable(aiohttp_client: Any, bad: str) -> None:
    """Not JSON, another version, or a version 1 missing its members: exit 5 naming the URL, nothing on stdout."""
    async def answer(request: web.Request) -> web.Response:
        return web.Response(text=bad)

    app = web.Application()
    app.router.add_get("/status.json", answer)
    server = await aiohttp_client(app, server_kwargs={"host": "127.0.0.1"})
    out = io.StringIO()
    assert await asyncio.to_thread(run_status, str(server.make_url("")), None, out=out, environ={}) == 5
    assert out.getvalue() == ""


def test_control_characters_from_the_document_are_shown_not_sent() -> None:
    """An escape sequence in a source's name or error (another host's document, via --url) is printed as \\xNN."""
    doc = {"generated_at": 1000.0, "status": "warn", "ready": True, "jwksd": "0.1.0\x07", "shared_cache": None,
           "served": {"rung": "stale", "age_s": 5.0, "keys": []}, "registry": None,
           "refreshes": {"completed": 1, "history": []},
           "sources": [{"name": "web\x1b]0;owned\x07", "kind": "http", "last_success": None,
                        "consecutive_failures": 1, "next_due": None,
                        "last_error": {"code": "network", "message": "\x1b[2J\x1b[31mfake\r\nstatus pass", "at": 990}}]}
    printed = summary(doc, Paint(False))
    assert "\x1b" not in printed and "\x07" not in printed and "\r" not in printed
    assert "web\\x1b]0;owned\\x07" in printed and "network: \\x1b[2J\\x1b[31mfake\\x0d\\x0astatus pass" in printed
