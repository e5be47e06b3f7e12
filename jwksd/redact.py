"""How a URL is shown in config errors, logs and health: without user info, query or fragment.

Any of the three can carry a credential (``https://user:password@host/jwks?token=...``), so every
place that shows a configured URL shows :func:`public_url` of it instead.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

HIDDEN = "***"


def public_url(url: str) -> str:
    """``url`` with its user info, query and fragment each replaced by ``***``: scheme, host, port and path stay.

    The marks keep an error readable ("no query" next to ``...?***``) without showing what was there.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # an unbalanced IPv6 bracket
        return "<not a URL>"
    _, at, host = parts.netloc.rpartition("@")
    return urlunsplit((parts.scheme, f"{HIDDEN}@{host}" if at else host, parts.path,
                       HIDDEN if parts.query else "", HIDDEN if parts.fragment else ""))


def shown(value: Any) -> Any:
    """``value`` as a message may show it: each URL in it (a string, or strings in a list) made public."""
    if isinstance(value, str) and "://" in value:
        return public_url(value)
    if isinstance(value, list | tuple):
        return type(value)(shown(item) for item in value)
    return value
