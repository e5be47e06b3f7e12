"""``jwksd status [--url URL]``: read a daemon's /status.json and print a short, aligned summary.

Colour only on a terminal, and never with NO_COLOR set. The exit code tells a script what it needs:
0 serving from the sources (fresh, or stale while they fail); 3 serving from disk (last-known-good
or fallback); 4 not ready (nothing served, or standing by at start); 5 no status could be read
(unreachable, not jwksd, or a document version this command does not know); 2 bad usage.
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any, TextIO

from jwksd.errors import ConfigError
from jwksd.http.status_page import duration, relative
from jwksd.status import iso_time

EXIT_OK, EXIT_USAGE, EXIT_FROM_DISK, EXIT_NOT_READY, EXIT_UNREADABLE = 0, 2, 3, 4, 5
DEFAULT_URL = "http://127.0.0.1:9464"  # server.metrics_listen's default
TIMEOUT_S = 5.0
MAX_BYTES = 8 * 1024 * 1024  # 100 refreshes that each replaced 100 keys are ~1 MB
COLOURS = {"green": "32", "yellow": "33", "red": "31", "dim": "2", "bold": "1"}
ANSI = re.compile(r"\033\[[0-9;]*m")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # what a terminal would act on rather than print
RUNG_COLOUR = {"fresh": "green", "stale": "yellow", "last-known-good": "red", "fallback": "red", "none": "red"}


def default_url(config_path: str | None, environ: Mapping[str, str]) -> str:
    """The metrics listener of the config (``--config`` or $JWKSD_CONFIG), else the default one."""
    if config_path is None and not environ.get("JWKSD_CONFIG"):
        return DEFAULT_URL
    from jwksd.config import load_config

    listen = load_config(config_path, environ, need_source=False).server.metrics_listen
    if listen is None:
        raise ConfigError(["server.metrics_listen is off: give --url (the main listener's, with "
                           "server.status_on_main = true)"])
    host = "127.0.0.1" if listen.host in ("0.0.0.0", "") else listen.host  # noqa: S104 - reaching it, not binding
    host = "[::1]" if host == "::" else (f"[{host}]" if ":" in host else host)
    return f"http://{host}:{listen.port}"


def run_status(url: str | None, config_path: str | None, *, out: TextIO = sys.stdout,
               environ: Mapping[str, str] = os.environ) -> int:
    """Print the summary of the daemon at ``url``; the exit code as the module docstring says."""
    try:
        base = (url or default_url(config_path, environ)).rstrip("/")
    except ConfigError as exc:
        print(f"jwksd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    target = base if base.endswith("/status.json") else base + "/status.json"
    try:
        with urllib.request.urlopen(target, timeout=TIMEOUT_S) as response:  # noqa: S310 - an operator's URL
            doc = json.loads(response.read(MAX_BYTES))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        print(f"jwksd status: cannot read {target}: {reason}", file=sys.stderr)
        return EXIT_UNREADABLE
    if not isinstance(doc, dict) or doc.get("version") != 1:
        print(f"jwksd status: {target} is not a jwksd status document of version 1", file=sys.stderr)
        return EXIT_UNREADABLE
    paint = Paint(out.isatty() and not environ.get("NO_COLOR"))
    try:
        text = summary(doc, paint)
        ready, rung = bool(doc["ready"]), doc["served"]["rung"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # version 1 in name only
        print(f"jwksd status: {target} is not a jwksd status document of version 1 ({type(exc).__name__}: {exc})",
              file=sys.stderr)
        return EXIT_UNREADABLE
    out.write(text)
    if not ready:
        return EXIT_NOT_READY
    return EXIT_FROM_DISK if rung in ("last-known-good", "fallback") else EXIT_OK


class Paint:
    """ANSI colours when ``enabled``, plain text otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, colour: str) -> str:
        return f"\033[{COLOURS[colour]}m{text}\033[0m" if self.enabled else text


