"""HTTPS on the JWKS listener: the server's SSL context and the certificate pair behind it, renewed in place.

The listener keeps one SSL context for its life; each handshake is switched to the context of the
pair in force (``sni_callback``, which OpenSSL calls for every ClientHello, with or without SNI).
A renewal builds a new context from a private copy of the files, so a pair is either loaded whole or
not at all; a connection keeps the context it was handshaken with, so renewals drop none.
"""

from __future__ import annotations

import os
import ssl
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from jwksd.config import ServerConfig
from jwksd.errors import ConfigError
from jwksd.local_file import read_regular_file, read_regular_file_stat

# Mozilla's "intermediate" configuration (ssl-config.mozilla.org, guideline 5.7) for TLS 1.2; TLS 1.3
# uses OpenSSL's default suites, which are Mozilla's. The DHE suites are left out: Python loads no
# DH parameters, so OpenSSL would never pick them.
INTERMEDIATE_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
))
MAX_PEM_FILE_BYTES = 1 << 20  # a certificate chain or a key; far above any real one


@dataclass(frozen=True)
class LoadedPair:
    """A certificate and key that loaded together, and what /health and the metrics say of them."""

    context: ssl.SSLContext
    not_after: float  # Unix time the leaf certificate expires
    subject: str
    loaded_at: float


def server_context() -> ssl.SSLContext:
    """A server context with Mozilla's intermediate choices and no certificate yet."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.set_ciphers(INTERMEDIATE_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_alpn_protocols(["http/1.1"])
    return context


def key_file_problem(key: Path | os.stat_result, uid: int | None = None) -> str | None:
    """Why the key file (a path, or the fstat of what was read) must not be used, or None.

    As PostgreSQL does: owned by the daemon's user, no group or other access (0600); owned by root,
    group read is allowed (0640, for a group the daemon is in, as Kubernetes' fsGroup sets it).
    """
    uid = os.geteuid() if uid is None else uid
    info = key.stat() if isinstance(key, Path) else key
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid == uid and mode & 0o077 == 0:
        return None
    if info.st_uid == 0 and mode & 0o037 == 0:
        return None
    if info.st_uid not in (uid, 0):
        return f"is owned by uid {info.st_uid}, not by the daemon's user (uid {uid}) or root"
    allowed = "0600" if info.st_uid == uid else "0640"
    return f"is readable by others than the daemon's user (mode {mode:04o}): chmod {allowed} it"


def load_pair(cert_file: Path, key_file: Path, *, now: float | None = None) -> LoadedPair:
    """Load the pair into a new context, or raise ConfigError saying why it cannot be served."""
    name = f"server.tls_cert_file {str(cert_file)!r} and server.tls_key_file {str(key_file)!r}"
    now = time.time() if now is None else now
    with tempfile.TemporaryDirectory(prefix="jwksd-tls-") as scratch:  # 0700: the key copy is ours alone
        try:
            # Regular files only, bounded: a FIFO or a device named here must not block or flood start-up.
            # The key's owner and mode are those of the descriptor read, so a swap between check and read
            # cannot slip in a file others can read.
            key_pem, key_info = read_regular_file_stat(key_file, MAX_PEM_FILE_BYTES)
            problem = key_file_problem(key_info)
            if problem is not None:
                raise ConfigError([f"server.tls_key_file {str(key_file)!r}: {problem}"])
            # One copy of each file: what is checked is exactly what is loaded, even mid-renewal.
            cert_copy, key_copy = Path(scratch, "cert.pem"), Path(scratch, "key.pem")
            cert_copy.write_bytes(read_regular_file(cert_file, MAX_PEM_FILE_BYTES)[0])
            key_copy.write_bytes(key_pem)
            leaf = x509.load_pem_x509_certificate(cert_copy.read_bytes())
        except OSError as exc:
            raise ConfigError([f"{name}: cannot be read ({exc.strerror or exc})"]) from exc
        except ValueError as exc:
            raise ConfigError([f"server.tls_cert_file {str(cert_file)!r}: not a PEM certificate ({exc})"]) from exc
        not_after = leaf.not_valid_after_utc.timestamp()
        if not_after <= now:
            raise ConfigError([f"server.tls_cert_file {str(cert_file)!r}: the certificate expired at "
                               f"{leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}"])
        if leaf.not_valid_before_utc.timestamp() > now:
            raise ConfigError([f"server.tls_cert_file {str(cert_file)!r}: the certificate is not valid before "
                               f"{leaf.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}"])
        context = server_context()
        try:
            context.load_cert_chain(cert_copy, key_copy)
        except ssl.SSLError as exc:
            reason = "the key does not match the certificate" if "MISMATCH" in str(exc) else (
                f"OpenSSL cannot load them ({exc.reason or exc})")
            raise ConfigError([f"{name}: {reason}"]) from exc
    return LoadedPair(context=context, not_after=not_after, subject=leaf.subject.rfc4514_string(), loaded_at=now)


def file_signature(*paths: Path) -> tuple[tuple[int, int, int, int], ...]:
    """What changes when a file is rewritten in place or a symlink on its path is swapped (empty if unreadable)."""
    try:
        return tuple((s.st_dev, s.st_ino, s.st_mtime_ns, s.st_size) for s in (os.stat(p) for p in paths))
    except OSError:
        return ()


def check_tls_files(server: ServerConfig) -> None:
    """The start-time check of the configured pair (check-config and serve): ConfigError when it cannot be served."""
    if server.tls_cert_file is not None and server.tls_key_file is not None:
        load_pair(server.tls_cert_file, server.tls_key_file)
