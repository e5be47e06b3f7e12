"""The publisher, the one writer of the served snapshot: merge, swap, persist, metrics, and the start-up ladder."""

from __future__ import annotations

import ast
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

import jwksd
from jwksd.config import Config, LiveConfig, StateConfig, ValidationConfig
from jwksd.metrics import Metrics
from jwksd.publish import Publisher
from jwksd.state import load_last_known_good, save_last_known_good
from jwksd.store import Store
from tests.conftest import FakeClock, Secrets, closed_endpoint
from tests.daemon_helpers import get_jwks, kids_of, metric, sm_config, start
from tests.keys import jwk_set, key


def publisher(clock: FakeClock, state_dir: Path | None = None, fallback: Path | None = None) -> Publisher:
    """A publisher on a store of its own, with its own metrics."""
    config = Config(sources=(), state=StateConfig(state_dir=state_dir, fallback_file=fallback))
    return Publisher(LiveConfig(config), Store(clock), Metrics(), clock)


def sample(pub: Publisher, name: str, **labels: str) -> float:
    value = pub.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


async def test_new_set_is_swapped_persisted_and_counted(clock: FakeClock, tmp_path: Path) -> None:
    """A changed union is served fresh, written to state_dir with each source's share, and the metrics follow."""
    pub = publisher(clock, state_dir=tmp_path)
    assert await pub.publish({"a": (key(1),), "b": (key(0),)}, failing=False) == (["key-0", "key-1"], [], "fresh")
    assert pub.store.snapshot is not None and pub.store.snapshot.kids == ("key-0", "key-1")
    saved = load_last_known_good(tmp_path, ValidationConfig(), now=clock.time())
    assert saved is not None and saved.sources["a"].kids == ("key-1",) and saved.sources["b"].kids == ("key-0",)
    assert sample(pub, "jwksd_keys_served") == 2
    assert sample(pub, "jwksd_serving", source="fresh") == 1
    assert await pub.publish({"a": (key(1),)}, failing=False) == ([], ["key-0"], "fresh")
    assert sample(pub, "jwksd_kids_removed_total") == 1


async def test_same_content_keeps_bytes_and_only_a_success_confirms(clock: FakeClock) -> None:
    """An unchanged set keeps its ETag and Last-Modified; a failed refresh does not reset its age, a good one does."""
    pub = publisher(clock)
    await pub.publish({"a": (key(0),)}, failing=False)
    first = pub.store.snapshot
    assert first is not None
    clock.advance(30)
    assert await pub.publish({"a": (key(0),)}, failing=True) == ([], [], "stale")
    assert pub.store.snapshot is first and pub.store.age_s() == 30
    assert sample(pub, "jwksd_serving", source="stale") == 1
    assert await pub.publish({"a": (key(0),)}, failing=False) == ([], [], "fresh")
    again = pub.store.snapshot
    assert again is not None and again is not first and pub.store.age_s() == 0
    assert (again.etag, again.last_modified) == (first.etag, first.last_modified)


async def test_nothing_delivered_keeps_the_ladder_set(clock: FakeClock, tmp_path: Path) -> None:
    """The fallback stands by until the first fetch fails, is installed then, and stays until a source delivers."""
    fallback = tmp_path / "fallback.json"
    fallback.write_text(jwk_set(key(2)))
    pub = publisher(clock, fallback=fallback)
    assert await pub.restore() is None
    standby = pub.store.standby
    assert pub.store.snapshot is None and standby is not None and standby.kids == ("key-2",)
    assert await pub.publish(None, failing=True) == ([], [], "fallback")
    installed = pub.store.snapshot
    assert installed is standby and pub.store.standby is None
    assert await pub.publish(None, failing=True) == ([], [], "fallback")
    assert pub.store.snapshot is installed


async def test_a_new_set_changes_last_modified_by_a_whole_second(clock: FakeClock) -> None:
    """Two changes in one second, or a wall clock that steps back, still give the newer set a later Last-Modified."""
    pub = publisher(clock)
    await pub.publish({"a": (key(0),)}, failing=False)
    first = pub.store.snapshot
    clock.wall -= 100
    await pub.publish({"a": (key(1),)}, failing=False)
    second = pub.store.snapshot
    assert first is not None and second is not None
    assert int(second.changed_at) == int(first.changed_at) + 1


