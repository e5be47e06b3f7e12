"""The [rotation] section: defaults derived from [refresh], policy checks with exact messages, rotator-only files."""

from __future__ import annotations

from pathlib import Path

import pytest

from jwksd.__main__ import main
from jwksd.config import DynamoDBSourceConfig, RotationConfig, load_config
from jwksd.errors import ConfigError
from tests.config_helpers import problems as config_problems


def problems(text: str, tmp_path: Path) -> list[str]:
    """The problems of a rotator's ``text``: a file that needs no [source]."""
    return config_problems(text, tmp_path, need_source=False)


def test_rotator_file_needs_no_source(tmp_path: Path) -> None:
    """A file with only [rotation] loads for a rotator; defaults follow the serving side's refresh settings."""
    path = tmp_path / "rotator.toml"
    path.write_text('[refresh]\ninterval_s = 60\nmax_age_s = 120\n[rotation]\nkey_spec = "ECC_NIST_P384"\n')
    config = load_config(path, {}, need_source=False)
    assert config.sources == ()
    assert config.rotation == RotationConfig(key_spec="ECC_NIST_P384", alg="ES384", publish_ahead_s=300)
    with pytest.raises(ConfigError, match=r"source\.secret_id = None"):
        load_config(path, {})  # the daemon still needs a source


def test_endpoints_from_environment(tmp_path: Path) -> None:
    """AWS_ENDPOINT_URL_<SERVICE> beats AWS_ENDPOINT_URL; the file's own endpoint_url beats both."""
    path = tmp_path / "rotator.toml"
    path.write_text("[rotation]\n")
    environ = {"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ENDPOINT_URL_KMS": "http://127.0.0.1:2",
               "AWS_REGION": "eu-west-1"}
    rotation = load_config(path, environ, need_source=False).rotation
    assert rotation is not None
    assert (rotation.kms_endpoint_url, rotation.dynamodb_endpoint_url, rotation.secretsmanager_endpoint_url,
            rotation.region) == ("http://127.0.0.1:2", "http://127.0.0.1:1", "http://127.0.0.1:1", "eu-west-1")
    path.write_text('[rotation]\nendpoint_url = "http://127.0.0.1:3"\n')
    rotation = load_config(path, environ, need_source=False).rotation
    assert rotation is not None and rotation.kms_endpoint_url == rotation.dynamodb_endpoint_url == "http://127.0.0.1:3"


def test_dynamodb_source(tmp_path: Path) -> None:
    """kind = "dynamodb" reads the registry table, its DynamoDB and KMS endpoints from the environment."""
    config = load_config(None, {"JWKSD_SOURCE_KIND": "dynamodb", "JWKSD_SOURCE_TABLE": "keys",
                                "AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:2",
                                "AWS_DEFAULT_REGION": "us-east-1"})
    assert config.sources == (DynamoDBSourceConfig(table="keys", region="us-east-1", endpoint_url="http://127.0.0.1:2",
                                                   kms_endpoint_url="http://127.0.0.1:1"),)


def test_publish_window_shorter_than_caches(tmp_path: Path) -> None:
    """publish_ahead_s below max_age_s + interval_s is refused: a cache could miss the key it is signed with."""
    assert problems("[refresh]\ninterval_s = 300\nmax_age_s = 600\n[rotation]\npublish_ahead_s = 600\n", tmp_path) == [
        "rotation.publish_ahead_s = 600: expected at least refresh.max_age_s + refresh.interval_s (900), "
        "so every verifier holds a new key before it signs"]


def test_grace_shorter_than_tokens(tmp_path: Path) -> None:
    """retire_grace_s not above the token lifetime plus max_age_s is refused: tokens would outlive their key."""
    assert problems("[rotation]\nretire_grace_s = 4200\nmax_token_lifetime_s = 3600\n", tmp_path) == [
        "rotation.retire_grace_s = 4200: expected more than rotation.max_token_lifetime_s + refresh.max_age_s "
        "(4200), so a retired key outlives every token it signed"]


def test_alg_must_match_key_spec(tmp_path: Path) -> None:
    """An algorithm the key spec cannot sign with, an unknown key spec and a bad deletion window are each named."""
    assert problems('[rotation]\nkey_spec = "RSA_2048"\nalg = "ES256"\n', tmp_path) == [
        "rotation.alg = 'ES256': expected an algorithm key_spec 'RSA_2048' can sign with: "
        "RS256, RS384, RS512, PS256, PS384, PS512"]
    assert problems('[rotation]\nkey_spec = "ECC_SECG_P256K1"\ndeletion_window_days = 5\n'
                    'rotate_every_s = 1000\nbackend = "vault"\n', tmp_path) == [
        "rotation.key_spec = 'ECC_SECG_P256K1': expected RSA_2048 or RSA_3072 or RSA_4096 or ECC_NIST_P256 or "
        "ECC_NIST_P384 or ECC_NIST_P521",
        "rotation.rotate_every_s = 1000: expected more than rotation.publish_ahead_s (1500), or each new key "
        "would be due before it could be published",
        "rotation.backend = 'vault': expected kms or local",
        "rotation.deletion_window_days = 5: expected a whole number >= 7 and <= 30"]


def test_check_config_on_a_rotator_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """check-config accepts a rotator's file without [source], prints the policy, and exits 2 on a bad one."""
    path = tmp_path / "rotator.toml"
    path.write_text('[rotation]\ntable = "keys"\nkey_spec = "ECC_NIST_P256"\n')
    assert main(["check-config", "--config", str(path)]) == 0
    assert capsys.readouterr().out == ("rotation ok: table keys, backend kms, ECC_NIST_P256 ES256, rotate every "
                                       "2592000s, publish ahead 1500s, retire grace 172800s\n")
    path.write_text('[rotation]\nkey_spec = "ECC_NIST_P256"\nalg = "RS256"\n')
    assert main(["check-config", "--config", str(path)]) == 2
    assert "rotation.alg = 'RS256': expected an algorithm key_spec 'ECC_NIST_P256' can sign with: ES256" in (
        capsys.readouterr().err)
    path.write_text("")
    assert main(["check-config", "--config", str(path)]) == 2  # neither serving nor rotating
    assert "source.secret_id = None" in capsys.readouterr().err
