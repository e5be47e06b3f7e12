"""docs/rotation.md's "Walk-through against the demo", run as written against a real `jwksd demo` process."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.daemon_process import base_env, http_get, terminate, wait_until
from tests.markdown import ROOT

DOC = ROOT / "docs" / "rotation.md"
HEADING = "## Walk-through against the demo"


def walkthrough() -> str:
    """The first shell block under the walk-through's heading, exactly as the page shows it (heredoc included)."""
    section = DOC.read_text().split(f"\n{HEADING}\n", 1)[1]
    return section.split("\n```sh\n", 1)[1].split("\n```\n", 1)[0] + "\n"


class Demo:
    """``jwksd demo`` on free ports, its printed moto endpoint, and its metrics URL."""

    def __init__(self, workdir: Path) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        self.log_path = workdir / "demo.log"
        env = {name: value for name, value in base_env().items() if not name.startswith("AWS_")}
        env["JWKSD_METRICS_LISTEN"] = f"127.0.0.1:{self.metrics_port}"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "jwksd", "demo", "--port", str(self.port)],
                                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        found = wait_until(lambda: re.search(r"export AWS_ENDPOINT_URL=(http://127\.0\.0\.1:\d+)",
                                             self.log_path.read_text()), "the demo to print its endpoint", 60)
        self.endpoint = found.group(1)
        wait_until(lambda: http_get(f"http://127.0.0.1:{self.port}/readyz")[0] == 200, "the demo to be ready")


def shell_prelude(demo: Demo) -> str:
    """Strict bash, and a ``sleep`` that makes the demo refresh now and waits until it has (within 20 s)."""
    # `sleep 30` waits for the demo's next refresh: here the demo is told to refresh (SIGUSR1) and the wait
    # ends when its refresh counter moves, within 20 s.
    return f"""set -euo pipefail
refreshes() {{
  curl -sf http://127.0.0.1:{demo.metrics_port}/metrics | awk '/^jwksd_refreshes_total/ {{s += $2}} END {{print s}}'
}}
sleep() {{
  local before; before=$(refreshes); kill -USR1 {demo.process.pid}
  for _ in $(seq 400); do [ "$(refreshes)" != "$before" ] && return 0; command sleep 0.05; done
  echo "the demo did not refresh" >&2; return 1
}}
"""


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    demo = Demo(tmp_path)
    try:
        yield demo
    finally:
        terminate(demo.process)


def test_the_walk_through_works_against_the_demo(demo: Demo, tmp_path: Path) -> None:
    """Every command of the walk-through succeeds in order against `jwksd demo`, with the outcomes it names."""
    script = (walkthrough().replace("http://127.0.0.1:PORT", demo.endpoint)
              .replace("127.0.0.1:8080", f"127.0.0.1:{demo.port}")
              .replace("/tmp/rotate.toml", str(tmp_path / "rotate.toml")))
    prelude = shell_prelude(demo)
    result = subprocess.run(["bash", "-c", prelude + script], cwd=ROOT, capture_output=True, text=True, timeout=180,
                            env={name: value for name, value in base_env().items() if not name.startswith("AWS_")},
                            check=False)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    expected = [r"^rotation ok: table jwksd-keys, backend kms, ECC_NIST_P256 ES256, .* publish ahead 1230s",
                r"^created v1 kid=\S+ state=pending", r"^adopted v2 kid=(?P<demo>\S+) state=external expires=",
                r"^published 2 keys to jwksd/demo/public-keys: ", r"^confirmed v1 kid=",
                r'^\{"keys":\[.*\]\}', r"activated v1 kid=", r"^created v3 kid=", r"^published 3 keys to ",
                r"^\{'sub': 'walk-through', 'iat': \d+, 'exp': \d+\}$", r"^expired v2 kid=", r"^confirmed v3 kid=",
                r"^activated v3 kid=", r"^retired v1 kid=\S+ expires=", r"^created v4 kid=",
                r"^expired v1 kid=\S+ deletion_in_days=30$", r"^published 2 keys to "]
    position = 0
    for pattern in expected:  # in this order
        match = re.compile(pattern, re.MULTILINE).search(out, position)
        assert match, f"{pattern!r} not found after offset {position} in:\n{out}"
        position = match.end()
    v1 = re.findall(r"^created v1 kid=(\S+)", out, re.MULTILINE)[0]
    demo_kid = re.findall(r"^adopted v2 kid=(\S+)", out, re.MULTILINE)[0]
    served = re.findall(r'^\{"keys":\[.*?\]\}', out, re.MULTILINE)[0]  # after the first `sleep 30`
    assert f'"kid":"{v1}"' in served and f'"kid":"{demo_kid}"' in served
    statuses = [line.split()[:2] for line in out.splitlines()[-4:]]
    assert statuses == [["1", "expired"], ["2", "expired"], ["3", "active"], ["4", "pending"]], out
