"""The refresh schedule as pure functions: jitter, backoff, due times and stale-while-revalidate."""

from __future__ import annotations

import random

import pytest

from jwksd.config import RefreshConfig
from jwksd.schedule import fetch_delay_s, is_due, should_revalidate, wait_s

REFRESH = RefreshConfig(interval_s=300.0, jitter=0.1, retry_base_s=1.0, retry_cap_s=60.0)


class Edge:
    """A random source that always draws the lower (or the upper) bound."""

    def __init__(self, upper: bool) -> None:
        self.upper = upper

    def uniform(self, a: float, b: float, /) -> float:
        return b if self.upper else a


LOW, HIGH = Edge(upper=False), Edge(upper=True)


def test_success_waits_interval_within_jitter() -> None:
    """After a success the delay is interval_s times 1 ± jitter."""
    assert fetch_delay_s(REFRESH, 0, LOW) == pytest.approx(270.0)
    assert fetch_delay_s(REFRESH, 0, HIGH) == pytest.approx(330.0)


def test_a_fetchs_wish_replaces_the_interval() -> None:
    """A source that asked to be refreshed in N seconds (upstream max-age, shared entry) gets N ± jitter."""
    assert fetch_delay_s(REFRESH, 0, HIGH, refresh_in_s=100.0) == pytest.approx(110.0)
    assert fetch_delay_s(REFRESH, 0, LOW, refresh_in_s=0.0) == 0.0


@pytest.mark.parametrize(("failures", "ceiling"), [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (40, 60.0)])
def test_failures_back_off_exponentially_up_to_the_cap(failures: int, ceiling: float) -> None:
    """The n-th consecutive failure waits between half and all of retry_base_s * 2**(n-1), capped at retry_cap_s."""
    assert (fetch_delay_s(REFRESH, failures, LOW), fetch_delay_s(REFRESH, failures, HIGH)) == (ceiling / 2, ceiling)


def test_backoff_never_exceeds_the_interval() -> None:
    """A failing source is never asked less often than a healthy one: the cap is also interval_s."""
    short = RefreshConfig(interval_s=5.0, retry_base_s=1.0, retry_cap_s=60.0)
    assert fetch_delay_s(short, 10, HIGH) == 5.0


def test_jitter_spreads_a_fleet() -> None:
    """Seeded draws stay within the bounds and differ from each other (replicas do not stay in step)."""
    rng = random.Random(12)
    delays = [fetch_delay_s(REFRESH, 0, rng) for _ in range(50)]
    assert all(270.0 <= d <= 330.0 for d in delays)
    assert len(set(delays)) == 50


def test_due_and_wait() -> None:
    """A source is due at its time (a timer firing a hair early counts); the loop waits for the first due one."""
    assert is_due(10.0, 10.0) and is_due(10.0, 9.9995) and not is_due(10.0, 9.9)
    assert wait_s([12.0, 15.0, 11.0], now=10.0) == 1.0
    assert wait_s([5.0, 20.0], now=10.0) == 0.0


@pytest.mark.parametrize(("age_s", "refreshing", "failures", "expected"), [
    (61.0, False, 0, True),
    (60.0, False, 0, False),  # exactly max_age_s is still fresh
    (61.0, True, 0, False),  # a refresh in flight will confirm it
    (61.0, False, 2, False),  # backing off: a read must not undo the backoff
])
def test_stale_while_revalidate(age_s: float, refreshing: bool, failures: int, expected: bool) -> None:
    """A read wakes the loop only for a set older than max_age_s, when no refresh runs and none backs off."""
    assert should_revalidate(age_s, 60.0, refreshing=refreshing, failures=failures) is expected
