"""The registry head on the rotator's side: the stored policy adopted, written when missing, changed deliberately.

A ``[rotation]`` value the file does not set follows the registry; one it sets must equal the
stored one, or the command is refused naming both (ConfigError: a configuration to fix, exit 2).
``check_policy`` is that rule for any reader of the head: rotators here, the signer too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from jwksd.aws.head import POLICY_FIELDS, RegistryHead, RegistryPolicy
from jwksd.aws.registry import KeyRecord
from jwksd.config import RefreshConfig, RotationConfig
from jwksd.config.rotation import policy_problems
from jwksd.errors import ConfigError
from jwksd.rotation.keyring import Keyring
from jwksd.rotation.policy import single

CHANGE_HINT = "remove it from the file to follow the registry, or change the registry's policy with " \
              "`jwksd keys policy --apply`"


def policy_of(config: RotationConfig) -> RegistryPolicy:
    """The policy a config file says (its defaults included)."""
    return RegistryPolicy(**{name: getattr(config, name) for name in POLICY_FIELDS})


def differences(config: RotationConfig, policy: RegistryPolicy) -> list[tuple[str, Any, Any]]:
    """(key, the file's value, the stored value) for each policy value the file sets explicitly and differently."""
    return [(name, getattr(config, name), getattr(policy, name)) for name in POLICY_FIELDS
            if name in config.explicit and getattr(config, name) != getattr(policy, name)]


def check_policy(config: RotationConfig, head: RegistryHead, *, origin: str,
                 refresh: RefreshConfig | None = None) -> RotationConfig:
    """``config`` with the registry's stored policy; ConfigError naming every value ``origin`` sets differently.

    With ``refresh`` (this host's serving-side settings) the stored policy is also checked against it,
    by the rules a config file is checked by.
    """
    problems = [f"rotation.{name} = {mine!r} in {origin}, but registry {config.table} holds {stored!r}: "
                f"{CHANGE_HINT}" for name, mine, stored in differences(config, head.policy)]
    if refresh is not None:
        problems += [f"registry {config.table} holds rotation.{key} = {value!r}: expected {expected} (with this "
                     f"host's [refresh] in {origin})" for key, value, expected in policy_problems(head.policy, refresh)]
    if problems:
        raise ConfigError(problems)
    return replace(config, **{name: getattr(head.policy, name) for name in POLICY_FIELDS})


def head_of(policy: RegistryPolicy, records: Sequence[KeyRecord], revision: int = 0) -> RegistryHead:
    """A head for ``policy`` pointing at the active and pending keys of ``records``."""
    active, pending = single(records, "active"), single(records, "pending")
    return RegistryHead(policy=policy, active_version=active.version if active else None,
                        pending_version=pending.version if pending else None, revision=revision)


def describe(policy: RegistryPolicy) -> str:
    """``key=value`` for each policy field, in order."""
    return " ".join(f"{name}={getattr(policy, name)}" for name in POLICY_FIELDS)


async def store_head(ring: Keyring) -> list[str]:
    """Write the head from ``ring``'s config and the current records unless there is one; the line saying so."""
    head = head_of(policy_of(ring.config), await ring.registry.records())
    if not await ring.registry.write_head(head):
        return []
    return [f"stored the policy in {ring.config.table}: {describe(head.policy)}"]


async def adopt_head(ring: Keyring, *, origin: str, refresh: RefreshConfig | None = None,
                     write: bool = False) -> tuple[Keyring, list[str]]:
    """``ring`` on the registry's stored policy (ConfigError when the file disagrees) and the lines to print.

    With ``write``, a registry without a head gets one first (from this config); without, a registry
    without a head is used with the file's policy, as before heads existed.
    """
    head = await ring.registry.head()
    lines: list[str] = []
    if head is None and write:
        lines = await store_head(ring)
        head = await ring.registry.head()
    if head is None:
        return ring, lines
    config = check_policy(ring.config, head, origin=origin, refresh=refresh)
    return replace(ring, config=config, head=head), lines


async def policy_lines(ring: Keyring, *, origin: str, refresh: RefreshConfig, apply: bool) -> list[str]:
    """``jwksd keys policy``: the stored policy beside the file's; with ``apply``, the file's values stored.

    Only the values the file sets are applied, checked by the rules a config file is checked by, and
    written on the condition that the head's revision is still the one read (RegistryConflict otherwise).
    """
    table, head = ring.config.table, await ring.registry.head()
    if head is None:
        if apply:
            return await store_head(ring) or [f"{table}: another rotator stored a policy first; run again to see it"]
        return [f"no policy stored in {table} yet: `jwksd keys policy --apply`, `jwksd keys init-table` or the "
                f"first `jwksd keys rotate` stores this one: {describe(policy_of(ring.config))}"]
    explicit = ring.config.explicit
    rows = [("SETTING", "REGISTRY", "FILE", "")] + [
        (name, str(getattr(head.policy, name)), str(getattr(ring.config, name)) if name in explicit else "-",
         "differs" if name in explicit and getattr(ring.config, name) != getattr(head.policy, name) else "")
        for name in POLICY_FIELDS]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"policy of registry {table} (revision {head.revision}); file: {origin} (- follows the registry)"]
    lines += ["  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[3]]).rstrip()
              for row in rows]
    changes = differences(ring.config, head.policy)
    if not apply:
        if changes:
            lines.append("the file differs: `jwksd keys policy --apply` stores its values (rotators whose files "
                         "set the old ones are refused until they are changed too)")
        return lines
    if not changes:
        return [*lines, "nothing to apply: every value the file sets is the stored one"]
    wanted = replace(head.policy, **{name: mine for name, mine, _ in changes})
    problems = [f"rotation.{key} = {value!r}: expected {expected} (the policy it would store)"
                for key, value, expected in policy_problems(wanted, refresh)]
    if problems:
        raise ConfigError(problems)
    await ring.registry.set_policy(wanted, head.revision)
    return [*lines, *(f"changed rotation.{name}: {stored!r} -> {mine!r}" for name, mine, stored in changes),
            f"stored at revision {head.revision + 1}"]
