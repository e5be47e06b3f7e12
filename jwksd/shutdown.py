"""Stopping owned tasks on the way out: cancelled, awaited, and never waited for without a bound.

A cancel can be lost: Python 3.11's ``asyncio.wait_for`` drops one that lands as the call it waits
for ends (ruff bans it in jwksd/), and a library may catch CancelledError. A task that lost its
cancel runs on, and a shutdown that awaits it waits forever. So a task still running
``RECANCEL_S`` after its cancel is cancelled again, and one still running after ``timeout_s`` is
named in the log and left behind, so the rest of the shutdown (closing the sources, the listeners)
goes on and the process exits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import structlog

log = structlog.get_logger("jwksd.shutdown")

STOP_TIMEOUT_S = 5.0  # each owned task ends on its cancel at once; this only bounds one that does not
RECANCEL_S = 0.5  # long enough for a task's own clean-up (a lock, a cancelled child) to finish first


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]], timeout_s: float = STOP_TIMEOUT_S) -> set[asyncio.Task[Any]]:
    """Cancel ``tasks`` and wait, at most ``timeout_s``, for them to end; return (and log) those still running.

    A task that ended with an exception is logged (``task_failed``), not raised: one crashed loop
    must not keep the others' resources open.
    """
    tasks = set(tasks)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    running = {task for task in tasks if not task.done()}
    while running and (remaining := deadline - loop.time()) > 0:
        for task in running:
            task.cancel()
        _, running = await asyncio.wait(running, timeout=min(RECANCEL_S, remaining))
    for task in sorted(running, key=lambda t: t.get_name()):
        log.error("task_not_stopped", task=task.get_name(), timeout_s=timeout_s,
                  detail="still running after its cancel; shutdown goes on without it")
    for task in sorted(tasks - running, key=lambda t: t.get_name()):
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("task_failed", task=task.get_name(), exc_info=exc)
    return running
