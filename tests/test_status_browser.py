"""/status of real daemons in headless Chromium, and `jwksd status` against them: fresh, last-known-good, a registry."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jwksd.rotation.external import Migration
from jwksd.rotation.incident import revoke
from jwksd.rotation.policy import single
from jwksd.rotation.publish import publish
from jwksd.rotation.rotate import rotate
from jwksd.state import save_last_known_good
from jwksd.status_cli import EXIT_FROM_DISK, EXIT_NOT_READY, EXIT_OK, EXIT_UNREADABLE
from tests.conftest import REGION, Secrets, closed_endpoint, free_port
from tests.daemon_process import DUMMY_AWS, Daemon, base_env, sm_sections, wait_until
from tests.keys import jwk_set, key
from tests.rotation_helpers import DAY, keyring, rotation_config

ROOT = Path(__file__).parent.parent
NODE_DIR = ROOT / "tests" / "node"
SCREENSHOTS = ROOT / "build"
ROTATION = {"rotate_every_s": 10 * DAY, "retire_grace_s": 7 * DAY}


async def registry_in_every_status(endpoint: str, now: int) -> tuple[dict[str, Any], dict[str, str]]:
    """A registry whose keys are expired, retired, active, revoked and pending, built by the rotator's own steps.

    22 days ago the first key; every 10 days a promotion; a retired key expires after 7 days; yesterday the
    pending key was revoked (which makes the next one), and a key found in a secret was adopted (external).
    Each step is followed a second later by another, which records the publish of the key it made (the
    registry is what is served). Returns the [rotation] settings and kid -> status.
    """
    config = rotation_config(endpoint, **ROTATION)
    base = now - 22 * DAY
    ahead = config.publish_ahead_s + 1
    async with keyring(config) as ring:
        for at in (base, base + ahead, base + 10 * DAY + ahead, base + 18 * DAY, base + 20 * DAY + ahead):
            await rotate(ring, at)
            await rotate(ring, at + 1)
        pending = single(await ring.registry.records(), "pending")
        assert pending is not None
        await revoke(ring, pending.kid, base + 21 * DAY, emergency=False, max_age_s=600)
        await rotate(ring, base + 21 * DAY + 1)
    async with keyring(config, create_table=False, publish=True) as ring:  # a key set moved under rotation
        await publish(ring, Secrets(endpoint).create(jwk_set(key(7))), now=base + 21 * DAY + 2,
                      migration=Migration(adopt=True))
        records = await ring.registry.records()
    settings = {"table": config.table, "key_spec": config.key_spec, "alg": config.alg, "region": REGION,
                "dynamodb_endpoint_url": endpoint, "kms_endpoint_url": endpoint, **ROTATION}
    return settings, {r.kid: r.status for r in records}


@pytest.fixture(scope="module")
def states(tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str) -> Iterator[dict[str, Any]]:
    """Three running daemons: fresh from moto, AWS down on last-known-good, the dynamodb source on a full registry."""
    import asyncio

    secrets = Secrets(moto_endpoint)
    fresh_dir, lkg_dir, registry_dir = (tmp_path_factory.mktemp(name) for name in ("fresh", "lkg", "registry"))
    state_dir = lkg_dir / "state"
    state_dir.mkdir()
    day_ago = time.time() - DAY
    save_last_known_good(state_dir, (key(7),), fetched_at=day_ago, changed_at=day_ago,
                         sources={"secretsmanager": (key(7),)})
    with pytest.MonkeyPatch.context() as env:  # the autouse dummy credentials come after module fixtures
        for name, value in DUMMY_AWS.items():
            env.setenv(name, value)
        rotation, statuses = asyncio.run(registry_in_every_status(moto_endpoint, int(time.time())))
    daemons: dict[str, Daemon] = {}
    try:
        daemons["fresh"] = Daemon.from_toml(fresh_dir, sm_sections(secrets.create(jwk_set(key(0), key(1)))),
                                            endpoint=moto_endpoint)
        daemons["last-known-good"] = Daemon.from_toml(
            lkg_dir, {**sm_sections("jwksd-test/down"), "state": {"state_dir": str(state_dir)}},
            endpoint=closed_endpoint())
        daemons["registry"] = Daemon.from_toml(registry_dir, {
            "source": {"kind": "dynamodb", "table": rotation["table"], "endpoint_url": moto_endpoint,
                       "kms_endpoint_url": moto_endpoint, "read_timeout_s": 2.0},
            "rotation": rotation, "log": {"level": "info"}})
        yield {"daemons": daemons, "statuses": statuses}
    finally:
        for daemon in daemons.values():
            daemon.stop()


def browse(daemons: dict[str, Daemon]) -> dict[str, Any]:
    """Load each daemon's /status in one Chromium (tests/node/status_page.mjs); screenshots go to build/."""
    node = shutil.which("node")
    assert node, "node is required (Debian package nodejs)"
    assert (NODE_DIR / "node_modules" / "playwright-core").is_dir(), "run `make test` (npm ci --prefix tests/node)"
    assert Path("/usr/bin/chromium").exists(), "chromium is required (Debian package chromium; make test installs it)"
    SCREENSHOTS.mkdir(exist_ok=True)
    targets = [f"{name}=http://127.0.0.1:{daemon.metrics_port}/status" for name, daemon in daemons.items()]
    result = subprocess.run([node, "status_page.mjs", str(SCREENSHOTS), *targets], cwd=NODE_DIR, capture_output=True,
                            text=True, timeout=120, check=False, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})
    assert result.returncode == 0, result.stderr[-3000:]
    pages: dict[str, Any] = json.loads(result.stdout)
    return pages


