"""SIGHUP: read the config file and environment again, and apply what can change in place.

Applied without dropping a connection or the served set: the sources (re-opened only when their
settings changed), refresh schedule, validation limits, cache headers, state paths and log level.
Everything else (``[server]``: listeners, paths and limits; ``log.format``; any other section) is
built once at start: a change is logged as needing a restart and the running value stays. An
invalid config changes nothing; every problem is logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import fields, is_dataclass, replace
from typing import Any

import structlog
from aiohttp import web

from jwksd.app import CONFIG, METRICS, REFRESHER
from jwksd.config import Config
from jwksd.errors import ConfigError, JwksdError
from jwksd.local_file import READ_TIMEOUT_S
from jwksd.log import set_level
from jwksd.preflight import preflight
from jwksd.validate import DROP_REASONS, REJECT_REASONS

log = structlog.get_logger("jwksd.reload")

LIVE = frozenset({"sources", "refresh", "http_cache", "state", "validation", "path"})
# A change here means the next refresh may serve a different set: refresh at once.
REFRESHING = frozenset({"sources", "refresh", "validation", "state"})


def _differences(name: str, old: Any, new: Any) -> list[str]:
    """Dotted names of the settings that differ between two values of one section."""
    if is_dataclass(old) and is_dataclass(new) and type(old) is type(new):
        return [f"{name}.{f.name}" for f in fields(old) if getattr(old, f.name) != getattr(new, f.name)]
    return [name]


def plan(old: Config, new: Config) -> tuple[Config, list[str], list[str]]:
    """What to apply: ``new`` with the start-only settings of ``old``; the live changes; the ignored ones."""
    applied: dict[str, Any] = {}
    changed: list[str] = []
    restart: list[str] = []
    for section in fields(Config):
        before, after = getattr(old, section.name), getattr(new, section.name)
        if before == after:
            continue
        if section.name in LIVE:
            changed.extend(_differences(section.name, before, after) if section.name != "sources" else ["sources"])
        elif section.name == "log":
            applied["log"] = replace(after, format=before.format)
            changed.extend(["log.level"] if before.level != after.level else [])
            restart.extend(["log.format"] if before.format != after.format else [])
        else:
            applied[section.name] = before
            restart.extend(_differences(section.name, before, after))
    return replace(new, **applied), changed, restart


async def _preflight(config: Config) -> list[str]:
    """``preflight`` off the event loop; ConfigError when it does not finish within the file-read timeout."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(preflight, config), READ_TIMEOUT_S)
    except TimeoutError:
        raise ConfigError([f"the files the config names were not read within {READ_TIMEOUT_S:g} s"]) from None


async def reload_config(app: web.Application, load: Callable[[], Config]) -> bool:
    """Load and apply a new config; on any problem log them all, keep the old one and return False."""
    live, metrics, refresher = app[CONFIG], app[METRICS], app[REFRESHER]
    old = live.current
    try:
        loaded = load()
        # What a restart would stop on stops the reload too. It reads files (the fallback set, the HMAC key):
        # in a worker thread with a timeout, so a FIFO or a hung mount never holds the loop.
        warnings = await _preflight(loaded)
        new, changed, restart = plan(old, loaded)
        source_set = await refresher.source_set.reopen(new)
    except JwksdError as exc:  # ConfigError included
        problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
        metrics.config_reloads.labels("rejected").inc()
        log.error("reload_rejected", problems=problems, detail="the running configuration stays")
        return False
    for warning in warnings:
        log.warning("preflight_warning", problem=warning)
    if restart:
        log.warning("reload_needs_restart", settings=restart,
                    detail="listeners, paths and the log format are set at start: restart to change them")
    previous = refresher.source_set
    await refresher.reconfigure(new, source_set)
    await previous.close_retired(source_set)
    metrics.prepare(sorted(new.server.paths), [s.name for s in new.sources], DROP_REASONS, REJECT_REASONS)
    metrics.set_budgets(new.refresh)
    set_level(new.log.level)
    metrics.config_reloads.labels("applied").inc()
    log.info("reload_applied", changed=changed, restart_needed=restart)
    if REFRESHING & {name.split(".")[0] for name in changed}:
        refresher.trigger()
    return True
