"""The [signer] table: ``jwksd signer``'s listeners and registry polling, checked so it never listens publicly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jwksd.config.model import SignerConfig
from jwksd.config.reader import is_loopback, table_section

OTHERS = 0o007
MAX_SOCKET_PATH = 107  # bytes of sun_path, less its terminating NUL (unix(7))


def socket_mode(text: str) -> int | None:
    """The permission bits of an octal mode such as ``0660``; None when it is not one."""
    digits = text[2:] if text.startswith("0o") else text
    if not digits or len(digits) > 4 or any(c not in "01234567" for c in digits):
        return None
    return int(digits, 8)


def read_signer(data: Mapping[str, Any], problems: list[str]) -> SignerConfig | None:
    """The [signer] table, or None when the file has none."""
    if "signer" not in data:
        return None
    section = table_section(data, "signer", problems)
    signer = section.build(SignerConfig)
    section.check_unknown()
    path = str(signer.socket)
    if not signer.socket.is_absolute() or len(path.encode()) > MAX_SOCKET_PATH:
        section.problem("socket", path, f"an absolute path of at most {MAX_SOCKET_PATH} bytes")
    mode = socket_mode(signer.socket_mode)
    if mode is None or mode > 0o777:
        section.problem("socket_mode", signer.socket_mode, "an octal mode such as '0660'")
    elif mode & OTHERS:
        section.problem("socket_mode", signer.socket_mode, "no permission for others (such as '0660'): whoever can "
                        "connect to the socket can sign")
    if signer.tcp_listen is not None:
        if not is_loopback(signer.tcp_listen.host):
            section.problem("tcp_listen", str(signer.tcp_listen), "a loopback address (127.0.0.1, ::1 or "
                            "localhost): the signer never listens beyond this host")
        if signer.token_file is None:
            problems.append("signer.token_file: required with signer.tcp_listen (the bearer token TCP callers send)")
    # token_file alone is for a TCP socket systemd hands over (ListenStream=127.0.0.1:PORT): checked at start.
    if signer.max_view_age_s < 2 * signer.refresh_s:
        problems.append(f"signer.max_view_age_s = {signer.max_view_age_s:g}: expected at least twice signer.refresh_s "
                        f"({2 * signer.refresh_s:g}), or one slow read of the registry would stop the signing")
    return signer
