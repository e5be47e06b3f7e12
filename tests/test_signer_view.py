"""The signer's registry view on moto: one GetItem per read, items only on a new revision, revoke and promote."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import jwt
import pytest

from jwksd.config import RotationConfig, SignerConfig
from jwksd.errors import RotationError
from jwksd.rotation.incident import promote_now, revoke
from jwksd.rotation.keyring import Keyring
from jwksd.rotation.policy import single
from jwksd.signer.app import Signer, open_signer
from jwksd.signer.claims import parse, unsigned
from jwksd.validate.encoding import b64u_encode
from tests.rotation_helpers import T0, keyring, rotation_config
from tests.signer_helpers import P, active_registry


def calls(signer: Signer, operation: str) -> float:
    """jwksd_signer_aws_calls_total of ``operation`` answered ok."""
    return signer.metrics.aws_calls.labels(operation, "ok")._value.get()


@asynccontextmanager
async def registry_and_signer(config: RotationConfig) -> AsyncIterator[tuple[Keyring, Signer]]:
    """A rotator's keyring on a registry with v1 active and v2 published, and a signer's parts reading it."""
    async with keyring(config, publish=True) as ring:
        await active_registry(ring, f"{config.private_secret_prefix}/public")
        async with open_signer(config, SignerConfig(), token=None, policy_problems=lambda head: []) as signer:
            yield ring, signer


async def kids(ring: Keyring) -> dict[str, str]:
    return {r.status: r.kid for r in await ring.registry.records()}


async def test_items_are_read_only_when_the_revision_moves(moto_endpoint: str) -> None:
    """Each read is one GetItem of the head; the active and pending items are read again only after a change."""
    async with registry_and_signer(rotation_config(moto_endpoint)) as (ring, signer):
        view = signer.view
        for _ in range(5):
            await view.read()
        assert calls(signer, "GetItem") == 3 + 4  # head, active, pending; then the head alone
        assert calls(signer, "GetPublicKey") == 2  # active and pending, each checked once
        await promote_now(ring, T0 + 2 * P, emergency=False, max_age_s=600)
        await view.read()
        assert calls(signer, "GetItem") == 7 + 3
        assert view.signing_key().kid == (await kids(ring))["active"]
        assert calls(signer, "GetPublicKey") == 3  # v2 was prepared while pending; only v3 is new
        operations = {sample.labels["operation"] for family in signer.metrics.registry.collect()
                      for sample in family.samples if sample.name == "jwksd_signer_aws_calls_total" and sample.value}
        assert operations == {"GetItem", "GetPublicKey"}  # never a Scan


async def test_revoke_and_promotion_apply_at_the_next_read(moto_endpoint: str) -> None:
    """After a revoke of the active key the revoked kid never signs again; the promoted next key does."""
    async with registry_and_signer(rotation_config(moto_endpoint)) as (ring, signer):
        view = signer.view
        await view.read()
        before = await kids(ring)
        assert view.signing_key().kid == before["active"]
        await revoke(ring, before["active"], T0 + P + 60, emergency=True, max_age_s=600)
        await view.read()
        after = await kids(ring)
        assert after["revoked"] == before["active"] and view.signing_key().kid == after["active"] == before["pending"]
        assert not view.keys.prepared(single(await ring.registry.records(), "revoked"))  # type: ignore[arg-type]


async def test_local_keys_are_read_once_and_dropped_on_revoke(moto_endpoint: str) -> None:
    """The local backend reads each private key once, signs from memory, and forgets a revoked key."""
    config = rotation_config(moto_endpoint, backend="local")
    async with registry_and_signer(config) as (ring, signer):
        view = signer.view
        await view.read()
        assert calls(signer, "GetSecretValue") == 2  # the active key and the next one
        key = view.signing_key()
        for _ in range(5):
            assert len(await view.keys.sign(key, b"a.b")) == 64
        assert calls(signer, "GetSecretValue") == 2
        await revoke(ring, key.kid, T0 + P + 60, emergency=True, max_age_s=600)
        await view.read()
        assert not view.keys.prepared(key) and view.signing_key().kid != key.kid
        with pytest.raises(RotationError, match=f"^key_unprepared: registry version 1 kid={key.kid} is not ready"):
            await view.keys.sign(key, b"a.b")


@pytest.mark.parametrize(("backend", "key_spec", "alg"), [
    ("local", "RSA_2048", "PS256"), ("local", "ECC_NIST_P384", "ES384"), ("kms", "RSA_2048", "RS256")])
async def test_each_algorithm_the_policy_names(moto_endpoint: str, backend: str, key_spec: str, alg: str) -> None:
    """The signer signs with the algorithm the registry's policy names, and PyJWT verifies it with the public key."""
    config = rotation_config(moto_endpoint, backend=backend, key_spec=key_spec, alg=alg)
    async with registry_and_signer(config) as (ring, signer):
        await signer.view.read()
        key = signer.view.signing_key()
        wanted = parse(b'{"claims": {"sub": "svc"}, "ttl_s": 60}')
        token = unsigned(wanted, key, now=int(time.time()), max_lifetime_s=3600)
        signature = await signer.view.keys.sign(key, token.signing_input)
        compact = f"{token.signing_input.decode()}.{b64u_encode(signature)}"
        public = await ring.backend_for(key).public_jwk(key)
        assert jwt.decode(compact, jwt.PyJWK(public).key, algorithms=[alg])["sub"] == "svc"
        assert jwt.get_unverified_header(compact) == {"alg": alg, "kid": key.kid, "typ": "JWT"}

