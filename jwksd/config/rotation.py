"""The [rotation] table: the key lifecycle policy of ``jwksd keys``, checked against the serving side."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from jwksd.config.model import KEY_SPEC_ALGS, ROTATION_BACKENDS, RSA_ALGS, RefreshConfig, RotationConfig
from jwksd.config.reader import read_url, table_section


def read_rotation(data: Mapping[str, Any], problems: list[str], refresh: RefreshConfig) -> RotationConfig | None:
    """The [rotation] table, its policy checked against the serving side's [refresh] (see README, Rotation)."""
    if "rotation" not in data:
        return None
    section = table_section(data, "rotation", problems)
    key_spec = section.string("key_spec", "RSA_2048") or "RSA_2048"
    if key_spec not in KEY_SPEC_ALGS:
        section.problem("key_spec", key_spec, " or ".join(KEY_SPEC_ALGS))
    algs = KEY_SPEC_ALGS.get(key_spec, RSA_ALGS)
    alg = section.string("alg", algs[0]) or algs[0]
    if key_spec in KEY_SPEC_ALGS and alg not in algs:
        section.problem("alg", alg, f"an algorithm key_spec {key_spec!r} can sign with: {', '.join(algs)}")
    max_age, interval = refresh.max_age_s, refresh.interval_s
    publish_ahead = section.integer("publish_ahead_s", math.ceil(2 * max_age + interval))
    if publish_ahead < max_age + interval:
        section.problem("publish_ahead_s", publish_ahead, f"at least refresh.max_age_s + refresh.interval_s "
                        f"({max_age + interval:g}), so every verifier holds a new key before it signs")
    rotate_every = section.integer("rotate_every_s", 30 * 86400)
    if rotate_every <= publish_ahead:
        section.problem("rotate_every_s", rotate_every, f"more than rotation.publish_ahead_s ({publish_ahead}), "
                        "or each new key would be due before it could be published")
    lifetime = section.integer("max_token_lifetime_s", 3600)
    grace = section.integer("retire_grace_s", 48 * 3600)
    if grace <= lifetime + max_age:
        section.problem("retire_grace_s", grace, f"more than rotation.max_token_lifetime_s + refresh.max_age_s "
                        f"({lifetime + max_age:g}), so a retired key outlives every token it signed")
    verify_urls = section.strings("verify_urls", ())
    for url in verify_urls:
        if not url.startswith(("http://", "https://")):
            section.problem("verify_urls", list(verify_urls), "http:// or https:// URLs of served JWKS")
            break
    section.string("endpoint_url", None)  # spread over the three services by _aws_defaults
    rotation = RotationConfig(
        table=section.string("table", "jwksd-keys") or "jwksd-keys",
        backend=section.string("backend", "kms", choices=ROTATION_BACKENDS) or "kms",
        private_secret_prefix=(section.string("private_secret_prefix", "jwksd/private-keys")
                               or "jwksd/private-keys").rstrip("/"),
        publish_secret_id=section.string("publish_secret_id", None),
        verify_urls=verify_urls,
        rotate_every_s=rotate_every,
        publish_ahead_s=publish_ahead,
        retire_grace_s=grace,
        max_token_lifetime_s=lifetime,
        deletion_window_days=section.integer("deletion_window_days", 30, low=7, high=30),
        key_spec=key_spec,
        alg=alg,
        region=section.string("region", None),
        dynamodb_endpoint_url=read_url(section, "dynamodb_endpoint_url"),
        kms_endpoint_url=read_url(section, "kms_endpoint_url"),
        secretsmanager_endpoint_url=read_url(section, "secretsmanager_endpoint_url"),
        connect_timeout_s=section.number("connect_timeout_s", 5.0, high=60),
        read_timeout_s=section.number("read_timeout_s", 10.0, high=120),
    )
    section.check_unknown()
    return rotation
