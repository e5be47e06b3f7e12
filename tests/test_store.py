"""The served snapshot: bytes built once, strong ETags, ages on the monotonic clock, the X-JWKS-Source label."""

from __future__ import annotations

import gzip
import json

from jwksd.store import Store, build_snapshot
from tests.conftest import FakeClock
from tests.keys import key


def test_snapshot_holds_body_gzip_copy_and_etags(clock: FakeClock) -> None:
    """The body is the serialised set, the gzip copy decompresses to it, and each has its own strong ETag."""
    snapshot = build_snapshot((key(0), key(1)), "fresh", clock)
    assert [k["kid"] for k in json.loads(snapshot.body)["keys"]] == ["key-0", "key-1"]
    assert gzip.decompress(snapshot.gzip_body) == snapshot.body
    assert snapshot.etag.startswith('"') and snapshot.gzip_etag == snapshot.etag[:-1] + '-gz"'
    assert snapshot.kids == ("key-0", "key-1")
    assert build_snapshot((key(0), key(1)), "fresh", clock).etag == snapshot.etag  # content, not time
    assert snapshot.last_modified == "Fri, 15 Jan 2027 08:00:00 GMT"


def test_age_counts_from_the_origins_fetch(clock: FakeClock) -> None:
    """A set read back from disk is as old as its fetch, not its installation; a confirmation resets the age."""
    store = Store(clock)
    assert store.age_s() == 0.0
    store.swap(build_snapshot((key(0),), "last-known-good", clock, fetched_at=clock.wall - 50))
    assert store.age_s() == 50
    clock.advance(10)
    assert store.age_s() == 60
    snapshot = store.snapshot
    assert snapshot is not None
    store.swap(snapshot.confirmed(clock))
    assert store.age_s() == 0


def test_served_source_label(clock: FakeClock) -> None:
    """fresh until max_age_s passes or a refresh fails, then stale; a ladder set keeps its origin; none is None."""
    store = Store(clock)
    assert store.served_source(60) is None
    store.swap(build_snapshot((key(0),), "fallback", clock))
    clock.advance(1000)
    assert store.served_source(60) == "fallback"
    store.swap(build_snapshot((key(0),), "fresh", clock))
    assert store.served_source(60) == "fresh"
    clock.advance(61)
    assert store.served_source(60) == "stale"
    store.swap(build_snapshot((key(0),), "fresh", clock))
    store.failing = True
    assert store.served_source(60) == "stale"
