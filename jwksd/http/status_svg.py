"""The status page's two drawings as inline SVG: the last refresh outcomes, and the registry's rotation timeline.

No style attributes (the page's Content-Security-Policy allows only its own stylesheet): colours
come from classes. Hover text is SVG ``<title>``, which browsers show without JavaScript.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import Any

from jwksd.status import HISTORY, iso_time

WIDTH = 860
LABEL_W = 210  # the rotation timeline's left column: version, kid, status
ROW_H = 24
SLOT_W = WIDTH / HISTORY
# The phases of a key's bar, in order, and the record time each starts at.
PHASES = (("created", "created"), ("published", "published"), ("active", "activated"), ("retired", "retired"))
LIVE = frozenset({"pending", "active", "retired"})  # still published: the bar runs to now
HOVER_KIDS = 3  # kids named in one bar's hover text; the rest are counted
BARS = 24  # the newest keys drawn (two years of monthly rotation); /status.json lists every one


def outcome_timeline(history: Sequence[Mapping[str, Any]]) -> str:
    """One bar per refresh, oldest left, newest at the right edge; hover: when, outcome, kids added and removed."""
    if not history:
        return '<p class="muted">No refresh has completed yet.</p>'
    height = 46
    parts = [f'<svg class="outcomes" role="img" aria-label="last {len(history)} refresh outcomes" '
             f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" xmlns="http://www.w3.org/2000/svg">']
    start = HISTORY - len(history)
    for index, outcome in enumerate(history):
        name = str(outcome["outcome"])
        x = (start + index) * SLOT_W
        tall = 34 if outcome["added"] or outcome["removed"] else 26  # a change stands out
        hover = [f"{iso_time(outcome['at'])} {_label(name)}, serving {outcome['served']}, "
                 f"{outcome['duration_ms']:g} ms"]
        for change in ("added", "removed"):
            if outcome[change]:
                hover.append(f"{change}: {_some(outcome[change])}")
        parts.append(f'<rect class="o o-{escape(name)}" data-outcome="{escape(name)}" x="{x + 1:.1f}" '
                     f'y="{40 - tall}" width="{SLOT_W - 2:.1f}" height="{tall}">'
                     f'<title>{escape(chr(10).join(hover))}</title></rect>')
    parts.append(f'<line class="axis" x1="0" y1="41" x2="{WIDTH}" y2="41"/></svg>')
    return "".join(parts)


def _some(kids: Sequence[str]) -> str:
    """The first HOVER_KIDS kids, and how many more: a key set replaced whole must not swell the page."""
    named = ", ".join(kids[:HOVER_KIDS])
    return named if len(kids) <= HOVER_KIDS else f"{named} and {len(kids) - HOVER_KIDS} more"


def _label(outcome: str) -> str:
    """The words the page uses: rejected and failed rather than the metric labels."""
    return {"rejected_document": "rejected", "fetch_error": "failed"}.get(outcome, outcome)


def rotation_timeline(keys: Sequence[Mapping[str, Any]], now: float, next_change: Mapping[str, Any] | None) -> str:
    """One bar per key (oldest on top) through its phases, a "now" line, and the next due change."""
    if not keys:
        return '<p class="muted">The registry holds no key yet.</p>'
    older = len(keys) - BARS
    keys = keys[-BARS:]
    ends = [t for key in keys for t in _times(key)]
    low = min([*ends, now])
    high = max([*ends, now, float(next_change["at"]) if next_change else now])
    span = max(high - low, 86400.0)
    low, high = low - span * 0.03, high + span * 0.05
    chart = WIDTH - LABEL_W - 10

    def x(at: float) -> float:
        return float(LABEL_W + (at - low) / (high - low) * chart)

    height = 34 + ROW_H * len(keys) + 22
    parts = [f'<svg class="rotation" role="img" aria-label="rotation timeline of {len(keys)} keys" width="{WIDTH}" '
             f'height="{height}" viewBox="0 0 {WIDTH} {height}" xmlns="http://www.w3.org/2000/svg">']
    for row, key in enumerate(keys):
        parts.append(_bar(key, 30 + row * ROW_H, now, x))
    bottom = 30 + ROW_H * len(keys)
    for index, tick in enumerate(_ticks(low, high)):
        anchor = "end" if index == 4 else "middle"  # the last label ends at the chart's right edge
        parts.append(f'<line class="tick" x1="{x(tick):.1f}" y1="26" x2="{x(tick):.1f}" y2="{bottom}"/>'
                     f'<text class="axis-label" x="{x(tick):.1f}" y="{bottom + 16}" text-anchor="{anchor}">'
                     f"{_day(tick)}</text>")
    if next_change is not None:
        at = float(next_change["at"])
        what = f"next due: {next_change['change']} at {iso_time(at)}"
        parts.append(f'<g class="next" data-at="{int(at)}"><line class="next-line" x1="{x(at):.1f}" y1="14" '
                     f'x2="{x(at):.1f}" y2="{bottom}"/><text class="next-label" x="{x(at) + 3:.1f}" y="12">next'
                     f'</text><title>{escape(what)}</title></g>')
    if older > 0:
        parts.append(f'<text class="axis-label" x="4" y="{bottom + 16}">{older} older not drawn</text>')
    parts.append(f'<g class="now" data-at="{int(now)}"><line class="now-line" x1="{x(now):.1f}" y1="14" '
                 f'x2="{x(now):.1f}" y2="{bottom}"/><text class="now-label" x="{x(now) - 3:.1f}" y="24" '
                 f'text-anchor="end">now</text><title>now: {iso_time(now)}</title></g></svg>')
    return "".join(parts)


def _times(key: Mapping[str, Any]) -> list[float]:
    return [float(key[name]) for name in ("created", "published", "activated", "retired", "expires", "expired",
                                          "revoked") if key.get(name) is not None]


def _bar(key: Mapping[str, Any], y: float, now: float, x: Callable[[float], float]) -> str:
    """A key's row: its label, a segment per phase it went through, and how it ended (expired or revoked)."""
    status = str(key["status"])
    kid = str(key["kid"])
    short = kid if len(kid) <= 14 else kid[:12] + "…"
    end = float(key.get("revoked") or key.get("expired") or (key.get("expires") if status not in LIVE else None)
                or now)
    starts = [(phase, float(key[field])) for phase, field in PHASES if key.get(field) is not None]
    if status not in (*LIVE, "expired", "revoked"):  # a status this page does not know (e.g. external): one segment
        starts = [(status, float(key.get("created") or now))]
        end = float(key.get("expires") or now)
    parts = [f'<g class="bar" data-version="{key["version"]}" data-kid="{escape(kid)}" data-status="{escape(status)}">'
             f'<text class="bar-label" x="4" y="{y + 15}">v{key["version"]} {escape(short)}</text>'
             f'<text class="status s-{escape(status)}" x="{LABEL_W - 8}" y="{y + 15}" text-anchor="end">'
             f'{escape(status)}</text>']
    for index, (phase, start) in enumerate(starts):
        stop = starts[index + 1][1] if index + 1 < len(starts) else end
        stop = min(stop, end)
        if stop < start:
            continue
        left, width = x(start), max(x(stop) - x(start), 1.5)
        what = f"v{key['version']} {phase} from {iso_time(start)}"
        what += f" to {iso_time(stop)}" if stop != now else " until now"
        parts.append(f'<rect class="p p-{escape(phase)}" data-phase="{escape(phase)}" x="{left:.1f}" y="{y + 3}" '
                     f'width="{width:.1f}" height="{ROW_H - 8}"><title>{escape(what)}</title></rect>')
    for ending in ("expired", "revoked"):
        at = key.get(ending)
        if at is not None:
            parts.append(f'<rect class="end e-{ending}" data-end="{ending}" x="{x(at) - 2:.1f}" y="{y + 1}" '
                         f'width="4" height="{ROW_H - 4}"><title>v{key["version"]} {ending} at {iso_time(at)}'
                         '</title></rect>')
    parts.append("</g>")
    return "".join(parts)


def _ticks(low: float, high: float) -> list[float]:
    """Five evenly spaced times across the axis."""
    return [low + (high - low) * step / 4 for step in range(5)]


def _day(at: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(at))
