"""Merging the sources' key sets into the one served set: identity by kid, else by thumbprint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import structlog

from jwksd.store import KidOrigin, Snapshot
from jwksd.validate.jwk import thumbprint

log = structlog.get_logger("jwksd.merge")

Key = Mapping[str, Any]


def key_id(key: Key) -> str:
    """The identity used to merge sets: the kid, else the RFC 7638 thumbprint."""
    kid = key.get("kid")
    return str(kid) if kid is not None else "#" + thumbprint(key)


def merge(sets: Sequence[tuple[str, Sequence[Key]]]) -> tuple[Key, ...]:
    """Union of key sets by kid; on a conflict the earlier set wins and the conflict is logged."""
    merged: dict[str, Key] = {}
    origin: dict[str, str] = {}
    for label, keys in sets:
        for key in keys:
            kid = key_id(key)
            if kid not in merged:
                merged[kid], origin[kid] = key, label
            elif dict(merged[kid]) != dict(key):
                log.warning("kid_conflict", kid=kid, kept=origin[kid], ignored=label)
    return tuple(merged[kid] for kid in sorted(merged))


def same_keys(a: Sequence[Key], b: Sequence[Key]) -> bool:
    """The same keys in the same order."""
    return len(a) == len(b) and all(dict(x) == dict(y) for x, y in zip(a, b, strict=True))


def with_origins(snapshot: Snapshot, shares: Mapping[str, Sequence[Key]] | None, previous: Snapshot | None,
                 now: float) -> Snapshot:
    """``snapshot`` with each kid's sources (from ``shares``; else as ``previous`` had them, else its origin) and
    the time it was first served (kept from ``previous`` while the kid stays served; without ``previous``, as the
    snapshot says, read back from last-known-good; else ``now``)."""
    held = {name: {str(key.get("kid", "")) for key in share} for name, share in (shares or {}).items()}
    before = previous.origins if previous is not None else snapshot.origins  # read back from disk, say
    origins: dict[str, KidOrigin] = {}
    for kid in snapshot.kids:  # the kid as the snapshot lists it
        if shares is not None:
            sources = tuple(name for name, kids in held.items() if kid in kids)
        elif kid in before and snapshot.origin == "fresh":
            sources = before[kid].sources
        else:
            sources = (snapshot.origin,)
        origins[kid] = KidOrigin(sources, before[kid].since if kid in before else now)
    return snapshot if origins == snapshot.origins else replace(snapshot, origins=origins)