async def test_failed_state_write_is_counted_and_the_set_served(clock: FakeClock, tmp_path: Path) -> None:
    """A state_dir that cannot be written is logged and counted; the new set is served all the same."""
    pub = publisher(clock, state_dir=tmp_path / "missing")
    with structlog.testing.capture_logs() as logs:
        await pub.publish({"a": (key(0),)}, failing=False)
    assert pub.store.snapshot is not None and pub.store.snapshot.kids == ("key-0",)
    assert sample(pub, "jwksd_state_errors_total", operation="write") == 1
    assert [e["event"] for e in logs] == ["state_write_failed"]


async def test_restore_prefers_last_known_good_to_the_fallback(clock: FakeClock, tmp_path: Path) -> None:
    """With both files present, last-known-good stands by with its own times, is served once promoted, and is
    returned to seed the sources."""
    fallback = tmp_path / "fallback.json"
    fallback.write_text(jwk_set(key(2)))
    save_last_known_good(tmp_path, (key(0),), fetched_at=1_700_000_000.0, changed_at=1_600_000_000.0,
                         sources={"a": (key(0),)})
    pub = publisher(clock, state_dir=tmp_path, fallback=fallback)
    lkg = await pub.restore()
    assert lkg is not None and lkg.sources["a"].kids == ("key-0",)
    assert pub.store.snapshot is None and sample(pub, "jwksd_serving", source="last-known-good") == 0
    assert pub.promote_standby("startup_grace") and not pub.promote_standby("startup_grace")
    snapshot = pub.store.snapshot
    assert snapshot is not None
    assert (snapshot.origin, snapshot.kids, snapshot.changed_at) == ("last-known-good", ("key-0",), 1_600_000_000.0)
    assert sample(pub, "jwksd_serving", source="last-known-good") == 1


WRITERS = {"publish.py"}


def _names_store(node: ast.expr) -> bool:
    """``store`` or ``<anything>.store``: how jwksd names the Store."""
    return (isinstance(node, ast.Name) and node.id == "store") or (
        isinstance(node, ast.Attribute) and node.attr == "store")


def test_the_publisher_is_the_only_writer_of_the_store() -> None:
    """No module but publish.py swaps the store's snapshot or sets its failing flag."""
    root = Path(jwksd.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            swaps = (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "swap")
            sets = (isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Attribute) and t.attr in ("failing", "snapshot") and _names_store(t.value)
                for t in node.targets))
            if (swaps or sets) and path.name not in WRITERS:
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert offenders == []


async def test_restart_with_aws_down_serves_last_known_good(aiohttp_client: Any, secrets: Secrets,
                                                           tmp_path: Path) -> None:
    """The set persisted in state_dir is served after a restart while AWS is unreachable."""
    secret = secrets.create(jwk_set(key(0), key(1)))
    first = await start(aiohttp_client, sm_config(secrets.endpoint, secret, state_dir=tmp_path))
    _, headers_before, body_before = await get_jwks(first)
    await first.close()
    second = await start(aiohttp_client, sm_config(closed_endpoint(), secret, state_dir=tmp_path))
    status, headers, body = await get_jwks(second)
    assert (status, body, headers["ETag"]) == (200, body_before, headers_before["ETag"])
    assert headers["X-JWKS-Source"] == "last-known-good"
    assert headers["Last-Modified"] == headers_before["Last-Modified"]
    health = await (await second.get("/health")).json()
    assert health["status"] == "warn"


async def test_no_state_no_aws_serves_fallback(aiohttp_client: Any, tmp_path: Path) -> None:
    """With no last-known-good and AWS unreachable the fallback file is served."""
    fallback = tmp_path / "fallback.json"
    fallback.write_text(jwk_set(key(2)))
    client = await start(aiohttp_client, sm_config(closed_endpoint(), "x", state_dir=tmp_path / "s",
                                                   fallback=fallback))
    status, headers, body = await get_jwks(client)
    assert (status, kids_of(body), headers["X-JWKS-Source"]) == (200, ["key-2"], "fallback")
    assert (await client.get("/readyz")).status == 200


async def test_fresh_replaces_fallback_when_aws_returns(aiohttp_client: Any, secrets: Secrets,
                                                       tmp_path: Path) -> None:
    """Once the source delivers, the fresh set replaces the fallback."""
    fallback = tmp_path / "fallback.json"
    fallback.write_text(jwk_set(key(2)))
    secret = secrets.create(jwk_set(key(0)))
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secret, fallback=fallback))
    status, headers, body = await get_jwks(client)
    assert (status, kids_of(body), headers["X-JWKS-Source"]) == (200, ["key-0"], "fresh")