def printable(value: Any) -> Any:
    """``value`` with every control character in its strings shown as ``\\xNN``, at any depth.

    A document from --url is another host's word: an escape sequence in an error message or a
    source name must not reach the operator's terminal.
    """
    if isinstance(value, str):
        return CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", value)
    if isinstance(value, list):
        return [printable(item) for item in value]
    if isinstance(value, dict):
        return {printable(key): printable(item) for key, item in value.items()}
    return value


def summary(doc: Mapping[str, Any], paint: Paint) -> str:
    """The lines ``jwksd status`` prints (control characters in the document shown, not sent)."""
    doc = printable(doc)
    now = float(doc["generated_at"])
    served = doc["served"]
    rung = served["rung"]
    ready = "ready" if doc["ready"] else "NOT READY"
    age = "" if served["age_s"] is None else f", confirmed {duration(served['age_s'])} ago"
    lines = [f"{'status':<10}{paint(doc['status'], _verdict(doc['status']))} ({ready}), serving "
             f"{paint(rung, RUNG_COLOUR.get(rung, 'yellow'))}{age}, jwksd {doc['jwksd']}"]
    rows = [[key["kid"], f"{key['kty']} {key['crv']}" if key.get("crv") else str(key["kty"]),
             str(key["alg"] or "-"), ",".join(key["sources"]), f"since {relative(key['since'], now)}"]
            for key in served["keys"]]
    lines += _table("keys", rows or [["(none)"]])
    rows = []
    for source in doc["sources"]:
        error = source["last_error"]
        last = "never" if source["last_success"] is None else f"ok {relative(source['last_success'], now)}"
        failing = f"{source['consecutive_failures']} failures" if source["consecutive_failures"] else "0 failures"
        due = "" if source["next_due"] is None else f"next {relative(source['next_due'], now)}"
        told = "" if error is None or not source["consecutive_failures"] else paint(
            f"{error['code']}: {error.get('message', '')}"[:100], "red")
        rows.append([source["name"], source["kind"], last, failing, due, told])
    lines += _table("sources", rows)
    if doc["shared_cache"] is not None:
        reachable = doc["shared_cache"]["reachable"]
        lines.append(f"{'cache':<10}{'reachable' if reachable else paint('unreachable', 'yellow')}")
    history = doc["refreshes"]["history"]
    counts: dict[str, int] = {}
    for outcome in history:
        counts[outcome["outcome"]] = counts.get(outcome["outcome"], 0) + 1
    told = ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "none yet"
    lines.append(f"{'refreshes':<10}{doc['refreshes']['completed']} completed; last {len(history)}: {told}")
    registry = doc["registry"]
    if registry is not None:
        states: dict[str, int] = {}
        for key in registry["keys"]:
            states[key["status"]] = states.get(key["status"], 0) + 1
        keys = ", ".join(f"{n} {status}" for status, n in states.items()) or "no keys"
        lines.append(f"{'registry':<10}{registry['table']}: {keys}")
        change = registry["next_change"]
        if change is not None:
            lines.append(f"{'next':<10}{change['change']} at {iso_time(change['at'])} ({relative(change['at'], now)})")
        for differ in registry.get("policy_differences", []):
            lines.append(f"{'':<10}" + paint(f"this host's {differ['setting']} = {differ['config']}, the registry "
                                             f"holds {differ['registry']}", "red"))
        if registry["last_error"] is not None:
            lines.append(f"{'':<10}{paint('last read failed: ' + registry['last_error']['code'], 'red')}")
    return "\n".join(lines) + "\n"


def _verdict(status: str) -> str:
    return {"pass": "green", "warn": "yellow"}.get(status, "red")


def _table(title: str, rows: list[list[str]]) -> list[str]:
    """Rows under a title in the first column, each column as wide as its widest cell (colour codes aside)."""
    widths = [max(_width(row[column]) for row in rows if column < len(row)) for column in range(max(map(len, rows)))]
    lines = []
    for index, row in enumerate(rows):
        cells = [cell + " " * (widths[column] - _width(cell)) for column, cell in enumerate(row)]
        lines.append(f"{title if index == 0 else '':<10}" + "  ".join(cells).rstrip())
    return lines


def _width(cell: str) -> int:
    """The printed width of ``cell``: colour codes take none."""
    return len(ANSI.sub("", cell))
