"""Bounded retries with full-jitter backoff, shared by the sources that talk to a network."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import structlog

from jwksd.errors import SourceError

log = structlog.get_logger("jwksd.sources")
T = TypeVar("T")


class RetryPolicy(Protocol):
    """The retry settings every network source config carries."""

    @property
    def max_retries(self) -> int: ...

    @property
    def retry_base_s(self) -> float: ...

    @property
    def retry_cap_s(self) -> float: ...


async def with_retries(call: Callable[[], Awaitable[T]], policy: RetryPolicy, event: str, **fields: Any) -> T:
    """Await ``call`` up to max_retries + 1 times; between retryable SourceErrors sleep
    random(0, min(cap, base * 2^attempt)) and log ``event`` with ``fields``. Others raise at once."""
    attempts = policy.max_retries + 1
    for attempt in range(attempts):
        try:
            return await call()
        except SourceError as exc:
            if not exc.retryable or attempt == attempts - 1:
                raise
            delay = random.uniform(0, min(policy.retry_cap_s, policy.retry_base_s * 2**attempt))  # noqa: S311 - jitter
            log.info(event, **fields, code=exc.code, attempt=attempt + 1, delay_s=round(delay, 3))
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - the last attempt returns or raises
