"""The registry head: the item ``version = 0`` holding the stored policy, the pointers and the revision.

The policy (six fields) is written by ``jwksd keys init-table`` or the first rotate; every rotator
and signer reads it from here. ``active_version`` and ``pending_version`` point at the key items
(absent when there is none). ``revision`` is bumped in the same transaction as every registry write,
so a reader polls one consistent GetItem of the head and re-reads key items only when it changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from jwksd.errors import RotationError

HEAD_VERSION = 0


@dataclass(frozen=True)
class RegistryPolicy:
    """The lifecycle policy every rotator and signer of a registry follows (durations in whole seconds)."""

    rotate_every_s: int
    publish_ahead_s: int
    retire_grace_s: int
    max_token_lifetime_s: int
    alg: str
    key_spec: str


# The names of the policy's fields, in order: the head's attributes and the [rotation] keys alike.
POLICY_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RegistryPolicy))
_POLICY_STRINGS = ("alg", "key_spec")


@dataclass(frozen=True)
class RegistryHead:
    """The head item: the stored policy, the active and pending versions (None: none), the revision."""

    policy: RegistryPolicy
    active_version: int | None
    pending_version: int | None
    revision: int


def head_item(head: RegistryHead) -> dict[str, Any]:
    """The DynamoDB item of a head (absent pointers left out)."""
    item: dict[str, Any] = {"version": {"N": str(HEAD_VERSION)}, "revision": {"N": str(head.revision)}}
    for name in POLICY_FIELDS:
        value = getattr(head.policy, name)
        item[name] = {"S": value} if name in _POLICY_STRINGS else {"N": str(value)}
    for name in ("active_version", "pending_version"):
        value = getattr(head, name)
        if value is not None:
            item[name] = {"N": str(value)}
    return item


def head_from_item(item: Mapping[str, Any]) -> RegistryHead:
    """The head of its DynamoDB item; RotationError names the first thing wrong with it."""
    label = "registry head (version 0)"
    values: dict[str, Any] = {}
    for name in POLICY_FIELDS:
        if name in _POLICY_STRINGS:
            value = item.get(name, {}).get("S")
            if not isinstance(value, str) or not value:
                raise RotationError("bad_item", f"{label}: {name} is missing or not a string")
            values[name] = value
        else:
            values[name] = _whole(item, name, label, required=True, least=1)
    active, pending = _whole(item, "active_version", label, least=1), _whole(item, "pending_version", label, least=1)
    if active is not None and active == pending:
        raise RotationError("bad_item", f"{label}: active_version and pending_version are both {active}")
    return RegistryHead(policy=RegistryPolicy(**values), active_version=active, pending_version=pending,
                        revision=_whole(item, "revision", label, required=True, least=0))


def _whole(item: Mapping[str, Any], name: str, label: str, *, least: int, required: bool = False) -> Any:
    """The whole number ``item[name]``, at least ``least`` (a duration of 0 or a pointer at the head is no value)."""
    if name not in item:
        if required:
            raise RotationError("bad_item", f"{label}: {name} is missing")
        return None
    try:
        value = int(item[name]["N"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RotationError("bad_item", f"{label}: {name} is not a whole number") from exc
    if value < least:
        raise RotationError("bad_item", f"{label}: {name} is {value}: expected {least} or more")
    return value
