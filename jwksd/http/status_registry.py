"""The key registry as the status page shows it: every key, the policy, the next due change; never a long wait on AWS.

With a ``dynamodb`` source the page reuses the head and records of the source's last Scan (no
second Scan per page view). The policy shown is the head's (the registry's stored one), else this
host's ``[rotation]``. Otherwise, with ``[rotation]`` configured (or before the source's first read), the
registry is read on request through :class:`RegistryReader`: at most once per ``CACHE_S``, one read
at a time, each bounded by ``READ_TIMEOUT_S``; a read that fails or times out leaves the last view
(or none) shown with its error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import structlog

from jwksd import aws
from jwksd.aws.registry import KeyRecord, RegistryHead, RegistryPolicy, RegistryReader
from jwksd.aws.retry import NO_RETRIES
from jwksd.config import Config, DynamoDBSourceConfig, RotationConfig
from jwksd.errors import AwsError, RotationError
from jwksd.rotation.head import differences, policy_of
from jwksd.rotation.policy import LEAVING, Policy, next_change, single
from jwksd.sources import Source
from jwksd.status import ErrorInfo
from jwksd.store import Clock

if TYPE_CHECKING:
    from jwksd.metrics import Metrics

log = structlog.get_logger("jwksd.http.status_registry")

CACHE_S = 30.0  # a page view reads the registry at most this often
READ_TIMEOUT_S = 2.0  # and never waits longer than this for it


@dataclass(frozen=True)
class NextChange:
    """The registry's next lifecycle change: when (unix seconds; past while overdue) and what."""

    at: int
    change: str


@dataclass(frozen=True)
class RegistryView:
    """What the page shows of the registry: its head and records as of ``read_at``, and this host's [rotation]."""

    table: str
    records: tuple[KeyRecord, ...] = ()
    read_at: float | None = None  # wall time of the read shown
    read_by: str = "status"  # "source": the dynamodb source's last Scan; "status": a read for the page
    head: RegistryHead | None = None
    error: ErrorInfo | None = None
    rotation: RotationConfig | None = None  # this daemon's [rotation], if any

    @property
    def policy(self) -> RegistryPolicy | None:
        """The policy in force: the registry's stored one, else (a registry without a head) this host's [rotation]."""
        if self.head is not None:
            return self.head.policy
        return None if self.rotation is None else policy_of(self.rotation)

    @property
    def policy_from(self) -> str | None:
        return "registry" if self.head is not None else ("config" if self.rotation is not None else None)

    def differences(self) -> list[tuple[str, Any, Any]]:
        """(key, this host's value, the stored one) for each value this host's [rotation] sets differently."""
        return [] if self.head is None or self.rotation is None else differences(self.rotation, self.head.policy)

    def next_change(self) -> NextChange | None:
        """When the next step changes something, and what it does then (None: no policy, or nothing due)."""
        policy = self.policy
        if policy is None:
            return None
        lifecycle = Policy(policy.rotate_every_s, policy.publish_ahead_s, policy.retire_grace_s)
        due = next_change(self.records, lifecycle)  # as the daemon's jwksd_rotation_next_due_in_seconds
        if due is None:
            return None
        for record in self.records:
            if record.status in LEAVING and record.expires == due:
                adopted = "adopted " if record.status == "external" else ""
                return NextChange(due, f"{adopted}version {record.version} expires")
        active, pending = single(self.records, "active"), single(self.records, "pending")
        if pending is not None and pending.first_published is not None:
            return NextChange(due, f"version {pending.version} becomes active")
        if active is not None:  # the next key is missing or its publish unconfirmed: a rotator is stuck there
            return NextChange(due, f"version {active.version} is due to rotate, and no next key is published yet")
        return NextChange(due, "a new key is created")


