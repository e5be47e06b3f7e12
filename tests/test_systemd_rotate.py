"""The rotation units: the oneshot service and its hourly timer verify cleanly, the service as hardened as jwksd's."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tests.test_systemd import INSTALLED_AT, MAX_EXPOSURE, UNIT_DIR, analyze, exposure

SERVICE, TIMER = UNIT_DIR / "jwksd-rotate.service", UNIT_DIR / "jwksd-rotate.timer"


def units_copy(tmp_path: Path) -> tuple[Path, Path]:
    """Both units, ExecStart pointing at this venv's jwksd (verify checks that the binary exists)."""
    text = SERVICE.read_text()
    assert text.count(f"ExecStart={INSTALLED_AT} keys rotate\n") == 1
    service = tmp_path / SERVICE.name
    installed = Path(sys.executable).parent / "jwksd"
    service.write_text(text.replace(f"ExecStart={INSTALLED_AT} ", f"ExecStart={installed} "))
    timer = Path(shutil.copy(TIMER, tmp_path / TIMER.name))
    return service, timer


def test_service_and_timer_verify(tmp_path: Path) -> None:
    """systemd-analyze verify passes on the service and the timer without a single warning."""
    service, timer = units_copy(tmp_path)
    result = analyze("verify", str(service), str(timer))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_timer_is_hourly_persistent_and_spread() -> None:
    """The timer fires hourly, catches up after downtime and spreads hosts over a random delay."""
    settings = dict(line.split("=", 1) for line in TIMER.read_text().splitlines() if "=" in line and line[0] != "#")
    assert settings["OnCalendar"] == "hourly" and settings["Persistent"] == "true"
    assert settings["RandomizedDelaySec"] == "15min"
    assert analyze("calendar", "hourly").returncode == 0


def test_service_exposure_within_bound() -> None:
    """systemd-analyze security rates the rotation service at most 1.5, like the daemon's unit."""
    level, report = exposure(SERVICE)
    assert level <= MAX_EXPOSURE, report
