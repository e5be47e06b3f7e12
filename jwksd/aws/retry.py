"""The one retry policy: bounded attempts with full-jitter backoff, for AWS calls and the http source."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import structlog

from jwksd.errors import AwsError, SourceError

log = structlog.get_logger("jwksd.aws.retry")
T = TypeVar("T")


class RetryPolicy(Protocol):
    """The retry settings: every network source config carries them."""

    @property
    def max_retries(self) -> int: ...

    @property
    def retry_base_s(self) -> float: ...

    @property
    def retry_cap_s(self) -> float: ...


@dataclass(frozen=True)
class Retries:
    """A retry policy for callers whose configuration has none of its own."""

    max_retries: int
    retry_base_s: float = 0.2
    retry_cap_s: float = 5.0


NO_RETRIES = Retries(0)


def backoff_s(policy: RetryPolicy, attempt: int) -> float:
    """Full jitter: random(0, min(cap, base * 2^attempt)) seconds after failed attempt ``attempt`` (0-based)."""
    return random.uniform(0, min(policy.retry_cap_s, policy.retry_base_s * 2**attempt))  # noqa: S311 - jitter


async def with_retries(call: Callable[[], Awaitable[T]], policy: RetryPolicy, event: str, **fields: Any) -> T:
    """Await ``call`` up to max_retries + 1 times; after a retryable SourceError or AwsError sleep
    :func:`backoff_s` and log ``event`` with ``fields``. Other errors, and the last one, raise at once."""
    attempts = policy.max_retries + 1
    for attempt in range(attempts):
        try:
            return await call()
        except (SourceError, AwsError) as exc:
            if not exc.retryable or attempt == attempts - 1:
                raise
            delay = backoff_s(policy, attempt)
            log.info(event, **fields, code=exc.code, attempt=attempt + 1, delay_s=round(delay, 3))
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - the last attempt returns or raises
