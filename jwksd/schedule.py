"""When to ask a source again, and when a read should wake the loop: pure functions of explicit inputs.

Times are seconds on one monotonic clock (the loop's); randomness comes from the ``Uniform`` passed in,
so a test fixes it. After a success a source is asked again after ``interval_s`` (or what its fetch
asked for) spread by ±``jitter``, so a fleet started together does not stay in step; after failures,
after a capped exponential backoff drawn from its upper half.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from jwksd.config import RefreshConfig

DUE_SLACK_S = 0.001  # a timer may fire a hair before the due time it was set for


class Uniform(Protocol):
    """A random source: ``random.Random`` or a test's fixed one."""

    def uniform(self, a: float, b: float, /) -> float: ...


def fetch_delay_s(refresh: RefreshConfig, failures: int, rng: Uniform, refresh_in_s: float | None = None) -> float:
    """Seconds until a source is asked again, given its consecutive ``failures`` and its fetch's wish.

    ``failures == 0``: ``refresh_in_s`` (or ``interval_s`` when None) times 1 ± jitter.
    Otherwise: between half and all of ``retry_base_s * 2**(failures - 1)``, capped at ``retry_cap_s``
    and ``interval_s`` (a failing source is never asked less often than a healthy one).
    """
    if failures == 0:
        base = refresh.interval_s if refresh_in_s is None else refresh_in_s
        return base * rng.uniform(1 - refresh.jitter, 1 + refresh.jitter)
    ceiling = min(refresh.retry_cap_s, refresh.interval_s, refresh.retry_base_s * 2 ** (failures - 1))
    return rng.uniform(ceiling / 2, ceiling)


def is_due(due_at: float, now: float) -> bool:
    """Whether a source scheduled for ``due_at`` should be asked at ``now``."""
    return due_at <= now + DUE_SLACK_S


def wait_s(due_times: Iterable[float], now: float) -> float:
    """Seconds from ``now`` until the first of (at least one) sources is due; 0 when one already is."""
    return max(0.0, min(due_times) - now)


def should_revalidate(age_s: float, max_age_s: float, *, refreshing: bool, failures: int) -> bool:
    """Stale-while-revalidate: a read of a set older than ``max_age_s`` wakes the loop.

    Not while a refresh runs (it will confirm the set) nor while a source backs off (a read must not
    undo the backoff).
    """
    return not refreshing and failures == 0 and age_s > max_age_s