class RegistryWatch:
    """Finds the registry of a config (its dynamodb source, else [rotation]) and reads it for the page."""

    def __init__(self, metrics: Metrics, clock: Clock, source_read: Callable[[], DynamoDBSourceRead | None]) -> None:
        self.metrics = metrics
        self.clock = clock
        self.source_read = source_read
        self._reader: tuple[tuple[object, ...], RegistryReader] | None = None
        self._stack = AsyncExitStack()
        self._lock = asyncio.Lock()
        self._last: RegistryView | None = None
        self._tried_at = -CACHE_S  # wall time of the last read for the page, failed or not

    async def view(self, config: Config) -> RegistryView | None:
        """The registry of ``config`` as of a recent read; None when it has no registry."""
        where = registry_of(config)
        if where is None:
            return None
        table, endpoint = where
        read = self.source_read()
        if read is not None and read.table == table:
            return RegistryView(table, read.records, read.at, "source", read.head, rotation=config.rotation)
        async with self._lock:  # one read at a time: a burst of page views makes one Scan
            last = self._last
            if last is None or last.table != table or self.clock.time() - self._tried_at >= CACHE_S:
                await self._read(table, endpoint)
            last = self._last
            assert last is not None
            return replace(last, rotation=config.rotation)

    async def _read(self, table: str, endpoint: aws.Endpoint) -> None:
        """One Scan of the head and records (bounded by READ_TIMEOUT_S); a failure keeps what was read before."""
        self._tried_at = self.clock.time()  # a failed read is not retried sooner either: no AWS call per view
        try:
            reader = await self._open(table, endpoint)  # local work (botocore's models), once: not AWS's time
            async with asyncio.timeout(READ_TIMEOUT_S):  # not wait_for: see local_file.read_file
                head, records = await reader.scan()
            self._last = RegistryView(table, tuple(records), self.clock.time(), head=head)
        except TimeoutError:
            self._failed(table, "timeout", f"no answer within {READ_TIMEOUT_S:g}s")
        except (AwsError, RotationError) as exc:
            self._failed(table, exc.code, exc.message)

    def _failed(self, table: str, code: str, message: str) -> None:
        """Keep the records last read (if any) and when; show the error beside them until the next read."""
        log.warning("status_registry_read_failed", table=table, code=code, message=message)
        kept = self._last if self._last is not None and self._last.table == table else RegistryView(table)
        self._last = replace(kept, error=ErrorInfo(code, message, self.clock.time()))

    async def _open(self, table: str, endpoint: aws.Endpoint) -> RegistryReader:
        """The reader for ``table`` at ``endpoint``, its client opened once (again after a reload changes them)."""
        key = (table, endpoint)
        if self._reader is None or self._reader[0] != key:
            await self.close()
            self._stack = AsyncExitStack()
            count = aws.call_counter(self.metrics, ("Scan",))
            client = await aws.dynamodb(self._stack, endpoint, NO_RETRIES, count)
            self._reader = (key, RegistryReader(client, table))
        return self._reader[1]

    async def close(self) -> None:
        """Close the client of the page's own reads, if one was opened."""
        self._reader = None
        with contextlib.suppress(Exception):  # closing a client whose endpoint went away
            await self._stack.aclose()


@dataclass(frozen=True)
class DynamoDBSourceRead:
    """The dynamodb source's last Scan: its table, every record, and when."""

    table: str
    head: RegistryHead | None
    records: tuple[KeyRecord, ...]
    at: float


def registry_of(config: Config) -> tuple[str, aws.Endpoint] | None:
    """The registry table of ``config`` and where to read it: its dynamodb source first, else [rotation]."""
    for source in config.sources:
        if isinstance(source, DynamoDBSourceConfig):
            return source.table, aws.Endpoint(source.region, source.endpoint_url, source.connect_timeout_s,
                                              min(source.read_timeout_s, READ_TIMEOUT_S))
    rotation = config.rotation
    if rotation is None:
        return None
    return rotation.table, aws.Endpoint(rotation.region, rotation.dynamodb_endpoint_url, rotation.connect_timeout_s,
                                        min(rotation.read_timeout_s, READ_TIMEOUT_S))


def source_read(sources: Iterable[Source]) -> DynamoDBSourceRead | None:
    """The last Scan of the first dynamodb source (behind the shared cache or not), if it has read."""
    from jwksd.sources.dynamodb import DynamoDBSource

    for source in sources:
        inner = getattr(source, "source", source)  # a SharedSource wraps the source it shares
        if isinstance(inner, DynamoDBSource):
            if inner.last_read is None:
                return None
            at, head, records = inner.last_read
            return DynamoDBSourceRead(inner.config.table, head, records, at)
    return None
