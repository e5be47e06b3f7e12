"""/status as one server-rendered HTML page: no script, no external asset, one stylesheet allowed by its hash.

Rendered from the status document (status_doc.py), so the page and /status.json always say the
same. Every value is escaped; hover details are SVG ``<title>`` and HTML ``title`` attributes.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from jwksd.http.status_svg import outcome_timeline, rotation_timeline
from jwksd.status import iso_time

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:900px;color:#1d2733;
background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #dde3ea;padding-bottom:4px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px 4px 0;vertical-align:top}
th{font-weight:600;color:#4a5868;font-size:12px;text-transform:uppercase;letter-spacing:.03em}
tr+tr td{border-top:1px solid #eef1f4}td .mono{white-space:nowrap}
code,.mono{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12.5px}
.muted{color:#6b7785}.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;font-size:12px}
.b-fresh,.b-pass{background:#d7f3df;color:#17612d}.b-stale,.b-warn,.b-starting{background:#fff0c2;color:#7a5800}
.b-last-known-good,.b-fallback{background:#ffe0c7;color:#8a3b00}.b-none,.b-fail{background:#fbd5d5;color:#8f1a1a}
.summary{margin:6px 0 0}.err{color:#8f1a1a}.legend span{margin-right:14px}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:-1px}
svg text{font:11px system-ui,sans-serif;fill:#1d2733}svg .axis-label{fill:#6b7785}
.o-success,.sw.o-success{fill:#2f9e55;background:#2f9e55}.o-unchanged,.sw.o-unchanged{fill:#9fb3c8;background:#9fb3c8}
.o-rejected_document,.sw.o-rejected_document{fill:#d9822b;background:#d9822b}
.o-fetch_error,.sw.o-fetch_error{fill:#cf3b3b;background:#cf3b3b}
.axis,.tick{stroke:#dde3ea}.now-line{stroke:#1d2733;stroke-width:1.5}svg .now-label{font-weight:600}
.next-line{stroke:#7048e8;stroke-width:1.5;stroke-dasharray:4 3}svg .next-label{fill:#7048e8;font-weight:600}
.p{fill:#8e7cc3}.p-created,.sw.p-created{fill:#c9d3de;background:#c9d3de}.p-published,.sw.p-published{fill:#74a7e0;background:#74a7e0}
.p-active,.sw.p-active{fill:#2f9e55;background:#2f9e55}.p-retired,.sw.p-retired{fill:#e0b84a;background:#e0b84a}
.p-external,.sw.p-external{fill:#a58fd8;background:#a58fd8}
.e-expired,.sw.e-expired{fill:#5b6673;background:#5b6673}
.e-revoked,.sw.e-revoked{fill:#cf3b3b;background:#cf3b3b}svg .s-revoked{fill:#cf3b3b;font-weight:600}
svg .s-active{fill:#17612d;font-weight:600}svg .status{fill:#4a5868}svg .s-expired{fill:#8795a4}
""".strip()
STYLE_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
CSP = (f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
OUTCOMES = (("success", "success"), ("unchanged", "unchanged"), ("rejected_document", "rejected"),
            ("fetch_error", "failed"))
ROWS = 100  # served keys listed (validation.max_keys may allow more); /status.json lists every one
PHASE_LEGEND = (("p-created", "created"), ("p-published", "published"), ("p-active", "active"),
                ("p-retired", "retired"), ("p-external", "external (adopted)"), ("e-expired", "expired"),
                ("e-revoked", "revoked"))


def render(doc: Mapping[str, Any]) -> str:
    """The whole page."""
    now = float(doc["generated_at"])
    served = doc["served"]
    sections = [_header(doc, now), _keys(served, now), _sources(doc, now), _refreshes(doc["refreshes"])]
    if doc["registry"] is not None:
        sections.append(_registry(doc["registry"], now))
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>jwksd status: {escape(served['rung'])}</title><style>{CSS}</style></head><body>"
            + "".join(sections) + "</body></html>")


def when(at: float | None, now: float) -> str:
    """A time as ISO 8601 UTC with how long ago (or in how long) it is."""
    if at is None:
        return '<span class="muted">never</span>'
    return f'<span class="mono">{iso_time(at)}</span> <span class="muted">({relative(at, now)})</span>'


def relative(at: float, now: float) -> str:
    """``3m ago``, ``in 2h``: the largest whole unit."""
    delta = now - at
    text = duration(abs(delta))
    return f"{text} ago" if delta >= 0 else f"in {text}"


