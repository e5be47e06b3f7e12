"""`jwksd keys` as an operator types it: output lines, exit codes, and refusals that name what was wrong."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from jwksd.__main__ import main
from tests.rotation_helpers import rotation_config

pytestmark = pytest.mark.usefixtures("reset_logging")  # conftest: structlog put back after each test


@pytest.fixture
def rotator(moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A rotator config file on the session moto server, and its table name."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    table = rotation_config(moto_endpoint).table
    path = tmp_path / "rotate.toml"
    path.write_text(f'[rotation]\ntable = "{table}"\nkey_spec = "ECC_NIST_P256"\nmax_token_lifetime_s = 600\n')
    return str(path), table


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_table_dry_run_and_list(rotator: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """init-table is idempotent; --dry-run says what would change and changes nothing; list shows the keys."""
    path, table = rotator
    assert run(capsys, "keys", "init-table", "--config", path) == (0, (
        f"created: table {table}\nstored the policy in {table}: rotate_every_s=2592000 publish_ahead_s=1500 "
        "retire_grace_s=172800 max_token_lifetime_s=600 alg=ES256 key_spec=ECC_NIST_P256\n"), "")
    assert run(capsys, "keys", "init-table", "--config", path)[:2] == (0, f"exists already: table {table}\n")
    code, out, _ = run(capsys, "keys", "rotate", "--config", path, "--now", "2027-01-15T08:00:00Z", "--dry-run")
    assert (code, out) == (0, "would create v1 state=pending promotable_from=2027-01-15T08:25:00Z\n")
    assert run(capsys, "keys", "list", "--config", path, "--json")[:2] == (0, "[]\n")
    code, out, _ = run(capsys, "keys", "rotate", "--config", path, "--now", "2027-01-15T09:00+01:00",
                       "--clock-override")
    assert code == 0 and out.startswith("created v1 kid=")
    code, out, _ = run(capsys, "keys", "list", "--config", path)
    header, row = out.splitlines()
    assert header.split() == ["VERSION", "STATUS", "KID", "ALG", "CREATED", "ACTIVATED", "RETIRED", "EXPIRES"]
    assert row.split()[:2] == ["1", "pending"] and row.split()[3:] == ["ES256", "2027-01-15T08:00:00Z", "-", "-", "-"]
    code, out, _ = run(capsys, "keys", "rotate", "--config", path, "--now", "2027-01-15T08:10:00Z", "--clock-override")
    assert out == "nothing to do: no active key, next change due 2027-01-15T08:25:00Z\n"


def test_sign_refusals(rotator: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """sign refuses with no active key, a TTL beyond max_token_lifetime_s, iat/exp in claims, non-object claims."""
    path, table = rotator
    run(capsys, "keys", "init-table", "--config", path)
    code, _, err = run(capsys, "keys", "sign", "--config", path, "--claims", "{}")
    assert code == 1 and err.startswith(f"jwksd keys sign: no_active_key: {table} has no active key yet")
    run(capsys, "keys", "rotate", "--config", path, "--now", "2027-01-15T08:00:00Z", "--clock-override")
    run(capsys, "keys", "rotate", "--config", path, "--now", "2027-01-15T09:00:00Z", "--clock-override")
    code, _, err = run(capsys, "keys", "sign", "--config", path, "--claims", "{}", "--ttl-s", "601")
    assert (code, err) == (1, "jwksd keys sign: bad_ttl: --ttl-s 601: expected 1 to rotation.max_token_lifetime_s "
                              "(600), which the retire grace period is computed from\n")
    code, _, err = run(capsys, "keys", "sign", "--config", path, "--claims", '{"exp": 1, "sub": "x"}')
    assert (code, err) == (1, "jwksd keys sign: bad_claims: claims exp: set by jwksd keys sign from --now and "
                              "--ttl-s; leave them out\n")
    code, _, err = run(capsys, "keys", "sign", "--config", path, "--claims", "[1]")
    assert code == 2 and "--claims: expected a JSON object" in err
    code, out, _ = run(capsys, "keys", "sign", "--config", path, "--claims", '{"sub": "x"}', "--now",
                       "2027-01-15T10:00:00Z")
    payload = jwt.decode(out.strip(), options={"verify_signature": False})
    assert code == 0 and payload == {"sub": "x", "iat": 1800007200, "exp": 1800007800}


def test_usage_errors(rotator: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file without [rotation], a --now without a zone, publish without a secret, a missing table: each named."""
    path, _ = rotator
    other = tmp_path / "serve.toml"
    other.write_text('[source]\nsecret_id = "s"\n')
    assert run(capsys, "keys", "list", "--config", str(other))[::2] == (
        2, "jwksd: invalid configuration:\n  - rotation: missing: expected a [rotation] table (every key in it has a "
           "default)\n")
    assert run(capsys, "keys", "rotate", "--config", path, "--now", "2027-01-15T08:00:00")[::2] == (
        2, "jwksd: invalid configuration:\n  - --now = '2027-01-15T08:00:00': expected an ISO 8601 time with a zone, "
           "e.g. 2026-01-01T00:00:00Z\n")
    assert run(capsys, "keys", "publish", "--config", path)[::2] == (
        2, "jwksd keys publish: expected --secret-id or rotation.publish_secret_id\n")
    code, _, err = run(capsys, "keys", "rotate", "--config", path)  # no init-table: the table does not exist
    assert code == 1 and err.startswith("jwksd keys rotate: ResourceNotFoundException: Scan: ")
