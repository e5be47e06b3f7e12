"""The settings table of docs/configuration.md, rendered from the declarations: ``python -m jwksd.config.reference``."""

from __future__ import annotations

import math
import sys

from jwksd.config.declare import REQUIRED, Setting
from jwksd.config.example import toml_value
from jwksd.config.settings import SECTIONS, declared, section_settings
from jwksd.config.source_model import SOURCE_CLASSES, SOURCE_KIND

BEGIN = "<!-- settings: rendered by python -m jwksd.config.reference; edit the declarations, not this table -->"
END = "<!-- end of settings -->"
TYPES = {"number": "number", "integer": "whole number", "boolean": "true or false", "string": "string",
         "strings": "list of strings", "path": "file path", "listen": "host:port", "url": "http(s) URL",
         "table": "table"}


def _type(setting: Setting) -> str:
    """The kind, its bounds or choices, and its unit."""
    text = TYPES[setting.kind]
    if setting.choices:
        text = " or ".join(f"`{choice}`" for choice in setting.choices)
    elif setting.kind == "number":
        low = 0.0 if setting.low is None else setting.low
        text += f" {'>' if setting.low_open else '>='} {low:g}"
        if setting.high is not None and setting.high < math.inf:
            text += f", <= {setting.high:g}"
    elif setting.kind == "integer":
        text += f" >= {1 if setting.low is None else int(setting.low)}"
        if setting.high is not None:
            text += f", <= {int(setting.high)}"
    return f"{text} ({setting.unit})" if setting.unit else text


def _default(setting: Setting) -> str:
    if setting.default is REQUIRED:
        return "required"
    if setting.default is None or setting.default == ():
        return "none"
    return f"`{toml_value(setting.default)}`"


def _row(setting: Setting, kind: str = "") -> str:
    key = f"`{setting.key}`" + (f" ({kind})" if kind else "")
    cells = (key, _type(setting), _default(setting), f"`{setting.env}`" if setting.env else "",
             "restart" if setting.restart else "applied", setting.doc.replace("|", "\\|"))
    return "| " + " | ".join(cells) + " |"


def render_table() -> str:
    """Every setting: key, type and unit, default, environment variable, what SIGHUP does with it, doc."""
    lines = [BEGIN, "| key | type | default | variable | on SIGHUP | what it does |", "|---|---|---|---|---|---|"]
    for name in SECTIONS:
        lines.extend(_row(setting) for setting in section_settings(name))
        if name == "server":
            lines.append(_row(SOURCE_KIND))
            for kind, cls in SOURCE_CLASSES.items():
                lines.extend(_row(setting, kind) for setting in declared(cls, "source"))
    lines.append(END)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_table())
