"""The status page rendered from a document at its limits (under 100 KB, every value escaped), and its next change."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from jwksd.aws.head import RegistryHead, RegistryPolicy
from jwksd.aws.registry import KeyRecord
from jwksd.http.status_page import render
from jwksd.http.status_registry import NextChange, RegistryView
from jwksd.status import HISTORY

NOW = 1_800_000_000
DAY = 86400


def document(*, keys: int, changed: int, registry: int, kid: str = "k") -> dict[str, Any]:
    """A status document with ``keys`` served keys, 100 refreshes each replacing ``changed`` kids, ``registry`` keys."""
    kids = [f"{kid}{i:03d}-{'x' * 40}" for i in range(max(keys, changed))]
    return {
        "version": 1, "jwksd": "0.1.0", "generated_at": NOW, "status": "pass", "ready": True,
        "served": {"rung": "fresh", "standby": False, "age_s": 1.0, "changed_at": NOW, "fetched_at": NOW,
                   "etag": '"e"', "revoked_kept": [],
                   "keys": [{"kid": k, "kty": "EC", "alg": "ES256", "crv": "P-256", "use": "sig",
                             "sources": ["secretsmanager"], "since": NOW - DAY} for k in kids[:keys]]},
        "sources": [{"name": "secretsmanager", "kind": "secretsmanager", "origin": "fresh", "status": "pass",
                     "last_success": NOW, "last_error": None, "consecutive_failures": 0, "next_due": NOW + 300}],
        "shared_cache": None,
        "refreshes": {"completed": 500, "history": [
            {"at": NOW - i, "outcome": "success", "added": kids[:changed], "removed": kids[:changed],
             "served": "fresh", "duration_ms": 3.2} for i in range(HISTORY)]},
        "registry": {"table": "jwksd-keys", "read_at": NOW, "read_by": "source", "last_error": None, "policy": None,
                     "revision": None, "policy_differences": [], "next_change": None, "keys": [
                         {"version": v, "kid": f"{kid}{v}", "status": "expired", "alg": "ES256", "backend": "kms",
                          "created": NOW - (registry - v + 2) * 30 * DAY, "published": None, "activated": None,
                          "retired": None, "expires": None, "expired": NOW - (registry - v) * 30 * DAY,
                          "revoked": None} for v in range(1, registry + 1)]},
    }


def test_page_stays_under_100_kb_at_its_limits() -> None:
    """100 keys, 100 refreshes each replacing 200 kids, 60 registry keys: under 100 KB, the rest counted, not drawn."""
    page = render(document(keys=150, changed=200, registry=60))
    assert len(page.encode()) < 100_000
    assert page.count('class="key"') == 100 and "and 50 more (see /status.json)" in page
    assert page.count("and 197 more") == 2 * HISTORY
    assert page.count('class="bar"') == 24 and "36 older not drawn" in page


def test_every_value_is_escaped() -> None:
    """A kid with markup in it is shown as text, in the tables, the hover text and the bars."""
    page = render(document(keys=1, changed=1, registry=1, kid='<img src=x onerror="1">'))
    assert re.findall(r"<img", page) == []
    assert page.count("&lt;img src=x onerror=&quot;1&quot;&gt;") >= 3


def test_next_change_names_an_adopted_expiry_and_a_stuck_rotator() -> None:
    """The next change is the gauge's: an adopted key's expiry by name, a due rotation with no next key published."""
    policy = RegistryPolicy(rotate_every_s=10 * DAY, publish_ahead_s=1500, retire_grace_s=2 * DAY,
                            max_token_lifetime_s=3600, alg="ES256", key_spec="ECC_NIST_P256")
    head = RegistryHead(policy=policy, active_version=1, pending_version=None, revision=3)

    base = KeyRecord(version=0, kid="k", status="active", backend="kms", key_ref="arn", alg="ES256",
                     key_spec="ECC_NIST_P256", created=NOW - 20 * DAY, publish_from=NOW - 20 * DAY)

    active = replace(base, version=1, kid="k1", activated=NOW - 5 * DAY, first_published=NOW - 20 * DAY)
    adopted = replace(base, version=2, kid="k2", status="external", backend="external", expires=NOW + DAY)
    unconfirmed = replace(base, version=3, kid="k3", status="pending")  # a rotator whose publishes keep failing
    assert RegistryView("t", (active, adopted), head=head).next_change() == NextChange(NOW + DAY, "adopted version 2 "
                                                                                               "expires")
    assert RegistryView("t", (active, unconfirmed), head=head).next_change() == NextChange(
        NOW + 5 * DAY, "version 1 is due to rotate, and no next key is published yet")
