"""The signer's units: the socket and the service verify cleanly, the service is as hardened as jwksd's, and the
socket's group comes from the shipped sysusers.d file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from jwksd.config import SignerConfig
from tests.test_systemd import INSTALLED_AT, MAX_EXPOSURE, UNIT_DIR, analyze, exposure

SERVICE, SOCKET = UNIT_DIR / "jwksd-signer.service", UNIT_DIR / "jwksd-signer.socket"
SYSUSERS = UNIT_DIR / "jwksd-signer.sysusers"


def settings(unit: Path) -> dict[str, list[str]]:
    """Every key=value of ``unit`` (comments left out), each key's values in order."""
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def units_copy(tmp_path: Path) -> tuple[Path, Path]:
    """Both units, ExecStart pointing at this venv's jwksd (verify checks that the binary exists)."""
    text = SERVICE.read_text()
    assert text.count(f"ExecStart={INSTALLED_AT} signer\n") == 1
    service = tmp_path / SERVICE.name
    installed = Path(sys.executable).parent / "jwksd"
    service.write_text(text.replace(f"ExecStart={INSTALLED_AT} ", f"ExecStart={installed} "))
    socket = tmp_path / SOCKET.name
    socket.write_text(SOCKET.read_text())
    return service, socket


def test_service_and_socket_verify(tmp_path: Path) -> None:
    """systemd-analyze verify passes on the service and its socket without a single warning."""
    service, socket = units_copy(tmp_path)
    result = analyze("verify", str(service), str(socket))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_service_keeps_callers_uids_for_the_audit_log() -> None:
    """No PrivateUsers=: in a user namespace SO_PEERCRED would name every caller uid 65534 in the audit line."""
    assert "PrivateUsers" not in settings(SERVICE)


def test_service_exposure_within_bound() -> None:
    """systemd-analyze security rates the signer's service at most 1.5, like the daemon's unit."""
    level, report = exposure(SERVICE)
    assert level <= MAX_EXPOSURE, report


def test_socket_is_the_signers_default_with_a_group_and_no_access_for_others() -> None:
    """The socket unit creates the signer's default socket path with its default mode, owned by root:jwksd-signers."""
    socket, defaults = settings(SOCKET), SignerConfig()
    assert socket["ListenStream"] == [str(defaults.socket)] == ["/run/jwksd-signer/signer.sock"]
    assert (socket["SocketMode"], socket["SocketUser"], socket["SocketGroup"]) == ([defaults.socket_mode], ["root"],
                                                                                   ["jwksd-signers"])
    assert socket["Accept"] == ["no"]
    service = settings(SERVICE)
    assert service["Requires"] == ["jwksd-signer.socket"] and "jwksd-signer.socket" in service["After"][0]


def test_service_runs_as_its_own_user_binding_only_the_metrics_port() -> None:
    """A dynamic user of its own, no capabilities, bind() refused for every port but the default metrics listener's."""
    service = settings(SERVICE)
    assert (service["DynamicUser"], service["User"]) == (["yes"], ["jwksd-signer"])
    assert "Group" not in service and "SupplementaryGroups" not in service  # never in the callers' group
    assert service["CapabilityBoundingSet"] == [""] and service["NoNewPrivileges"] == ["yes"]
    metrics = SignerConfig().metrics_listen
    assert metrics is not None and (service["SocketBindAllow"], service["SocketBindDeny"]) == (
        [f"tcp:{metrics.port}"], ["any"])
    assert service["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert service["Environment"][0] == "JWKSD_CONFIG=%E/jwksd/signer.toml"


def test_sysusers_file_creates_the_socket_group(tmp_path: Path) -> None:
    """systemd-sysusers, run on an empty root with the shipped file, creates the group the socket unit names."""
    (tmp_path / "etc").mkdir()
    result = subprocess.run(["systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    groups = [line.split(":")[0] for line in (tmp_path / "etc" / "group").read_text().splitlines()]
    assert groups == settings(SOCKET)["SocketGroup"]
