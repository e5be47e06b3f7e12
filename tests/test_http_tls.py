"""Loading a certificate pair: the full chain, and the exact reason a pair is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jwksd.errors import ConfigError
from jwksd.http.tls import file_signature, key_file_problem, load_pair
from tests.tls_ca import TestCA


def pair_files(tmp_path: Path, ca: TestCA, **issue: object) -> tuple[Path, Path]:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    ca.issue(**issue).write(cert, key)  # type: ignore[arg-type]
    return cert, key


def refusal(cert: Path, key: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_pair(cert, key)
    return info.value.problems


def test_chain_loads(tmp_path: Path, ca: TestCA) -> None:
    """A leaf with its intermediate loads; its expiry and subject are read from the leaf."""
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    leaf = ca.issue("jwksd.test")
    leaf.write(cert, key)
    pair = load_pair(cert, key)
    assert pair.not_after == leaf.not_after.timestamp() // 1
    assert pair.subject == "CN=jwksd.test"


def test_mismatched_key_refused(tmp_path: Path, ca: TestCA) -> None:
    """A key from another pair is refused, naming both files."""
    cert, key = pair_files(tmp_path, ca)
    key.write_bytes(ca.issue().key_pem)
    assert refusal(cert, key) == [f"server.tls_cert_file {str(cert)!r} and server.tls_key_file {str(key)!r}: "
                                  "the key does not match the certificate"]


def test_expired_certificate_refused(tmp_path: Path, ca: TestCA) -> None:
    """An expired certificate is refused with its expiry time."""
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    leaf = ca.issue(expired=True)
    leaf.write(cert, key)
    assert refusal(cert, key) == [f"server.tls_cert_file {str(cert)!r}: the certificate expired at "
                                  f"{leaf.not_after:%Y-%m-%dT%H:%M:%SZ}"]


def test_missing_and_garbled_files_refused(tmp_path: Path, ca: TestCA) -> None:
    """A missing file and a cert file that is not PEM are refused, saying which."""
    cert, key = pair_files(tmp_path, ca)
    gone = tmp_path / "gone.key"
    assert refusal(cert, gone) == [f"server.tls_cert_file {str(cert)!r} and server.tls_key_file {str(gone)!r}: "
                                   "cannot be read (No such file or directory)"]
    cert.write_text("not a certificate\n")
    assert refusal(cert, key)[0].startswith(f"server.tls_cert_file {str(cert)!r}: not a PEM certificate (")


def test_key_readable_by_others_refused(tmp_path: Path, ca: TestCA) -> None:
    """A key file open to others is refused with its mode and the chmod that fixes it."""
    cert, key = pair_files(tmp_path, ca)
    key.chmod(0o644)
    assert refusal(cert, key) == [f"server.tls_key_file {str(key)!r}: is readable by others than the daemon's "
                                  "user (mode 0644): chmod 0600 it"]


def test_key_file_rules(tmp_path: Path) -> None:
    """0600 for the daemon's own file; a root-owned file may be group-readable (0640); nobody else's file."""
    key = tmp_path / "tls.key"
    key.write_text("")
    owner = key.stat().st_uid
    other = owner + 4242
    key.chmod(0o600)
    assert key_file_problem(key, uid=owner) is None
    key.chmod(0o640)
    expected = None if owner == 0 else "is readable by others than the daemon's user (mode 0640): chmod 0600 it"
    assert key_file_problem(key, uid=owner) == expected
    if owner == 0:  # a root-owned 0640 key suits a daemon whose group may read it (Kubernetes fsGroup)
        assert key_file_problem(key, uid=other) is None
        key.chmod(0o644)
        assert key_file_problem(key, uid=other) == ("is readable by others than the daemon's user (mode 0644): "
                                                    "chmod 0640 it")
    else:
        assert key_file_problem(key, uid=other) == (f"is owned by uid {owner}, not by the daemon's user "
                                                    f"(uid {other}) or root")


def test_signature_sees_in_place_writes_and_symlink_swaps(tmp_path: Path) -> None:
    """Rewriting a file and swapping the symlink it is reached through both change the signature."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_text("one")
    second.write_text("two!")
    link = tmp_path / "current"
    link.symlink_to(first)
    before = file_signature(link)
    swap = tmp_path / "swap"
    swap.symlink_to(second)
    os.replace(swap, link)
    swapped = file_signature(link)
    assert swapped != before
    second.write_text("three")
    assert file_signature(link) != swapped
    assert file_signature(tmp_path / "missing") == ()