async def test_corrupt_state_file_is_skipped(aiohttp_client: Any, tmp_path: Path) -> None:
    """A corrupt last-known-good file is logged, counted and skipped; the fallback is served."""
    (tmp_path / "last-known-good.json").write_text('{"keys": [{"kty": "RSA"')
    fallback = tmp_path / "fallback.json"
    fallback.write_text(jwk_set(key(2)))
    client = await start(aiohttp_client, sm_config(closed_endpoint(), "x", state_dir=tmp_path, fallback=fallback))
    _, headers, body = await get_jwks(client)
    assert (kids_of(body), headers["X-JWKS-Source"]) == (["key-2"], "fallback")
    assert metric(client, "jwksd_state_errors_total", operation="read") == 1


async def test_state_file_written_atomically_and_valid(aiohttp_client: Any, secrets: Secrets,
                                                      tmp_path: Path) -> None:
    """After a change the state directory holds one complete, valid file and no temp files."""
    secret = secrets.create(jwk_set(key(0)))
    await start(aiohttp_client, sm_config(secrets.endpoint, secret, state_dir=tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == ["last-known-good.json"]
    document = json.loads((tmp_path / "last-known-good.json").read_text())
    assert [k["kid"] for k in document["keys"]] == ["key-0"]


async def test_derived_documents_follow_new_content_only(clock: FakeClock, tmp_path: Path) -> None:
    """Each derived document is told of the fallback set once installed and of each new set, not of confirmations."""
    fallback = tmp_path / "fallback.json"
    fallback.write_text(jwk_set(key(2)))
    pub = publisher(clock, fallback=fallback)
    told: list[tuple[str, ...]] = []
    pub.derived.append(lambda snapshot: told.append(snapshot.kids))
    await pub.restore()
    assert told == []  # standing by is not serving
    pub.promote_standby("startup_grace")
    await pub.publish({"a": (key(0),)}, failing=False)
    await pub.publish({"a": (key(0),)}, failing=False)
    await pub.publish({"a": (key(0),), "b": (key(1),)}, failing=False)
    assert told == [("key-2",), ("key-0",), ("key-0", "key-1")]


async def test_unservable_snapshot_never_installed_at_start(clock: FakeClock, tmp_path: Path) -> None:
    """With the wall clock at 1e20, neither rung can have a Last-Modified: both are refused, logged, counted."""
    clock.wall = 1e20  # state.py believes times up to now, so only the publisher's own check can stop these
    fallback = tmp_path / "fallback.json"
    fallback.write_text(jwk_set(key(2)))
    save_last_known_good(tmp_path, (key(0),), fetched_at=1e20, changed_at=1e20)
    pub = publisher(clock, state_dir=tmp_path, fallback=fallback)
    with structlog.testing.capture_logs() as logs:
        assert await pub.restore() is None
    assert pub.store.snapshot is None and pub.store.standby is None  # /readyz 503 and requests 503, not 500
    assert sample(pub, "jwksd_state_errors_total", operation="read") == 2
    refused = [(e["event"], e["origin"], e["problem"]) for e in logs]
    problem = "changed_at 1e+20 cannot be written as a Last-Modified date (timestamp out of range for platform time_t)"
    assert refused == [("snapshot_refused", "last-known-good", problem), ("snapshot_refused", "fallback", problem)]


async def test_unservable_fresh_set_keeps_the_served_one(clock: FakeClock, tmp_path: Path) -> None:
    """A new set whose Last-Modified cannot be written (a clock gone to year 33658) is refused; the old one stays."""
    pub = publisher(clock, state_dir=tmp_path)
    await pub.publish({"a": (key(0),)}, failing=False)
    served = pub.store.snapshot
    clock.wall = 1e12
    with structlog.testing.capture_logs() as logs:
        assert await pub.publish({"a": (key(1),)}, failing=False) == ([], [], "fresh")
    assert pub.store.snapshot is served
    assert sample(pub, "jwksd_documents_rejected_total", reason="internal_error") == 1
    assert [(e["event"], e["problem"]) for e in logs] == [
        ("snapshot_refused", "changed_at 1000000000000.0 cannot be written as a Last-Modified date (year 33658 is out "
                             "of range)")]
    saved = load_last_known_good(tmp_path, ValidationConfig(), now=1.8e9)
    assert saved is not None and saved.keyset.kids == ("key-0",)  # the refused set was not written either


async def test_a_new_state_dir_gets_the_set_at_the_next_publish(clock: FakeClock, tmp_path: Path) -> None:
    """After a reload names another state_dir, the next refresh writes there even though the set is unchanged."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    pub = publisher(clock, state_dir=tmp_path / "a")
    await pub.publish({"a": (key(0),)}, failing=False)
    pub.live.current = replace(pub.config, state=StateConfig(state_dir=tmp_path / "b"))
    await pub.publish({"a": (key(0),)}, failing=False)
    saved = load_last_known_good(tmp_path / "b", ValidationConfig(), now=clock.time())
    assert saved is not None and saved.keyset.kids == ("key-0",)


async def test_reread_fallback_replaces_only_a_served_fallback(clock: FakeClock, tmp_path: Path) -> None:
    """A reload naming another fallback file: it stands by while nothing is served, replaces a served fallback, and
    never fresh keys."""
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    first.write_text(jwk_set(key(1)))
    second.write_text(jwk_set(key(2)))
    pub = publisher(clock)
    pub.live.current = replace(pub.config, state=StateConfig(fallback_file=first))
    await pub.reread_fallback()
    assert pub.store.snapshot is None and pub.store.standby is not None and pub.store.standby.kids == ("key-1",)
    assert pub.promote_standby("source_failed")
    pub.live.current = replace(pub.config, state=StateConfig(fallback_file=second))
    await pub.reread_fallback()
    assert pub.store.snapshot is not None and (pub.store.snapshot.origin, pub.store.snapshot.kids) == (
        "fallback", ("key-2",))
    await pub.publish({"a": (key(0),)}, failing=False)
    pub.live.current = replace(pub.config, state=StateConfig(fallback_file=first))
    await pub.reread_fallback()
    assert pub.store.snapshot is not None and pub.store.snapshot.kids == ("key-0",)


def revoking(pub: Publisher, *kids: str) -> None:
    """Put ``kids`` in the publisher's validation.revoked_kids, as a reload does."""
    pub.live.current = replace(pub.config, validation=replace(pub.config.validation, revoked_kids=kids))


async def test_revoke_rewrites_a_standing_by_last_known_good(clock: FakeClock, tmp_path: Path) -> None:
    """Before any fetch, a revocation takes the kid out of the standing-by last-known-good, its times kept, and
    rewrites the file."""
    save_last_known_good(tmp_path, (key(0), key(1)), fetched_at=1_700_000_000.0, changed_at=1_600_000_000.0,
                         sources={"a": (key(0), key(1))})
    pub = publisher(clock, state_dir=tmp_path)
    await pub.restore()
    revoking(pub, "key-1")
    await pub.revoke({"a": (key(0), key(1))})
    standby = pub.store.standby
    assert pub.store.snapshot is None and standby is not None
    assert (standby.origin, standby.kids, standby.fetched_at) == ("last-known-good", ("key-0",), 1_700_000_000.0)
    saved = load_last_known_good(tmp_path, ValidationConfig(), now=clock.time())
    assert saved is not None and saved.keyset.kids == ("key-0",) and saved.sources["a"].kids == ("key-0",)
    assert sample(pub, "jwksd_kids_removed_total") == 1


async def test_revoke_of_a_served_fallback_writes_nothing(clock: FakeClock, tmp_path: Path) -> None:
    """A served fallback loses the revoked kid at once; the fallback file is the operator's, so no state is written."""
    fallback = tmp_path / "fallback.json"
    fallback.write_text(jwk_set(key(0), key(1)))
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    pub = publisher(clock, state_dir=state_dir, fallback=fallback)
    await pub.restore()
    await pub.publish(None, failing=True)
    revoking(pub, "key-0")
    await pub.revoke({})
    assert pub.store.snapshot is not None and pub.store.snapshot.kids == ("key-1",)
    assert pub.store.snapshot.origin == "fallback" and not any(state_dir.iterdir())


async def test_revoking_every_key_keeps_the_set_and_the_next_publish_too(clock: FakeClock) -> None:
    """Every served key revoked: the set stays, revoked_kept names them, counted; a publish keeps it as well."""
    pub = publisher(clock)
    await pub.publish({"a": (key(0),)}, failing=False)
    served = pub.store.snapshot
    revoking(pub, "key-0")
    with structlog.testing.capture_logs() as logs:
        await pub.revoke({"a": (key(0),)})
        assert await pub.publish({"a": (key(0),)}, failing=True) == ([], [], "stale")
    assert pub.store.snapshot is served and pub.store.revoked_kept == ("key-0",)
    assert [(e["event"], e["kids"]) for e in logs] == [("revoked_kids_would_empty", ["key-0"])] * 2
    assert sample(pub, "jwksd_revocations_kept_total") == 2
    revoking(pub)
    await pub.revoke({"a": (key(0),)})
    assert pub.store.revoked_kept == ()
