"""The kid rule: 1 to 256 characters that print as themselves.

Control characters (Cc) break log lines; format and separator characters (Cf, Zl, Zp: bidi
overrides and isolates, zero-width characters, U+2028, U+2029) make two different kids look alike
in logs, dashboards and consoles. The categories are those of the running Python's Unicode
database. A refused kid is never quoted: the detail names the code point and its position.
"""

from __future__ import annotations

import unicodedata
from typing import Literal

MAX_KID_CHARACTERS = 256
CONTROL = "Cc"
FORMAT_OR_SEPARATOR = frozenset({"Cf", "Zl", "Zp"})

KidReason = Literal["bad_kid", "kid_format_character"]


def kid_problem(kid: str) -> tuple[KidReason, str] | None:
    """Why ``kid`` is no kid (a drop reason and a detail without the kid itself), or None when it is one."""
    if not 1 <= len(kid) <= MAX_KID_CHARACTERS:
        return "bad_kid", f"kid has {len(kid)} characters; expected 1 to {MAX_KID_CHARACTERS}"
    if kid.isascii() and kid.isprintable():  # nearly every kid: no Unicode lookups
        return None
    for position, char in enumerate(kid):
        category = unicodedata.category(char)
        if category == CONTROL:
            return "bad_kid", f"kid holds the control character {_codepoint(char)} at position {position}"
        if category in FORMAT_OR_SEPARATOR:
            return ("kid_format_character", f"kid holds {_codepoint(char)} (Unicode category {category}) at "
                                            f"position {position}; format and separator characters make "
                                            "different kids look alike")
    return None


def _codepoint(char: str) -> str:
    return f"U+{ord(char):04X}"
