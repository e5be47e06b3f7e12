"""Where the API listens: a Unix socket, or those systemd hands over (LISTEN_FDS), and optionally loopback TCP.

The Unix socket is created with ``signer.socket_mode`` and ``signer.socket_group`` before it listens,
so no caller can connect while its permissions are still the umask's. A stale socket file (nothing
listens on it) is replaced; a live one, or a file that is not a socket, stops the start. Under socket
activation systemd made the socket (SocketMode=, SocketGroup=) and the signer uses it as it is.

TCP is for callers that cannot reach a socket file: loopback addresses only (a handed-over TCP
socket bound elsewhere is refused too), and every /v1/ request needs the bearer token read from
``signer.token_file``, which must be a regular file of mode 0600 (or 0400) owned by the signer.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import ipaddress
import os
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path

from jwksd.config import SignerConfig
from jwksd.config.signer import socket_mode
from jwksd.errors import ConfigError

BACKLOG = 128
MIN_TOKEN_BYTES = 32
MAX_TOKEN_BYTES = 4096
FIRST_FD = 3  # SD_LISTEN_FDS_START


@dataclass
class Sockets:
    """The listening sockets of the API, the socket file made here (removed on the way out), the bearer token."""

    listening: list[socket.socket] = field(default_factory=list)
    created: tuple[Path, int] | None = None  # path and inode
    token: bytes | None = None

    def close(self) -> None:
        for sock in self.listening:
            sock.close()
        if self.created is not None:
            path, inode = self.created
            with contextlib.suppress(OSError):
                if os.lstat(path).st_ino == inode:  # still ours: a newer signer may have replaced it
                    path.unlink()

    def describe(self) -> list[str]:
        """The addresses listened on, for the log."""
        names = []
        for sock in self.listening:
            name = sock.getsockname()
            names.append(f"unix:{name}" if sock.family == socket.AF_UNIX else f"tcp:{name[0]}:{name[1]}")
        return names


def open_sockets(config: SignerConfig, listen_fds: int) -> Sockets:
    """The API's sockets, listening; ConfigError naming what stops the start."""
    sockets = Sockets()
    try:
        if listen_fds:
            sockets.listening.extend(_inherited(listen_fds))
        else:
            sock, inode = _unix_socket(config)
            sockets.listening.append(sock)
            sockets.created = (config.socket, inode)
        if config.tcp_listen is not None:
            sockets.listening.append(_tcp_socket(config.tcp_listen.host, config.tcp_listen.port))
        if any(s.family != socket.AF_UNIX for s in sockets.listening):
            sockets.token = read_token(config)
    except BaseException:
        sockets.close()
        raise
    return sockets


def _inherited(count: int) -> list[socket.socket]:
    """The sockets systemd passed (sd_listen_fds(3)): streams, Unix or loopback TCP."""
    found = []
    for fd in range(FIRST_FD, FIRST_FD + count):
        sock = socket.socket(fileno=fd)
        found.append(sock)
        if sock.type != socket.SOCK_STREAM:
            raise ConfigError([f"LISTEN_FDS: descriptor {fd} is not a stream socket (ListenStream= in the .socket "
                               "unit)"])
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not ipaddress.ip_address(
                sock.getsockname()[0]).is_loopback:
            raise ConfigError([f"LISTEN_FDS: descriptor {fd} listens on {sock.getsockname()[0]}: the signer never "
                               "listens beyond this host (a loopback address or a socket path)"])
        os.set_inheritable(fd, False)
        sock.setblocking(False)
    return found


def _group_id(name: str) -> int:
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise ConfigError([f"signer.socket_group = {name!r}: no such group"]) from None


def _unix_socket(config: SignerConfig) -> tuple[socket.socket, int]:
    path = config.socket
    mode = socket_mode(config.socket_mode)
    assert mode is not None  # checked by the config reader
    gid = _group_id(config.socket_group) if config.socket_group else -1
    _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.bind(str(path))
        os.chmod(path, mode)  # before listen(): until then every connect is refused
        if gid != -1:
            os.chown(path, -1, gid)
        sock.listen(BACKLOG)
        sock.setblocking(False)
        return sock, os.lstat(path).st_ino
    except OSError as exc:
        sock.close()
        raise ConfigError([f"signer.socket = {str(path)!r}: cannot listen there ({exc.strerror or exc})"]) from exc


def _clear_stale(path: Path) -> None:
    """Remove a socket file nothing listens on; ConfigError for a live one or something else at ``path``."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ConfigError([f"signer.socket = {str(path)!r}: something that is not a socket is there"])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError as exc:
            if exc.errno != errno.ECONNREFUSED:
                raise ConfigError([f"signer.socket = {str(path)!r}: cannot check it ({exc.strerror})"]) from exc
            path.unlink()  # left by a signer that did not stop cleanly
            return
    raise ConfigError([f"signer.socket = {str(path)!r}: another process listens on it"])


def _tcp_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ConfigError([f"signer.tcp_listen = '{host}:{port}': cannot listen there ({exc.strerror or exc})"]
                          ) from exc
    return sock


def read_token(config: SignerConfig) -> bytes:
    """The bearer token: a regular file, mode 0600 or 0400, owned by this user, 32 bytes or more."""
    path = config.token_file
    if path is None:
        raise ConfigError(["signer.token_file: required to listen on TCP (the bearer token callers send)"])
    label = f"signer.token_file = {str(path)!r}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError([f"{label}: cannot be read ({exc.strerror or exc})"]) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError([f"{label}: expected a regular file"])
        if info.st_mode & 0o077 or info.st_uid != os.geteuid():
            raise ConfigError([f"{label}: mode {stat.S_IMODE(info.st_mode):04o}, owner uid {info.st_uid}: expected "
                               f"mode 0600 and owner uid {os.geteuid()} (the signer's), so no one else reads it"])
        content = os.read(fd, MAX_TOKEN_BYTES + 1).strip()
    finally:
        os.close(fd)
    if not MIN_TOKEN_BYTES <= len(content) <= MAX_TOKEN_BYTES or any(c <= 0x20 or c > 0x7e for c in content):
        raise ConfigError([f"{label}: expected {MIN_TOKEN_BYTES} to {MAX_TOKEN_BYTES} printable ASCII characters "
                           "without spaces (e.g. `openssl rand -hex 32`)"])
    return content
