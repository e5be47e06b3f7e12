"""The signer's sockets: made with their mode and group before listening, stale ones replaced, token files checked."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from jwksd.config import Listen, SignerConfig
from jwksd.errors import ConfigError
from jwksd.signer.listen import open_sockets, read_token
from tests.conftest import free_port

NOGROUP = 65534


def settings(tmp_path: Path, **values: object) -> SignerConfig:
    return SignerConfig(**{"socket": tmp_path / "signer.sock", **values})  # type: ignore[arg-type]


def refusal(config: SignerConfig) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        open_sockets(config, 0).close()
    return caught.value.problems


def test_socket_made_with_its_mode_and_group_and_removed(tmp_path: Path) -> None:
    """The socket has socket_mode and socket_group when it listens; close() removes the file it made."""
    config = settings(tmp_path, socket_mode="0600", socket_group="nogroup")
    sockets = open_sockets(config, 0)
    try:
        info = config.socket.stat()
        assert (info.st_mode & 0o777, info.st_gid, sockets.token) == (0o600, NOGROUP, None)
        assert sockets.describe() == [f"unix:{config.socket}"]
    finally:
        sockets.close()
    assert not config.socket.exists()
    numeric = open_sockets(settings(tmp_path, socket_group=str(NOGROUP)), 0)
    numeric.close()


def test_stale_socket_replaced_live_one_and_other_files_refused(tmp_path: Path) -> None:
    """A socket file nobody listens on is replaced; one in use, or a regular file, stops the start by name."""
    config = settings(tmp_path)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(config.socket))
    stale.close()  # the file stays, nothing listens
    first = open_sockets(config, 0)
    try:
        assert refusal(config) == [f"signer.socket = '{config.socket}': another process listens on it"]
    finally:
        first.close()
    config.socket.write_text("")
    assert refusal(config) == [f"signer.socket = '{config.socket}': something that is not a socket is there"]
    missing = settings(tmp_path / "nowhere")
    assert refusal(missing) == [f"signer.socket = '{missing.socket}': cannot listen there (No such file or "
                                "directory)"]
    assert refusal(settings(tmp_path, socket="/x.sock", socket_group="no-such-group")) == [
        "signer.socket_group = 'no-such-group': no such group"]


def test_token_file_must_be_private(tmp_path: Path) -> None:
    """The bearer token file must be 0600 (or 0400), ours, and hold 32+ printable characters."""
    token = tmp_path / "token"
    token.write_text("a" * 32 + "\n")
    token.chmod(0o600)
    config = settings(tmp_path, tcp_listen=Listen("127.0.0.1", free_port()), token_file=token)
    sockets = open_sockets(config, 0)
    try:
        assert sockets.token == b"a" * 32 and sockets.describe()[1].startswith("tcp:127.0.0.1:")
    finally:
        sockets.close()
    label = f"signer.token_file = '{token}'"
    token.chmod(0o640)
    with pytest.raises(ConfigError) as caught:
        read_token(config)
    assert caught.value.problems == [f"{label}: mode 0640, owner uid 0: expected mode 0600 and owner uid 0 (the "
                                     "signer's), so no one else reads it"]
    token.chmod(0o400)  # read-only is private too; the content is what is wrong now
    token.write_text("short")
    with pytest.raises(ConfigError) as caught:
        read_token(config)
    assert caught.value.problems == [f"{label}: expected 32 to 4096 printable ASCII characters without spaces "
                                     "(e.g. `openssl rand -hex 32`)"]
    with pytest.raises(ConfigError) as caught:
        read_token(settings(tmp_path, token_file=tmp_path / "absent"))
    assert caught.value.problems == [f"signer.token_file = '{tmp_path / 'absent'}': cannot be read (No such file or "
                                     "directory)"]
    with pytest.raises(ConfigError) as caught:
        read_token(settings(tmp_path, token_file=tmp_path))
    assert caught.value.problems == [f"signer.token_file = '{tmp_path}': expected a regular file"]
