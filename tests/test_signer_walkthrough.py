"""README.md's "Signing through the signer", run as written after docs/rotation.md's walk-through against a real
`jwksd demo`: an app's token from `jwksd signer` verifies against the JWKS the demo serves."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.daemon_process import base_env
from tests.markdown import ROOT
from tests.test_rotation_walkthrough import Demo, demo, shell_prelude, walkthrough

HEADING = "### Signing through the signer"
__all__ = ["demo"]  # the fixture, shared with the rotation walk-through's test


def readme_block() -> str:
    """The first shell block under the heading in README.md, as the page shows it."""
    section = (ROOT / "README.md").read_text().split(f"\n{HEADING}\n", 1)[1]
    return section.split("\n```sh\n", 1)[1].split("\n```\n", 1)[0] + "\n"


def test_an_app_signs_through_the_signer_against_the_demo(demo: Demo, tmp_path: Path) -> None:
    """After the rotation walk-through the README's block signs with the active key, verified with the demo's JWKS."""
    metrics_port = free_port()
    script = ((walkthrough() + readme_block()).replace("http://127.0.0.1:PORT", demo.endpoint)
              .replace("127.0.0.1:8080", f"127.0.0.1:{demo.port}")
              .replace("127.0.0.1:9465", f"127.0.0.1:{metrics_port}")
              .replace("/tmp/rotate.toml", str(tmp_path / "rotate.toml"))
              .replace("/tmp/jwksd-signer.sock", str(tmp_path / "signer.sock")))
    env = {name: value for name, value in base_env().items() if not name.startswith("AWS_")}
    stop_jobs = "trap 'status=$?; kill $(jobs -p) 2>/dev/null || :; exit $status' EXIT\n"  # no signer left behind
    shell = subprocess.Popen(["bash", "-c", shell_prelude(demo) + stop_jobs + script], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        out, err = shell.communicate(timeout=100)
    except subprocess.TimeoutExpired:
        os.killpg(shell.pid, signal.SIGKILL)
        out, err = shell.communicate()
        pytest.fail(f"the walk-through did not end within 100 s:\n{out}{err}")
    finally:  # a step that failed leaves the signer it started in the background: stop the whole group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
    assert shell.returncode == 0, out + err
    active = re.findall(r"^activated v3 kid=(\S+)", out, re.MULTILINE)[0]
    assert re.search(rf'^\{{"kid": "{active}", "alg": "ES256", "active_since": \d+, "next": \{{"kid": "\S+", '
                     r'"promotable_from": (\d+|null)\}\}$', out, re.MULTILINE), out
    assert re.search(r"^\{'sub': 'app', 'iat': \d+, 'exp': \d+\}$", out, re.MULTILINE), out
    assert re.search(rf'^jwksd_signer_tokens_total\{{kid="{active}",outcome="signed"}} 1\.0$', out, re.MULTILINE), out
    assert not (tmp_path / "signer.sock").exists()  # the signer stopped and removed its socket
