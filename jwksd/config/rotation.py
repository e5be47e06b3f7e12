"""The [rotation] table: the key lifecycle policy of ``jwksd keys``, checked against the serving side."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from jwksd.config.model import KEY_SPEC_ALGS, RSA_ALGS, RefreshConfig, RotationConfig, publish_ahead_default
from jwksd.config.reader import table_section
from jwksd.config.settings import ROTATION_ENDPOINT, setting_of


def read_rotation(data: Mapping[str, Any], problems: list[str], refresh: RefreshConfig) -> RotationConfig | None:
    """The [rotation] table, its policy checked against the serving side's [refresh] (docs/rotation.md)."""
    if "rotation" not in data:
        return None
    section = table_section(data, "rotation", problems)

    key_spec = section.read(setting_of(RotationConfig, "key_spec"))
    if key_spec not in KEY_SPEC_ALGS:
        section.problem("key_spec", key_spec, " or ".join(KEY_SPEC_ALGS))
    algs = KEY_SPEC_ALGS.get(key_spec, RSA_ALGS)
    alg = section.read(setting_of(RotationConfig, "alg"), algs[0])
    if key_spec in KEY_SPEC_ALGS and alg not in algs:
        section.problem("alg", alg, f"an algorithm key_spec {key_spec!r} can sign with: {', '.join(algs)}")
    max_age, interval = refresh.max_age_s, refresh.interval_s
    publish_ahead = section.read(setting_of(RotationConfig, "publish_ahead_s"), publish_ahead_default(refresh))
    if publish_ahead < max_age + interval:
        section.problem("publish_ahead_s", publish_ahead, f"at least refresh.max_age_s + refresh.interval_s "
                        f"({max_age + interval:g}), so every verifier holds a new key before it signs")
    rotate_every = section.read(setting_of(RotationConfig, "rotate_every_s"))
    if rotate_every <= publish_ahead:
        section.problem("rotate_every_s", rotate_every, f"more than rotation.publish_ahead_s ({publish_ahead}), "
                        "or each new key would be due before it could be published")
    lifetime = section.read(setting_of(RotationConfig, "max_token_lifetime_s"))
    grace = section.read(setting_of(RotationConfig, "retire_grace_s"))
    if grace <= lifetime + max_age:
        section.problem("retire_grace_s", grace, f"more than rotation.max_token_lifetime_s + refresh.max_age_s "
                        f"({lifetime + max_age:g}), so a retired key outlives every token it signed")
    verify_urls = section.read(setting_of(RotationConfig, "verify_urls"))
    for url in verify_urls:
        if not url.startswith(("http://", "https://")):
            section.problem("verify_urls", list(verify_urls), "http:// or https:// URLs of served JWKS")
            break
    section.read(ROTATION_ENDPOINT)  # spread over the three services by _aws_defaults
    rotation = section.build(
        RotationConfig, key_spec=key_spec, alg=alg, publish_ahead_s=publish_ahead, rotate_every_s=rotate_every,
        max_token_lifetime_s=lifetime, retire_grace_s=grace, verify_urls=verify_urls)
    rotation = replace(rotation, private_secret_prefix=rotation.private_secret_prefix.rstrip("/"))
    section.check_unknown()
    return rotation