def duration(seconds: float) -> str:
    """``seconds`` in its largest whole unit: 30d, 4h, 25m, 9s (what the page and `jwksd status` print)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _badge(value: str) -> str:
    return f'<span class="badge b-{escape(value)}" data-rung="{escape(value)}">{escape(value)}</span>'


def _header(doc: Mapping[str, Any], now: float) -> str:
    served = doc["served"]
    age = "" if served["age_s"] is None else f", confirmed {duration(served['age_s'])} ago"
    standby = " (standing by at start: served to requests, not ready yet)" if served["standby"] else ""
    return (f"<h1>jwksd status {_badge(doc['status'])}</h1>"
            f'<p class="summary" id="summary">Serving {len(served["keys"])} key'
            f'{"" if len(served["keys"]) == 1 else "s"} from rung {_badge(served["rung"])}{age}{standby}. '
            f'<span class="muted">jwksd {escape(doc["jwksd"])}, {iso_time(now)}, '
            f'ready: {"yes" if doc["ready"] else "no"}</span></p>')


def _keys(served: Mapping[str, Any], now: float) -> str:
    rows = [f'<tr class="key" data-kid="{escape(key["kid"])}"><td class="mono">{escape(key["kid"])}</td>'
            f'<td>{escape(_type(key))}</td><td>{escape(str(key["alg"] or "-"))}</td>'
            f'<td>{escape(", ".join(key["sources"]))}</td><td>{when(key["since"], now)}</td></tr>'
            for key in served["keys"][:ROWS]]
    if len(served["keys"]) > ROWS:
        rows.append(f'<tr><td class="muted">and {len(served["keys"]) - ROWS} more (see /status.json)</td></tr>')
    if not rows:
        return '<h2>Served set</h2><p class="err">Nothing is served: no valid key set yet.</p>'
    kept = served.get("revoked_kept") or []
    note = (f'<p class="err">Listed in validation.revoked_kids but still served (revoking them would empty the '
            f'set): {escape(", ".join(kept))}</p>') if kept else ""
    changed = f'<p class="muted">Content last changed {when(served["changed_at"], now)}; ETag ' \
              f'<code>{escape(str(served["etag"]))}</code></p>'
    return ('<h2>Served set</h2><table id="keys"><tr><th>kid</th><th>type</th><th>alg</th><th>source</th>'
            "<th>served since</th></tr>" + "".join(rows) + "</table>" + changed + note)


def _type(key: Mapping[str, Any]) -> str:
    return f"{key['kty']} {key['crv']}" if key.get("crv") else str(key["kty"])


def _sources(doc: Mapping[str, Any], now: float) -> str:
    rows = []
    for source in doc["sources"]:
        error = source["last_error"]
        shown = "-" if error is None else (f'<span class="err"><code>{escape(error["code"])}</code> '
                                           f'{escape(error.get("message", ""))}</span> {when(error["at"], now)}')
        due = "-" if source["next_due"] is None else when(source["next_due"], now)
        rows.append(f'<tr class="source" data-source="{escape(source["name"])}"><td>{escape(source["name"])}</td>'
                    f'<td>{escape(source["kind"])}</td><td>{_badge(source["status"])}</td>'
                    f'<td>{when(source["last_success"], now)}</td><td>{source["consecutive_failures"]}</td>'
                    f"<td>{due}</td><td>{shown}</td></tr>")
    cache = doc["shared_cache"]
    shared = ""
    if cache is not None:
        state = "reachable" if cache["reachable"] else "unreachable: each replica fetches directly"
        error = cache["last_error"]
        shared = (f'<p id="shared-cache">Shared cache {escape(cache.get("url", ""))}: {state}'
                  + ("" if error is None else f', last error <code>{escape(error["code"])}</code> '
                     f'{when(error["at"], now)}') + "</p>")
    return ('<h2>Sources</h2><table id="sources"><tr><th>name</th><th>kind</th><th>state</th><th>last success</th>'
            "<th>failures</th><th>next due</th><th>last error</th></tr>" + "".join(rows) + "</table>" + shared)


def _legend(items: Sequence[tuple[str, str]]) -> str:
    return '<p class="legend">' + "".join(f'<span><i class="sw {cls}"></i>{label}</span>' for cls, label in items) \
        + "</p>"


def _refreshes(refreshes: Mapping[str, Any]) -> str:
    history = refreshes["history"]
    counts = {name: sum(1 for o in history if o["outcome"] == name) for name, _ in OUTCOMES}
    told = ", ".join(f"{counts[name]} {label}" for name, label in OUTCOMES if counts[name])
    return (f'<h2>Refreshes</h2><p>{refreshes["completed"]} completed; the last {len(history)}: {told or "none"}. '
            '<span class="muted">Hover a bar for its time and the kids it added or removed.</span></p>'
            + _legend([(f"o-{name}", label) for name, label in OUTCOMES]) + outcome_timeline(history))


def _registry(registry: Mapping[str, Any], now: float) -> str:
    policy = registry["policy"]
    read = (f'read {when(registry["read_at"], now)} '
            f'{"by the dynamodb source" if registry["read_by"] == "source" else "for this page"}')
    error = registry["last_error"]
    failed = "" if error is None else (f'<p class="err">Last read failed: <code>{escape(error["code"])}</code> '
                                       f'{escape(error.get("message", ""))} {when(error["at"], now)}</p>')
    rules = ('<span class="muted">none known: the registry stores none and there is no [rotation] table</span>'
             if policy is None else
             f'rotate every {duration(policy["rotate_every_s"])}, publish ahead {duration(policy["publish_ahead_s"])}'
             f', retire grace {duration(policy["retire_grace_s"])}, tokens up to '
             f'{duration(policy["max_token_lifetime_s"])}, {escape(policy["key_spec"])} {escape(policy["alg"])} '
             f'<span class="muted">(from the {"registry" if policy["from"] == "registry" else "[rotation] table"})'
             "</span>")
    differ = registry["policy_differences"]
    if differ:
        rules += ('<br><span class="err" id="policy-differences">This host\'s [rotation] disagrees with the registry '
                  '(rotators and signers refuse such a file): ' + "; ".join(
                      f'{escape(d["setting"])} = {escape(str(d["config"]))}, registry {escape(str(d["registry"]))}'
                      for d in differ) + "</span>")
    change = registry["next_change"]
    upcoming = "" if change is None else (f'<p id="next-change">Next due change: <b>{escape(change["change"])}</b> '
                                          f'{when(change["at"], now)}</p>')
    counts: dict[str, int] = {}
    for key in registry["keys"]:
        counts[key["status"]] = counts.get(key["status"], 0) + 1
    statuses = ", ".join(f"{count} {status}" for status, count in counts.items()) or "no keys"
    return (f'<h2>Rotation</h2><p>Registry <code>{escape(registry["table"])}</code>: {escape(statuses)}; {read}.</p>'
            f"{failed}<p>Policy: {rules}</p>{upcoming}" + _legend(PHASE_LEGEND)
            + rotation_timeline(registry["keys"], now, change))
