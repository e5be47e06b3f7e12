"""config/jwksd.example.toml, rendered from the settings' declarations: ``python -m jwksd.config.example``.

Each key is shown with its default (or its declared example: for a required key, and commented out
for one that is off unless set), its one-line doc, its environment variable in brackets, and "(restart)"
when a SIGHUP reload does not apply it. The rotation policy is commented out too: once a registry
stores it, a file that sets a value pins it (a different stored value is refused), so a copied
example must not set them all.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from jwksd.aws.head import POLICY_FIELDS
from jwksd.config.declare import Setting
from jwksd.config.model import Listen
from jwksd.config.settings import SECTIONS, declared, section_settings, source_settings
from jwksd.config.source_model import SOURCE_CLASSES

COLUMN = 39
HEADER = """\
# jwksd configuration. Every key is shown with its default; durations are seconds. Generated from
# the declarations in jwksd/config (python -m jwksd.config.example > config/jwksd.example.toml).
# Environment variables override the file (names in brackets). `jwksd check-config --config FILE`
# prints every problem at once and exits 2, and `jwksd serve` refuses to start on any of them.
# SIGHUP (`systemctl reload jwksd`) re-reads this file: an invalid one is refused whole and the
# running config stays; settings marked (restart) take effect at a restart.
"""
NOTES = {
    "server": "the listeners and their limits",
    "source": "where the keys come from; several: [[sources]] tables, each with its own name (docs/fleet.md)",
    "shared_cache": "one Redis shared by a fleet of replicas: docs/fleet.md",
    "validation": "limits of the key validator: docs/validation-rules.md",
    "oidc": "jwksd as an OpenID Connect issuer: docs/oidc.md",
    "rotation": "read by `jwksd keys ...` at each run (docs/rotation.md); needs no [source]",
    "signer": "read by `jwksd signer` at start, with [rotation] (docs/signer.md); needs no [source]",
}


def toml_value(value: Any) -> str:
    """A value as TOML writes it (whole floats without their .0)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Listen | Path):
        value = str(value)
    return json.dumps(value)


def is_off(setting: Setting) -> bool:
    """Unset by default (None, or an empty list): shown commented out, with its example."""
    return setting.default is None or setting.default == ()


def shown(setting: Setting) -> Any:
    """The value the example shows: the declared example, else the default."""
    return setting.default if setting.example is None else setting.example


def in_registry(setting: Setting) -> bool:
    """One of the rotation policy's values, which the registry stores (``jwksd keys policy``)."""
    return setting.section == "rotation" and setting.name in POLICY_FIELDS


def line(setting: Setting, *, prefix: str = "", restart_noted: bool = False) -> str:
    """``key = value   # doc [ENV] (restart)``; commented out when off unless set, or stored in the registry."""
    off = (is_off(setting) or in_registry(setting)) and not prefix
    assignment = f"{prefix}{'# ' if off else ''}{setting.name} = {toml_value(shown(setting))}"
    comment = setting.doc + (f" [{setting.env}]" if setting.env else "")
    comment += "; the registry's once stored (keys policy)" if in_registry(setting) else ""
    comment += " (restart)" if setting.restart and not restart_noted else ""
    return f"{assignment.ljust(COLUMN - 2)}  # {comment}"


def _section(name: str, settings: list[Setting]) -> list[str]:
    """A table; commented out whole when every key is off unless set."""
    all_restart = all(s.restart for s in settings)
    prefix = "# " if all(is_off(s) for s in settings) else ""
    note = "; ".join(filter(None, [NOTES.get(name, ""), "(restart) for each key" if all_restart else ""]))
    lines = [f"{prefix}[{name}]".ljust(COLUMN - 2) + f"  # {note}" if note else f"{prefix}[{name}]"]
    for setting in settings:
        if setting.kind == "table":  # a sub-table of free-form members: the example's, one per line
            lines.append(f"{prefix}[{name}.{setting.name}]".ljust(COLUMN - 2) + f"  # {setting.doc}")
            lines.extend(f"{prefix}{key} = {toml_value(value)}" for key, value in setting.example.items())
        else:
            lines.append(line(setting, prefix=prefix, restart_noted=all_restart))
    return lines


def _sources() -> list[str]:
    first, *others = SOURCE_CLASSES
    lines = _section("source", source_settings(first))
    for kind in others:
        summary = (SOURCE_CLASSES[kind].__doc__ or "").splitlines()[0].replace("``", "`")
        lines.append(f'# kind = "{kind}": {summary[:1].lower()}{summary[1:]}')
        lines.extend(line(s, prefix="#   ") for s in declared(SOURCE_CLASSES[kind], "source") if s.name != "name")
    return lines


def render() -> str:
    """The whole example config."""
    blocks = [HEADER.rstrip("\n")]
    for name in SECTIONS:
        blocks.append("\n".join(_section(name, section_settings(name))))
        if name == "server":
            blocks.append("\n".join(_sources()))
    return "\n\n".join(blocks) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
