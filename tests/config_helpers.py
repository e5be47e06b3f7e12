"""Loading a config text in tests: the problems load_config reports for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from jwksd.config import load_config
from jwksd.errors import ConfigError


def problems(text: str, tmp_path: Path, environ: dict[str, str] | None = None, *,
             need_source: bool = True) -> list[str]:
    """The problems of ``text`` as a config file (with ``environ``); fails the test if it loads."""
    path = tmp_path / "jwksd.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ or {}, need_source=need_source)
    return info.value.problems
