"""docs/validation-rules.md names every reason code the validator can emit, and no other."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from jwksd.validate import DROP_REASONS, REJECT_REASONS

DOC = Path(__file__).parent.parent / "docs" / "validation-rules.md"
CODE = re.compile(r"`([a-z0-9_]+)`")


def documented_reasons(text: str) -> list[str]:
    """The codes in the ``reason`` column of every table of the page, in order of appearance."""
    reasons: list[str] = []
    column: int | None = None
    for line in text.splitlines():
        if not line.startswith("|"):
            column = None
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if column is None:
            column = cells.index("reason") if "reason" in cells else -1
        elif column >= 0 and not set(cells[column]) <= set("-"):
            reasons.extend(CODE.findall(cells[column]))
    return reasons


def test_every_reason_documented() -> None:
    """Each reject and drop reason appears in a reason column, and each code there is one the validator emits."""
    documented = documented_reasons(DOC.read_text())
    assert set(documented) == set(REJECT_REASONS) | set(DROP_REASONS)
    # not_an_object is both a document and a key reason; everything else is listed once.
    assert sorted(documented) == sorted([*REJECT_REASONS, *DROP_REASONS])


def test_documented_command_runs(tmp_path: Path) -> None:
    """The page's `jwksd validate --json` example refuses an all-zero X25519 key with the documented reason."""
    document = tmp_path / "keys.json"
    document.write_text('{"keys":[{"kty":"OKP","kid":"a","crv":"X25519","x":"' + "A" * 43 + '"}]}')
    assert "jwksd validate --json keys.json" in DOC.read_text()
    result = subprocess.run([sys.executable, "-m", "jwksd", "validate", "--json", "keys.json"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stdout.strip()) == (1, '{"outcome": "reject_document", "served_kids": [], '
                                                             '"dropped": [], "reason": "no_valid_keys", "detail": '
                                                             '"all 1 entries were dropped (xdh_small_order)"}')
