"""The registry head on the rotator's side: the policy stored, followed, refused when a file disagrees, changed."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
import structlog

from jwksd.__main__ import main
from jwksd.aws.registry import KeyRecord, RegistryHead
from jwksd.config import RefreshConfig
from jwksd.errors import ConfigError, RegistryConflict, RotationError
from jwksd.rotation.head import check_policy, policy_of
from jwksd.rotation.keyring import open_keyring
from tests.rotation_helpers import T0, keyring, rotation_config

pytestmark = pytest.mark.usefixtures("reset_logging")  # conftest: structlog put back after each test


def key(version: int, status: str) -> KeyRecord:
    return KeyRecord(version=version, kid=f"kid-{version}", status=status, backend="kms",  # type: ignore[arg-type]
                     key_ref=f"arn:{version}", alg="ES256", key_spec="ECC_NIST_P256", created=T0, publish_from=T0)


def test_a_signer_config_that_disagrees_is_refused() -> None:
    """check_policy names every value the file sets differently; values it leaves out follow the registry."""
    config = rotation_config("http://127.0.0.1:1", max_token_lifetime_s=86400, alg="ES256", retire_grace_s=90000,
                             explicit=frozenset({"max_token_lifetime_s", "alg", "table"}))
    head = RegistryHead(policy=replace(policy_of(config), max_token_lifetime_s=3600, retire_grace_s=172800),
                        active_version=1, pending_version=2, revision=5)
    with pytest.raises(ConfigError) as info:
        check_policy(config, head, origin="/etc/jwksd/signer.toml")
    assert info.value.problems == [
        f"rotation.max_token_lifetime_s = 86400 in /etc/jwksd/signer.toml, but registry {config.table} holds 3600: "
        "remove it from the file to follow the registry, or change the registry's policy with "
        "`jwksd keys policy --apply`"]
    agreeing = replace(config, max_token_lifetime_s=3600)
    adopted = check_policy(agreeing, head, origin="/etc/jwksd/signer.toml")
    assert policy_of(adopted) == head.policy and adopted.retire_grace_s == 172800  # unset in the file: the registry's
    with pytest.raises(ConfigError) as info:
        check_policy(agreeing, head, origin="f.toml", refresh=RefreshConfig(interval_s=300, max_age_s=1300))
    assert info.value.problems == [
        f"registry {config.table} holds rotation.publish_ahead_s = 1500: expected at least refresh.max_age_s + "
        "refresh.interval_s (1600), so every verifier holds a new key before it signs (with this host's [refresh] "
        "in f.toml)"]


async def test_every_write_bumps_the_revision_and_keeps_the_pointers(moto_endpoint: str) -> None:
    """add, confirm, promote, expire and revoke each bump the revision by one and leave the pointers right."""
    async with keyring(rotation_config(moto_endpoint)) as ring:
        registry = ring.registry
        seen: list[tuple[int, int | None, int | None]] = []

        async def after() -> None:
            head = await registry.head()
            assert head is not None
            seen.append((head.revision, head.active_version, head.pending_version))

        await after()
        await registry.add(key(1, "pending"))
        await after()
        await registry.confirm_published(key(1, "pending"), T0 + 1)
        await after()
        await registry.promote(key(1, "pending"), None, T0 + 2, 100)
        await after()
        await registry.add(key(2, "pending"))
        await after()
        await registry.promote(key(2, "pending"), key(1, "active"), T0 + 3, 100)
        await after()
        await registry.expire(key(1, "retired"), T0 + 4)
        await after()
        await registry.add(key(3, "pending"))
        await after()
        await registry.revoke(key(3, "pending"), T0 + 5)
        await after()
        assert seen == [(0, None, None), (1, None, 1), (2, None, 1), (3, 1, None), (4, 1, 2), (5, 2, None),
                        (6, 2, None), (7, 2, 3), (8, 2, None)]
        assert [(r.version, r.status) for r in await registry.records()] == [
            (1, "expired"), (2, "active"), (3, "revoked")]
        assert await registry.record(2) == replace(key(2, "active"), activated=T0 + 3)
        head = await registry.head()
        assert head is not None
        with pytest.raises(RegistryConflict, match="changing the policy at revision 7 in "):
            await registry.set_policy(replace(head.policy, max_token_lifetime_s=60), 7)  # read before the revoke
        await registry.set_policy(replace(head.policy, max_token_lifetime_s=60), 8)
        assert await registry.head() == replace(head, policy=replace(head.policy, max_token_lifetime_s=60),
                                                revision=9)


async def test_a_second_pending_key_is_refused(moto_endpoint: str) -> None:
    """Adding a pending key while the head points at another is a conflict: the first keeps the pointer."""
    async with keyring(rotation_config(moto_endpoint)) as ring:
        await ring.registry.add(key(1, "pending"))
        with pytest.raises(RegistryConflict, match="adding version 2 in "):
            await ring.registry.add(key(2, "pending"))
        head = await ring.registry.head()
        assert head is not None and (head.pending_version, head.revision) == (1, 1)
        assert [(r.version, r.status) for r in await ring.registry.records()] == [(1, "pending")]


async def test_a_write_without_a_head_is_named(moto_endpoint: str) -> None:
    """A registry write on a table without a head fails naming the missing head, not as a lost race."""
    async with keyring(rotation_config(moto_endpoint), create_table=False) as ring:
        await ring.registry.create_table()
        with pytest.raises(RotationError) as info:
            await ring.registry.add(key(1, "pending"))
    assert info.value.code == "no_head" and info.value.message.startswith(
        f"adding version 1 in {ring.config.table}: the registry has no head (version 0)")


def run(capsys: pytest.CaptureFixture[str], path: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["keys", *argv, "--config", str(path)])
    structlog.reset_defaults()
    out, err = capsys.readouterr()
    return code, out, err


async def test_the_first_rotate_stores_the_head(moto_endpoint: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry made before heads existed gets one, from the rotator's file and its records, on the first rotate."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    config = rotation_config(moto_endpoint)
    async with open_keyring(config) as ring:
        await ring.registry.create_table()
    path = tmp_path / "rotate.toml"
    path.write_text(f'[rotation]\ntable = "{config.table}"\nkey_spec = "ECC_NIST_P256"\n')
    policy = ("rotate_every_s=2592000 publish_ahead_s=1500 retire_grace_s=172800 max_token_lifetime_s=3600 alg=ES256 "
              "key_spec=ECC_NIST_P256")
    assert (await asyncio.to_thread(run, capsys, path, "policy"))[:2] == (0, (
        f"no policy stored in {config.table} yet: `jwksd keys policy --apply`, `jwksd keys init-table` or the "
        f"first `jwksd keys rotate` stores this one: {policy}\n"))
    code, out, _ = await asyncio.to_thread(run, capsys, path, "rotate")
    lines = out.splitlines()
    assert code == 0 and lines[0] == f"stored the policy in {config.table}: {policy}"
    assert lines[1].startswith("created v1 kid=")
    async with open_keyring(config) as ring:
        head = await ring.registry.head()
    assert head is not None and (head.revision, head.active_version, head.pending_version) == (1, None, 1)


async def test_a_rotator_file_that_disagrees_is_refused(moto_endpoint: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Another value in the file is refused naming both; a file that leaves it out follows the registry."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    table = rotation_config(moto_endpoint).table
    first, other, bare = tmp_path / "first.toml", tmp_path / "other.toml", tmp_path / "bare.toml"
    common = f'[rotation]\ntable = "{table}"\nkey_spec = "ECC_NIST_P256"\n'
    first.write_text(common + "max_token_lifetime_s = 600\n")
    other.write_text(common + "max_token_lifetime_s = 86400\nretire_grace_s = 100000\n")
    bare.write_text(f'[rotation]\ntable = "{table}"\n')
    assert (await asyncio.to_thread(run, capsys, first, "init-table"))[0] == 0
    code, out, err = await asyncio.to_thread(run, capsys, other, "rotate")
    assert (code, out) == (2, "")
    assert err == (f"jwksd keys rotate: invalid configuration:\n"
                   f"  - rotation.retire_grace_s = 100000 in {other}, but registry {table} holds 172800: remove it "
                   "from the file to follow the registry, or change the registry's policy with `jwksd keys policy "
                   "--apply`\n"
                   f"  - rotation.max_token_lifetime_s = 86400 in {other}, but registry {table} holds 600: remove "
                   "it from the file to follow the registry, or change the registry's policy with `jwksd keys "
                   "policy --apply`\n")
    assert (await asyncio.to_thread(run, capsys, other, "sign", "--claims", "{}"))[0] == 2
    assert (await asyncio.to_thread(run, capsys, first, "list"))[1].splitlines()[1:] == []  # nothing was made
    # The bare file sets no key_spec (its default is RSA_2048) nor lifetime: the registry's ES256 and 600 s hold.
    code, out, _ = await asyncio.to_thread(run, capsys, bare, "rotate", "--now", "2027-01-15T08:00:00Z",
                                           "--clock-override")
    assert code == 0 and out.startswith("created v1 kid=")
    await asyncio.to_thread(run, capsys, bare, "rotate", "--now", "2027-01-15T09:00:00Z", "--clock-override")
    code, _, err = await asyncio.to_thread(run, capsys, bare, "sign", "--claims", "{}", "--ttl-s", "601")
    assert (code, err) == (1, "jwksd keys sign: bad_ttl: --ttl-s 601: expected 1 to rotation.max_token_lifetime_s "
                              "(600), which the retire grace period is computed from\n")
    code, out, _ = await asyncio.to_thread(run, capsys, bare, "list")
    assert out.splitlines()[1].split()[3] == "ES256"


async def test_the_policy_is_changed_deliberately(moto_endpoint: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """keys policy shows stored beside local; --apply refuses a grace too short, stores a sound change at revision+1."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    table = rotation_config(moto_endpoint).table
    first, wanted = tmp_path / "first.toml", tmp_path / "wanted.toml"
    common = f'[rotation]\ntable = "{table}"\nkey_spec = "ECC_NIST_P256"\n'
    first.write_text(common)
    assert (await asyncio.to_thread(run, capsys, first, "init-table"))[0] == 0
    wanted.write_text(common + "max_token_lifetime_s = 86400\n")
    code, out, _ = await asyncio.to_thread(run, capsys, wanted, "policy")
    assert code == 0 and out.splitlines() == [
        f"policy of registry {table} (revision 0); file: {wanted} (- follows the registry)",
        "SETTING               REGISTRY       FILE",
        "rotate_every_s        2592000        -",
        "publish_ahead_s       1500           -",
        "retire_grace_s        172800         -",
        "max_token_lifetime_s  3600           86400          differs",
        "alg                   ES256          -",
        "key_spec              ECC_NIST_P256  ECC_NIST_P256",
        "the file differs: `jwksd keys policy --apply` stores its values (rotators whose files set the old ones "
        "are refused until they are changed too)"]
    # 86400 s tokens with the stored 48 h grace pass a file's own checks; with a 24 h grace they do not.
    # A lifetime the file's own checks pass (with its default grace of 48 h) but the stored grace does not cover.
    async with open_keyring(rotation_config(moto_endpoint, table=table)) as ring:
        head = await ring.registry.head()
        assert head is not None
        await ring.registry.set_policy(replace(head.policy, retire_grace_s=100000), head.revision)
    wanted.write_text(common + "max_token_lifetime_s = 172000\n")
    code, out, err = await asyncio.to_thread(run, capsys, wanted, "policy", "--apply")
    assert (code, out) == (2, "")
    assert err == ("jwksd keys policy: invalid configuration:\n  - rotation.retire_grace_s = 100000: expected more "
                   "than rotation.max_token_lifetime_s + refresh.max_age_s (172600), so a retired key outlives every "
                   "token it signed (the policy it would store)\n")
    wanted.write_text(common + "max_token_lifetime_s = 86400\n")
    code, out, _ = await asyncio.to_thread(run, capsys, wanted, "policy", "--apply")
    assert code == 0 and out.splitlines()[-2:] == ["changed rotation.max_token_lifetime_s: 3600 -> 86400",
                                                   "stored at revision 2"]
    assert (await asyncio.to_thread(run, capsys, wanted, "policy", "--apply"))[1].splitlines()[-1] == (
        "nothing to apply: every value the file sets is the stored one")
    stale = tmp_path / "stale.toml"
    stale.write_text(common + "max_token_lifetime_s = 3600\n")
    code, _, err = await asyncio.to_thread(run, capsys, stale, "rotate")
    assert code == 2 and "rotation.max_token_lifetime_s = 3600 in" in err and "holds 86400" in err
