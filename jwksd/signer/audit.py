"""Who asked, and one audit line per token: kid, sub, jti, exp and the caller, never the token or other claims.

On the Unix socket the caller is the kernel's word for it (SO_PEERCRED: the uid, gid and pid of the
process that connected); on the loopback TCP listener, its address and port.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

log = structlog.get_logger("jwksd.signer.audit")

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid (unix(7))
IDENTITY_MAP = ["0", "0", "4294967295"]  # /proc/self/uid_map outside any user namespace
MAX_SUB_CHARS = 256  # a longer sub is logged cut, so no caller can flood the audit log


@dataclass(frozen=True)
class Caller:
    """The process behind a request: its credentials on the socket, or its TCP peer address."""

    uid: int | None = None
    gid: int | None = None
    pid: int | None = None
    peer: str | None = None  # "127.0.0.1:51234" on the TCP listener

    @property
    def over_tcp(self) -> bool:
        return self.peer is not None

    def fields(self) -> dict[str, Any]:
        if self.peer is not None:
            return {"peer": self.peer}
        return {"uid": self.uid, "gid": self.gid, "pid": self.pid}


def caller_of(request: web.Request) -> Caller:
    """The caller of ``request``, from its connection's socket."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return Caller(peer="unknown")
    if sock.family == socket.AF_UNIX:
        try:
            pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
        except OSError:
            return Caller()
        return Caller(uid=uid, gid=gid, pid=pid)
    peer = transport.get_extra_info("peername") if transport is not None else None
    return Caller(peer=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unknown")


def _short(value: Any) -> str | None:
    """A claim as the audit line shows it: a string cut to MAX_SUB_CHARS, another type by its name only."""
    if value is None:
        return None
    text = value if isinstance(value, str) else f"<{type(value).__name__}>"
    return text if len(text) <= MAX_SUB_CHARS else text[:MAX_SUB_CHARS] + "..."


def signed(caller: Caller, *, kid: str, claims: Mapping[str, Any], jti: str | None, exp: int) -> None:
    """The audit line of one token handed out."""
    log.info("token_signed", kid=kid, sub=_short(claims.get("sub")), jti=jti or _short(claims.get("jti")), exp=exp,
             **caller.fields())


def refused(caller: Caller, *, code: str, status: int) -> None:
    """The line of a request that got no token (its claims are not logged either)."""
    log.info("sign_refused", code=code, status=status, **caller.fields())


def uid_map_problem(uid_map: str) -> str | None:
    """What the audit cannot say when this process runs in a user namespace (``/proc/self/uid_map``'s content).

    The kernel reports SO_PEERCRED in the reader's namespace: a caller whose uid is not mapped into it
    (systemd's PrivateUsers=, a rootless container) shows as the overflow uid, 65534.
    """
    if [line.split() for line in uid_map.splitlines() if line.strip()] == [IDENTITY_MAP]:
        return None
    return ("this process runs in a user namespace (systemd PrivateUsers=, a container): a caller whose uid is not "
            "mapped into it is logged as uid 65534; the socket's permissions still apply in full")
