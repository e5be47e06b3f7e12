"""The [signer] table: its defaults, and each setting that would let the signer listen beyond this host refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from jwksd.__main__ import main
from jwksd.config import Listen, SignerConfig, load_config
from jwksd.errors import ConfigError

ROTATION = '[rotation]\nkey_spec = "ECC_NIST_P256"\n'


def problems(text: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "signer.toml"
    path.write_text(ROTATION + text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {}, need_source=False)
    return caught.value.problems


def test_defaults_and_absence(tmp_path: Path) -> None:
    """An empty [signer] is every default, spelled out once here; no [signer] at all is None."""
    path = tmp_path / "signer.toml"
    path.write_text(ROTATION + "[signer]\n")
    assert load_config(path, {}, need_source=False).signer == SignerConfig(
        socket=Path("/run/jwksd-signer/signer.sock"), socket_mode="0660", socket_group=None, tcp_listen=None,
        token_file=None, metrics_listen=Listen("127.0.0.1", 9465), refresh_s=5.0, max_view_age_s=60.0,
        max_body_bytes=16384, kms_concurrency=16, shutdown_timeout_s=5.0)
    path.write_text(ROTATION)
    assert load_config(path, {}, need_source=False).signer is None


def test_loopback_tcp_with_a_token_file(tmp_path: Path) -> None:
    """tcp_listen on a loopback address with a token file is accepted, IPv6 and localhost too."""
    path = tmp_path / "signer.toml"
    for host in ("127.0.0.1", "[::1]", "localhost"):
        path.write_text(ROTATION + f'[signer]\ntcp_listen = "{host}:8490"\ntoken_file = "/etc/jwksd/signer.token"\n'
                                   'socket_mode = "0600"\nsocket_group = "apps"\n')
        signer = load_config(path, {}, need_source=False).signer
        assert signer is not None and signer.tcp_listen == Listen(host.strip("[]"), 8490)


@pytest.mark.parametrize(("text", "expected"), [
    ('tcp_listen = "0.0.0.0:8490"\ntoken_file = "/t"', [
        "signer.tcp_listen = '0.0.0.0:8490': expected a loopback address (127.0.0.1, ::1 or localhost): the signer "
        "never listens beyond this host"]),
    ('tcp_listen = "10.1.2.3:8490"\ntoken_file = "/t"', [
        "signer.tcp_listen = '10.1.2.3:8490': expected a loopback address (127.0.0.1, ::1 or localhost): the signer "
        "never listens beyond this host"]),
    ('tcp_listen = "127.0.0.1:8490"', [
        "signer.token_file: required with signer.tcp_listen (the bearer token TCP callers send)"]),
    ("refresh_s = 40", ["signer.max_view_age_s = 60: expected at least twice signer.refresh_s (80), or one slow "
                        "read of the registry would stop the signing"]),
    ('socket_mode = "0666"', ["signer.socket_mode = '0666': expected no permission for others (such as '0660'): "
                              "whoever can connect to the socket can sign"]),
    ('socket_mode = "rw-rw----"', ["signer.socket_mode = 'rw-rw----': expected an octal mode such as '0660'"]),
    ('socket = "signer.sock"', ["signer.socket = 'signer.sock': expected an absolute path of at most 107 bytes"]),
    ("refresh_s = 0", ["signer.refresh_s = 0: expected a number > 0 and <= 300"]),
    ("max_body_bytes = 100", ["signer.max_body_bytes = 100: expected a whole number >= 256 and <= 1048576"]),
    ("listen = 1", ["signer.listen: unknown key"]),
])
def test_refusals_name_the_setting(text: str, expected: list[str], tmp_path: Path) -> None:
    """Each setting the signer cannot run with is named with its value and what was expected."""
    assert problems(f"[signer]\n{text}\n", tmp_path) == expected


def test_check_config_on_a_signer_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """check-config prints what the signer would listen on; a public tcp_listen exits 2."""
    path = tmp_path / "signer.toml"
    path.write_text(ROTATION + '[signer]\nsocket_group = "apps"\ntcp_listen = "127.0.0.1:8490"\ntoken_file = "/t"\n')
    assert main(["check-config", "--config", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[1] == (
        "signer ok: socket /run/jwksd-signer/signer.sock (mode 0660, group apps), tcp 127.0.0.1:8490 (bearer token), "
        "registry read every 5s")
    path.write_text(ROTATION + '[signer]\ntcp_listen = "192.0.2.1:8490"\ntoken_file = "/t"\n')
    assert main(["check-config", "--config", str(path)]) == 2
    assert "signer.tcp_listen = '192.0.2.1:8490': expected a loopback address" in capsys.readouterr().err
