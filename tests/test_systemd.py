"""The systemd unit: it verifies, its exposure score stays within bound, and jwksd runs under its memory rules."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REGION, Secrets, free_port
from tests.daemon_process import Daemon, base_env
from tests.keys import jwk_set, rsa_jwk, rsa_key

UNIT_DIR = Path(__file__).resolve().parent.parent / "systemd"
UNIT = UNIT_DIR / "jwksd.service"
INSTALLED_AT = "/opt/jwksd/bin/jwksd"
MAX_EXPOSURE = 1.5


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60, check=False)


def exposure(unit: Path) -> tuple[float, str]:
    """systemd-analyze security's overall exposure level of ``unit``, and its report."""
    result = analyze("security", "--offline=true", str(unit))
    assert result.returncode == 0, result.stderr
    match = re.search(rf"Overall exposure level for {re.escape(unit.name)}: (\d+\.\d+)", result.stdout)
    assert match, result.stdout
    return float(match.group(1)), result.stdout


def unit_copy(tmp_path: Path) -> Path:
    """The unit and its drop-in, with ExecStart pointing at this venv's jwksd (verify checks the binary exists)."""
    text = UNIT.read_text()
    assert text.count(f"ExecStart={INSTALLED_AT} ") == 1
    unit = tmp_path / "jwksd.service"
    unit.write_text(text.replace(f"ExecStart={INSTALLED_AT} ", f"ExecStart={Path(sys.executable).parent / 'jwksd'} "))
    shutil.copytree(UNIT_DIR / "jwksd.service.d", tmp_path / "jwksd.service.d")
    return unit


def test_unit_and_drop_in_verify(tmp_path: Path) -> None:
    """systemd-analyze verify passes without a single warning, drop-in included."""
    result = analyze("verify", str(unit_copy(tmp_path)))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_verify_reads_the_drop_in(tmp_path: Path) -> None:
    """The check above covers the drop-in: a bad key in it is reported by name."""
    unit = unit_copy(tmp_path)
    drop_in = tmp_path / "jwksd.service.d" / "environment.conf"
    drop_in.write_text(drop_in.read_text() + "EnviromentFile=/typo\n")
    result = analyze("verify", str(unit))
    assert "environment.conf:12: Unknown key 'EnviromentFile' in section [Service]" in result.stderr


def test_exposure_within_bound() -> None:
    """systemd-analyze security rates the unit at most 1.5 (Debian's redis-server unit: 1.2)."""
    level, report = exposure(UNIT)
    assert level <= MAX_EXPOSURE, report
    assert analyze("security", "--offline=true", f"--threshold={int(MAX_EXPOSURE * 10)}", str(UNIT)).returncode == 0


MDWE_LAUNCHER = """
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN: kept across execve
    sys.exit(100 if ctypes.get_errno() == errno.EINVAL else 101)
os.execv(sys.argv[1], sys.argv[1:])
"""


def _kernel_has_mdwe() -> bool:
    return int(ctypes.CDLL(None).prctl(66, 0, 0, 0, 0)) >= 0  # PR_GET_MDWE


@pytest.mark.skipif(not _kernel_has_mdwe(), reason="the kernel has no PR_SET_MDWE (Linux < 6.3)")
def test_serves_under_memory_deny_write_execute(secrets: Secrets, tmp_path: Path) -> None:
    """With W+X memory refused (what MemoryDenyWriteExecute= enforces) and no_new_privs, jwksd still serves."""
    secret = secrets.create(jwk_set(rsa_jwk(rsa_key(0), "k1")))
    env = base_env(JWKSD_SECRET_ID=secret, JWKSD_LISTEN=f"127.0.0.1:{free_port()}", JWKSD_METRICS_LISTEN="off",
                   JWKSD_STATE_DIR=str(tmp_path), AWS_REGION=REGION, AWS_ENDPOINT_URL_SECRETS_MANAGER=secrets.endpoint)
    argv = ["setpriv", "--no-new-privs", sys.executable, "-c", MDWE_LAUNCHER, sys.executable, "-m", "jwksd", "serve"]
    daemon = Daemon.from_env(env, tmp_path / "jwksd.log", argv=argv)
    try:
        status, _, body = daemon.get()
        assert status == 200 and b'"k1"' in body
        assert (tmp_path / "last-known-good.json").exists()
        assert daemon.stop() == 0
    finally:
        daemon.kill()
