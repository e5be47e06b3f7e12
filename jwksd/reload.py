"""SIGHUP: read the config file and environment again, and apply what can change in place.

Applied without dropping a connection or the served set: every setting not declared restart-only
(see jwksd/config). Components read the config in force on each use (refresh schedule, validation
in the loop, cache headers, budgets, state_dir), or are rebuilt when a setting they copied changes
(the sources, see source_set.built_from; the fallback file while it is served). A
restart-only setting keeps its running value and the reload names it. A config that preflight or
opening a source refuses changes nothing; every problem is logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import fields, is_dataclass, replace
from typing import Any

import structlog
from aiohttp import web

from jwksd.config import Config, keep_restart_only, restart_required
from jwksd.errors import ConfigError, JwksdError
from jwksd.http.app import CONFIG, METRICS, PUBLISHER, REFRESHER, prepare_metrics
from jwksd.local_file import READ_TIMEOUT_S
from jwksd.log import set_level
from jwksd.preflight import preflight

log = structlog.get_logger("jwksd.reload")

# A change here means the next refresh may serve a different set: refresh at once.
REFRESHING = frozenset({"sources", "refresh", "validation", "state"})


def _differences(name: str, old: Any, new: Any) -> list[str]:
    """Dotted names of the settings that differ between two values of one section."""
    if is_dataclass(old) and is_dataclass(new) and type(old) is type(new):
        return [f"{name}.{f.name}" for f in fields(old) if f.compare and getattr(old, f.name) != getattr(new, f.name)]
    return [name]


def plan(old: Config, new: Config) -> tuple[Config, list[str], list[str]]:
    """What to apply: ``new`` with the running value of each restart-only setting; the applied changes; the others.

    Which settings need a restart is declared once, on the settings (``restart=True``, see jwksd/config).
    systemd's part comes from the environment systemd gave the process, which a reload does not change.
    """
    restart = restart_required(old, new)
    applied = replace(keep_restart_only(old, new), systemd=old.systemd)
    changed: list[str] = []
    for section in fields(Config):
        before, after = getattr(old, section.name), getattr(applied, section.name)
        if before != after:
            changed.extend(["sources"] if section.name == "sources" else _differences(section.name, before, after))
    return applied, changed, restart


async def _preflight(config: Config) -> list[str]:
    """``preflight`` off the event loop; ConfigError when it does not finish within the file-read timeout."""
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):  # not wait_for: it can lose the shutdown's cancel (local_file.py)
            return await asyncio.to_thread(preflight, config)
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
                    detail="set at start (marked (restart) in the example config): restart to change them")
    previous = refresher.source_set
    await refresher.reconfigure(new, source_set)
    if "validation.revoked_kids" in changed:  # at once, from what is held: the source may be down
        await app[PUBLISHER].revoke(refresher.held())
    await previous.close_retired(source_set)
    if "state.fallback_file" in changed:
        await app[PUBLISHER].reread_fallback()
    prepare_metrics(metrics, new)
    metrics.set_budgets(new.refresh)
    set_level(new.log.level)
    metrics.config_reloads.labels("applied").inc()
    log.info("reload_applied", changed=changed, restart_needed=restart)
    if REFRESHING & {name.split(".")[0] for name in changed}:
        refresher.trigger()
    return True
