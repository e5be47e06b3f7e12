"""The atheris harness (fuzz/fuzz_validate.py) in its short form: a few seconds of coverage-guided fuzzing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FUZZ_DIR = Path(__file__).parent.parent / "fuzz"


def test_atheris_harness_short_run(tmp_path: Path) -> None:
    """Three seconds of libFuzzer over the validator, seeded from fuzz/corpus, find no crash."""
    result = subprocess.run(
        [sys.executable, str(FUZZ_DIR / "fuzz_validate.py"), "-max_total_time=3", f"-dict={FUZZ_DIR / 'jwk.dict'}",
         f"-artifact_prefix={tmp_path}/", str(tmp_path), str(FUZZ_DIR / "corpus")],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done" in result.stderr
    assert not list(tmp_path.glob("crash-*"))
