"""Each setting declared once, on its dataclass field: type and default there, the rest in ``about(...)``.

``about`` puts a :class:`Setting` in the field's metadata: one-line doc, bounds, choices, environment
variable, the value the example config shows, and whether a SIGHUP reload applies it or only a
restart does. The reader, the ``JWKSD_*`` overrides, the example config and the reload's "restart
needed" list are all read from these declarations (``settings``), so a new setting is one field.

To add one: the field, ``field(default=..., metadata=about("what it does", ...))``, in its section's
dataclass; then ``python -m jwksd.config.example > config/jwksd.example.toml``, and its default in
tests/test_config_settings.py. Checks across keys (``max_age_s >= interval_s``) stay in the readers.
"""

from __future__ import annotations

import dataclasses
from typing import Any


class Required:
    """The default of a setting that has none: the file or the environment must give it."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = Required()
KINDS = ("number", "integer", "boolean", "string", "strings", "path", "listen", "url", "table")


@dataclasses.dataclass(frozen=True)
class Setting:
    """One key of the config file: where it lives, its type and default, its limits and how it is applied.

    ``kind`` is how the value is read (from the field's type unless given). ``default`` is
    ``REQUIRED`` for a required key and None for one that is off or automatic unless set.
    ``low``/``high`` bound numbers (``low_open``: the low bound itself is refused). ``restart``:
    a SIGHUP reload keeps the running value and says a restart is needed.
    """

    doc: str
    section: str = ""
    name: str = ""
    kind: str = ""
    default: Any = REQUIRED
    low: float | None = None
    high: float | None = None
    low_open: bool = True
    choices: tuple[str, ...] = ()
    env: str | None = None
    restart: bool = False
    example: Any = None  # what the example config shows instead of the default (or for a required key)
    optional: bool = False  # a listen address that may be "off"

    @property
    def key(self) -> str:
        """The dotted name, as problems and the reload log spell it."""
        return f"{self.section}.{self.name}"

    @property
    def unit(self) -> str:
        """The unit, spelled in the name (``interval_s``, ``max_document_bytes``, ``deletion_window_days``)."""
        for suffix, unit in (("_s", "seconds"), ("_bytes", "bytes"), ("_days", "days")):
            if self.name.endswith(suffix):
                return unit
        return ""


def about(doc: str, *, kind: str = "", low: float | None = None, high: float | None = None, low_open: bool = True,
          choices: tuple[str, ...] = (), env: str | None = None, restart: bool = False, example: Any = None,
          optional: bool = False) -> dict[str, Setting]:
    """The metadata of one setting's field: ``field(default=..., metadata=about("what it does", ...))``."""
    if kind and kind not in KINDS:
        raise ValueError(f"kind {kind!r}: expected one of {', '.join(KINDS)}")
    return {"setting": Setting(doc, kind=kind, low=low, high=high, low_open=low_open, choices=choices, env=env,
                               restart=restart, example=example, optional=optional)}