def test_status_page_in_chromium(states: dict[str, Any]) -> None:
    """Each state renders its kids, rung and (for the registry) bars in version order, with no console error or CSP
    violation."""
    daemons, statuses = states["daemons"], states["statuses"]
    pages = browse(daemons)
    for name, page in pages.items():
        assert (page["httpStatus"], page["violations"]) == (200, []), name
        assert [m for m in page["console"] if m["type"] in ("error", "warning", "pageerror")] == [], name
        assert page["csp"].startswith("default-src 'none'; style-src 'sha256-"), name
        assert page["badgeBackground"] not in (None, "rgba(0, 0, 0, 0)"), f"{name}: the stylesheet was not applied"
        assert (SCREENSHOTS / f"status-{name}.png").stat().st_size > 10_000
    fresh, lkg, registry = pages["fresh"], pages["last-known-good"], pages["registry"]
    assert (fresh["status"], fresh["rung"], fresh["kids"]) == ("pass", "fresh", ["key-0", "key-1"])
    assert [(s["name"], s["state"]) for s in fresh["sources"]] == [("secretsmanager", "pass")]
    assert fresh["outcomes"] == ["success"] and "added: key-0, key-1" in fresh["outcomeTitles"][0]
    assert (lkg["status"], lkg["rung"], lkg["kids"]) == ("warn", "last-known-good", ["key-7"])
    assert lkg["sources"][0]["state"] == "warn" and "network" in lkg["sources"][0]["text"]
    assert set(lkg["outcomes"]) == {"fetch_error"}  # retried with backoff meanwhile
    published = sorted(kid for kid, status in statuses.items() if status in ("pending", "active", "retired",
                                                                             "external"))
    assert (registry["rung"], sorted(registry["kids"])) == ("fresh", published)
    bars = registry["bars"]
    assert [(bar["version"], bar["status"]) for bar in bars] == [
        (1, "expired"), (2, "retired"), (3, "active"), (4, "revoked"), (5, "pending"), (6, "external")]
    assert [bar["top"] for bar in bars] == sorted(bar["top"] for bar in bars)  # top to bottom, oldest first
    assert {bar["kid"]: bar["status"] for bar in bars} == statuses
    phases = {bar["version"]: [p["phase"] for p in bar["phases"]] for bar in bars}
    assert phases == {1: ["created", "published", "active", "retired"],
                      2: ["created", "published", "active", "retired"], 3: ["created", "published", "active"],
                      4: ["created", "published"], 5: ["created", "published"], 6: ["external"]}
    for bar in bars:  # each phase starts where the one before it ended, left to right
        lefts = [p["left"] for p in bar["phases"]]
        assert lefts == sorted(lefts), bar
    assert [bar["ends"] for bar in bars] == [["expired"], [], [], ["revoked"], [], []]
    assert registry["now"] is not None and "version 2 expires" in registry["next"]
    assert "rotate every 10d, publish ahead 25m, retire grace 7d, tokens up to 1h, ECC_NIST_P256 ES256 (from the " \
           "registry)" in registry["text"]


def status_command(url: str) -> tuple[int, str]:
    """`jwksd status --url URL` as a script runs it (no terminal: no colour)."""
    result = subprocess.run([sys.executable, "-m", "jwksd", "status", "--url", url], capture_output=True, text=True,
                            timeout=30, check=False, env=base_env(), cwd=ROOT)
    return result.returncode, result.stdout + result.stderr


def test_status_command_exit_codes_and_summary(states: dict[str, Any], tmp_path: Path) -> None:
    """0 from the sources, 3 from disk, 4 not ready, 5 unreachable; the summary names the rung and each kid."""
    daemons = states["daemons"]
    code, out = status_command(f"http://127.0.0.1:{daemons['fresh'].metrics_port}")
    assert code == EXIT_OK and out.startswith("status    pass (ready), serving fresh")
    assert "\nkeys      key-0  RSA  RS256  secretsmanager  since " in out and "\033[" not in out
    code, out = status_command(f"http://127.0.0.1:{daemons['last-known-good'].metrics_port}/")
    assert code == EXIT_FROM_DISK and out.startswith("status    warn (ready), serving last-known-good")
    assert re.search(r"secretsmanager  secretsmanager  never  [1-9][0-9]* failures  next in [0-9]+[sm]  network: ", out)
    code, out = status_command(f"http://127.0.0.1:{daemons['registry'].metrics_port}/status.json")
    assert code == EXIT_OK
    assert "\nregistry  jwksd-test-" in out
    assert ": 1 expired, 1 retired, 1 active, 1 revoked, 1 pending, 1 external\n" in out
    assert "\nnext      version 2 expires at " in out
    unready = Daemon.from_toml(tmp_path, sm_sections("jwksd-test/none"), endpoint=closed_endpoint(), wait_ready=False)
    with unready:
        wait_until(lambda: unready.metrics_get("/status.json")[0] == 200, "the metrics listener")
        code, out = status_command(f"http://127.0.0.1:{unready.metrics_port}")
    assert code == EXIT_NOT_READY and out.startswith("status    fail (NOT READY), serving none")
    code, out = status_command(f"http://127.0.0.1:{free_port()}")
    assert code == EXIT_UNREADABLE and "jwksd status: cannot read http://127.0.0.1:" in out


def test_status_is_not_on_the_public_listener(states: dict[str, Any]) -> None:
    """The JWKS listener of a default config has no /status or /status.json."""
    daemon = states["daemons"]["fresh"]
    assert daemon.get("/status")[0] == 404 and daemon.get("/status.json")[0] == 404
    assert daemon.metrics_get("/status.json")[0] == 200
