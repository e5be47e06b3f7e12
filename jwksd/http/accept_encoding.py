"""Accept-Encoding (RFC 9110 §12.5.3): may this request get the gzip copy?

The header is a list of codings, each with optional parameters; a ``q`` parameter is its weight
(0 to 1, at most three decimals) and 0 means "not acceptable". A client that says no to gzip in
any way gets the identity body, which every client accepts, so doubt always resolves to identity:
``q=0`` anywhere in an element's parameters (``gzip;level=1;q=0``), a q that is not a qvalue
(``q=x``, ``q=2``, ``q=0.0001``, ``q="1"``) and an element that does not parse all refuse that
coding. Codings and parameter names are case-insensitive; ``x-gzip`` is gzip (RFC 9110 §8.4.1.3);
``*`` weighs every coding not listed, identity included. A header longer than MAX_HEADER_CHARS
(browsers send about 30) is not parsed at all: identity, so a hostile header costs nothing.
"""

from __future__ import annotations

import functools
import re

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_PARAMETER = re.compile(rf"({_TOKEN.pattern})[ \t]*=[ \t]*({_TOKEN.pattern}|{_QUOTED})")
# A quoted string, a run without the delimiter or a quote, the delimiter, or a stray quote.
_PIECES = {delimiter: re.compile(rf'{_QUOTED}|[^{delimiter}"]+|{delimiter}|"') for delimiter in ",;"}
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
GZIP = frozenset({"gzip", "x-gzip"})
MAX_HEADER_CHARS = 512
_WEIGHED = frozenset({*GZIP, "*", "identity"})  # the codings the answer depends on; the rest are skipped cheaply


def coding_weights(header: str) -> dict[str, float]:
    """gzip, x-gzip, identity and * as the header weighs them (lower case); one listed twice keeps the lower weight."""
    weights: dict[str, float] = {}
    for raw in _split(header, ","):
        element = raw.strip(" \t")
        if not element:
            continue  # "a, , b": empty list elements are allowed and mean nothing
        leading = _TOKEN.match(element)
        if leading is None or leading.group().lower() not in _WEIGHED:
            continue
        coding, weight = _element(element)
        if coding is not None:
            weights[coding] = min(weight, weights.get(coding, weight))
    return weights


def _element(element: str) -> tuple[str | None, float]:
    """(coding, weight) of one list element; weight 0 when its q is not a qvalue or the element does not parse."""
    coding, *parameters = _split(element, ";")
    coding = coding.strip(" \t")
    if not _TOKEN.fullmatch(coding):
        leading = _TOKEN.match(coding)
        return (leading.group().lower() if leading else None), 0.0
    weight = 1.0
    for parameter in parameters:
        match = _PARAMETER.fullmatch(parameter.strip(" \t"))
        if match is None:
            return coding.lower(), 0.0
        name, value = match.groups()
        if name.lower() == "q":
            weight = min(weight, float(value)) if _QVALUE.fullmatch(value) else 0.0
    return coding.lower(), weight


def _split(text: str, delimiter: str) -> list[str]:
    """``text`` split at ``delimiter`` outside quoted strings (linear patterns: no backtracking on hostile input)."""
    if '"' not in text:
        return text.split(delimiter)
    parts: list[str] = []
    current: list[str] = []
    for piece in _PIECES[delimiter].findall(text):
        if piece == delimiter:
            parts.append("".join(current))
            current = []
        else:
            current.append(piece)
    parts.append("".join(current))
    return parts


@functools.lru_cache(maxsize=256)
def accepts_gzip(header: str) -> bool:
    """True when the client accepts gzip, and does not weigh identity above it.

    Cached: a fleet of clients sends a handful of distinct headers, so a request pays one dict lookup.
    """
    if len(header) > MAX_HEADER_CHARS:
        return False
    weights = coding_weights(header)
    listed = [weights[coding] for coding in GZIP if coding in weights]
    gzip = min(listed) if listed else weights.get("*", 0.0)
    if gzip <= 0:
        return False
    # Identity is acceptable unless excluded; only a weight above gzip's (its own, or "*"'s) prefers it.
    identity = weights.get("identity", weights.get("*"))
    return identity is None or gzip >= identity
