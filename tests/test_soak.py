"""The soak's short form (tests/soak.py; ``make soak DURATION=...`` runs it longer)."""

from __future__ import annotations

from pathlib import Path

from tests.soak import soak


async def test_soak_short(tmp_path: Path) -> None:
    """Thirty seconds of full load, rotations every 3 s and random AWS faults: every check of tests/soak.py holds."""
    result = await soak(30.0, tmp_path)
    assert result["problems"] == [], result
    assert result["rotations"] >= 5
    assert result["faulted_attempts"] > 0 and result["verified"] > 0
