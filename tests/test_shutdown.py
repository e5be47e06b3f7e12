"""Stopping owned tasks (jwksd/shutdown.py): a lost cancel is repeated, a task that will not end is left, bounded."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from structlog.testing import capture_logs

from jwksd import shutdown
from jwksd.shutdown import stop_tasks


async def loses_first_cancel(lost: asyncio.Event) -> None:
    """Catches its first cancel (as wait_for or a library may) and waits on."""
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        lost.set()
    await asyncio.Event().wait()


async def test_task_that_lost_its_cancel_is_cancelled_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A task still running after its cancel is cancelled again, and ends within the bound."""
    monkeypatch.setattr(shutdown, "RECANCEL_S", 0.05)
    lost = asyncio.Event()
    task = asyncio.create_task(loses_first_cancel(lost), name="loses-one")
    await asyncio.sleep(0)
    with capture_logs() as logs:
        assert await stop_tasks([task], timeout_s=10.0) == set()
    assert lost.is_set() and task.cancelled()
    assert logs == []


async def test_task_that_never_ends_is_left_and_named() -> None:
    """A task that survives every cancel is left after the bound, named in the log; the call returns."""
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    with capture_logs() as logs:
        assert await stop_tasks([task], timeout_s=0.2) == {task}
    assert logs == [{"event": "task_not_stopped", "task": "stubborn", "timeout_s": 0.2, "log_level": "error",
                     "detail": "still running after its cancel; shutdown goes on without it"}]
    release.set()
    await asyncio.wait_for(task, 10.0)


async def test_failed_task_logged_not_raised() -> None:
    """A task that crashed is logged with its exception; the others are still stopped."""
    async def crash() -> None:
        raise RuntimeError("boom")

    failed = asyncio.create_task(crash(), name="crashed")
    idle = asyncio.create_task(asyncio.Event().wait(), name="idle")
    await asyncio.sleep(0)
    with capture_logs() as logs:
        assert await stop_tasks([failed, idle]) == set()
    assert idle.cancelled()
    assert [(entry["event"], entry["task"], str(entry["exc_info"])) for entry in logs] == [
        ("task_failed", "crashed", "boom")]
