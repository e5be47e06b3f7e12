"""The [rotation] table: the key lifecycle policy of ``jwksd keys``, checked against the serving side."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from jwksd.aws.head import POLICY_FIELDS, RegistryPolicy
from jwksd.config.model import KEY_SPEC_ALGS, RSA_ALGS, RefreshConfig, RotationConfig, publish_ahead_default
from jwksd.config.reader import table_section
from jwksd.config.settings import ROTATION_ENDPOINT, setting_of


def read_rotation(data: Mapping[str, Any], problems: list[str], refresh: RefreshConfig) -> RotationConfig | None:
    """The [rotation] table, its policy checked against the serving side's [refresh] (docs/rotation.md)."""
    if "rotation" not in data:
        return None
    section = table_section(data, "rotation", problems)

    key_spec = section.read(setting_of(RotationConfig, "key_spec"))
    alg = section.read(setting_of(RotationConfig, "alg"), KEY_SPEC_ALGS.get(key_spec, RSA_ALGS)[0])
    publish_ahead = section.read(setting_of(RotationConfig, "publish_ahead_s"), publish_ahead_default(refresh))
    policy = RegistryPolicy(
        rotate_every_s=section.read(setting_of(RotationConfig, "rotate_every_s")), publish_ahead_s=publish_ahead,
        retire_grace_s=section.read(setting_of(RotationConfig, "retire_grace_s")),
        max_token_lifetime_s=section.read(setting_of(RotationConfig, "max_token_lifetime_s")), alg=alg,
        key_spec=key_spec)
    for key, value, expected in policy_problems(policy, refresh):
        section.problem(key, value, expected)
    verify_urls = section.read(setting_of(RotationConfig, "verify_urls"))
    for url in verify_urls:
        if not url.startswith(("http://", "https://")):
            section.problem("verify_urls", list(verify_urls), "http:// or https:// URLs of served JWKS")
            break
    section.read(ROTATION_ENDPOINT)  # spread over the three services by _aws_defaults
    rotation = section.build(RotationConfig, **{name: getattr(policy, name) for name in POLICY_FIELDS},
                             verify_urls=verify_urls, explicit=section.given())
    rotation = replace(rotation, private_secret_prefix=rotation.private_secret_prefix.rstrip("/"))
    section.check_unknown()
    return rotation


def policy_problems(policy: RegistryPolicy, refresh: RefreshConfig) -> list[tuple[str, Any, str]]:
    """(key, value, what was expected) for each rule ``policy`` breaks against the serving side's ``refresh``.

    The same rules guard a config file, a policy stored in the registry and a change to it.
    """
    found: list[tuple[str, Any, str]] = []
    if policy.key_spec not in KEY_SPEC_ALGS:
        found.append(("key_spec", policy.key_spec, " or ".join(KEY_SPEC_ALGS)))
    elif policy.alg not in KEY_SPEC_ALGS[policy.key_spec]:
        found.append(("alg", policy.alg, f"an algorithm key_spec {policy.key_spec!r} can sign with: "
                                         f"{', '.join(KEY_SPEC_ALGS[policy.key_spec])}"))
    max_age, interval = refresh.max_age_s, refresh.interval_s
    if policy.publish_ahead_s < max_age + interval:
        found.append(("publish_ahead_s", policy.publish_ahead_s, f"at least refresh.max_age_s + refresh.interval_s "
                      f"({max_age + interval:g}), so every verifier holds a new key before it signs"))
    if policy.rotate_every_s <= policy.publish_ahead_s:
        found.append(("rotate_every_s", policy.rotate_every_s, f"more than rotation.publish_ahead_s "
                      f"({policy.publish_ahead_s}), or each new key would be due before it could be published"))
    lifetime = policy.max_token_lifetime_s
    if policy.retire_grace_s <= lifetime + max_age:
        found.append(("retire_grace_s", policy.retire_grace_s, f"more than rotation.max_token_lifetime_s + "
                      f"refresh.max_age_s ({lifetime + max_age:g}), so a retired key outlives every token it signed"))
    return found
