"""The Prometheus metrics, created on a registry passed in, every label value created up front."""

from __future__ import annotations

import platform
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from jwksd import __version__
from jwksd.config import RefreshConfig

SERVED_SOURCES = ("fresh", "stale", "last-known-good", "fallback")
REFRESH_OUTCOMES = ("success", "unchanged", "fetch_error", "rejected_document")
AWS_OPERATIONS = ("GetSecretValue",)
AWS_COMMON_CODES = ("ok", "ThrottlingException", "AccessDeniedException", "ResourceNotFoundException",
                    "InternalServiceError", "timeout", "network")
UPSTREAM_RESULTS = ("200", "304", "3xx", "4xx", "5xx", "timeout", "network")
SHARED_CACHE_EVENTS = ("hit", "miss", "stale", "lease_acquired", "lease_waited", "lease_timeout", "write",
                       "invalid_entry", "bad_hmac", "wrong_source", "too_large", "rolled_back", "bypassed",
                       "unavailable")
SHARED_CACHE_OPERATIONS = ("read", "lease", "write", "release")
REQUEST_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
REFRESH_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RequestStats:
    """``jwksd_requests_total`` and ``jwksd_request_duration_seconds``: plain ints, exported when scraped.

    Requests are counted on the event loop, and scrapes read there too, so no lock is needed;
    prometheus_client's Counter and Histogram take one per update, which was most of what the
    per-request accounting cost (BENCHMARKS.md).
    """

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts: dict[tuple[str, int, str], int] = {}
        self.durations: dict[str, list[float]] = {}  # path -> [count per bucket..., count above, sum]

    def prepare(self, path: str, status: int | None = None, source: str = "none") -> None:
        """Create a series at 0: the path's histogram, and with ``status`` one request counter."""
        self.durations.setdefault(path, [0] * (len(self.buckets) + 2))
        if status is not None:
            self.counts.setdefault((path, status, source), 0)

    def observe(self, path: str, status: int, source: str, seconds: float) -> None:
        key = (path, status, source)
        self.counts[key] = self.counts.get(key, 0) + 1
        histogram = self.durations.get(path)
        if histogram is None:
            histogram = self.durations[path] = [0] * (len(self.buckets) + 2)
        histogram[bisect_left(self.buckets, seconds)] += 1
        histogram[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("jwksd_requests", "HTTP requests by path, status and X-JWKS-Source.",
                                       labels=["path", "status", "source"])
        for (path, status, source), count in sorted(list(self.counts.items())):
            requests.add_metric([path, str(status), source], count)
        durations = HistogramMetricFamily("jwksd_request_duration_seconds", "Time to answer a request.",
                                          labels=["path"])
        bounds = [*(repr(float(le)) for le in self.buckets), "+Inf"]  # as prometheus_client writes them
        for path, histogram in sorted(list(self.durations.items())):
            counts = list(histogram)
            durations.add_metric([path], list(zip(bounds, accumulate(counts[:-1]), strict=True)), counts[-1])
        yield requests
        yield durations


@dataclass(frozen=True)
class RegistryTimes:
    """A key registry's lifecycle times as a ``dynamodb`` source last read them (unix seconds; None: there is none)."""

    active_since: int | None  # when the active key was activated
    next_published_since: int | None  # when the next (pending) key's publish was first confirmed
    next_due: int | None  # when the next lifecycle change falls due, by the policy in the registry head


class RotationGauges:
    """``jwksd_rotation_*`` of each ``dynamodb`` source, computed from its last read when scraped, so they move.

    A series is left out while its time is unknown: no active key, no confirmed next key, no head (policy).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.times: dict[str, RegistryTimes] = {}

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        active = GaugeMetricFamily("jwksd_rotation_active_key_age_seconds", "Seconds since the registry's active "
                                   "key was activated (dynamodb source).", labels=["source"])
        following = GaugeMetricFamily("jwksd_rotation_next_key_published_age_seconds", "Seconds since the "
                                      "registry's next (pending) key was first confirmed published (dynamodb "
                                      "source).", labels=["source"])
        due = GaugeMetricFamily("jwksd_rotation_next_due_in_seconds", "Seconds until the registry's next "
                                "lifecycle change falls due by the policy in its head; negative while it is "
                                "overdue (dynamodb source).", labels=["source"])
        for source, times in sorted(list(self.times.items())):
            if times.active_since is not None:
                active.add_metric([source], now - times.active_since)
            if times.next_published_since is not None:
                following.add_metric([source], now - times.next_published_since)
            if times.next_due is not None:
                due.add_metric([source], times.next_due - now)
        yield from (active, following, due)


class Metrics:
    """Every metric jwksd exports; one instance per daemon (and per test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.http = RequestStats(REQUEST_BUCKETS_S)
        r.register(self.http)
        self.rotation = RotationGauges()
        r.register(self.rotation)
        self.refreshes = Counter("jwksd_refreshes", "Refreshes by source and outcome.",
                                 ["source", "outcome"], registry=r)
        self.refresh_duration = Histogram("jwksd_refresh_duration_seconds", "Time a refresh took, fetch included.",
                                          ["source"], buckets=REFRESH_BUCKETS_S, registry=r)
        self.aws_calls = Counter("jwksd_aws_calls", "Calls to AWS, retries included, by operation and result code.",
                                 ["operation", "code"], registry=r)
        self.keys_served = Gauge("jwksd_keys_served", "Keys in the served set.", registry=r)
        self.keys_dropped = Counter("jwksd_keys_dropped", "Keys left out of a document, by reason.",
                                    ["reason"], registry=r)
        self.documents_rejected = Counter("jwksd_documents_rejected", "Documents refused whole, by reason.",
                                          ["reason"], registry=r)
        self.kids_removed = Counter("jwksd_kids_removed", "Kids that left the served set.", registry=r)
        self.revocations_kept = Counter("jwksd_revocations_kept", "Times validation.revoked_kids was not applied "
                                        "because every served key is revoked: the set stays served.", registry=r)
        self.served_age = Gauge("jwksd_served_age_seconds", "Seconds since the served set was last confirmed.",
                                registry=r)
        self.last_success = Gauge("jwksd_last_success_timestamp_seconds", "Unix time of the last successful refresh.",
                                  ["source"], registry=r)
        self.last_failure = Gauge("jwksd_last_failure_timestamp_seconds", "Unix time of the last failed refresh.",
                                  ["source"], registry=r)
        self.last_error = Info("jwksd_last_error", "Code of the last refresh error.", ["source"], registry=r)
        self.serving = Gauge("jwksd_serving", "1 for the rung of the ladder being served, else 0.",
                             ["source"], registry=r)
        self.state_errors = Counter("jwksd_state_errors", "Failures to read or write the last-known-good file.",
                                    ["operation"], registry=r)
        self.config_reloads = Counter("jwksd_config_reloads", "SIGHUP reloads by outcome: applied or rejected.",
                                      ["outcome"], registry=r)
        self.refresh_interval = Gauge("jwksd_refresh_interval_seconds", "refresh.interval_s in force.", registry=r)
        self.max_age = Gauge("jwksd_max_age_seconds", "refresh.max_age_s in force: an older set is served as stale.",
                             registry=r)
        self.max_staleness = Gauge("jwksd_max_staleness_seconds",
                                   "refresh.max_staleness_s in force: the staleness budget.", registry=r)
        self.upstream_requests = Counter("jwksd_upstream_requests", "Requests to upstream JWKS URLs, retries "
                                         "included, by source and result.", ["source", "result"], registry=r)
        self.shared_cache_events = Counter("jwksd_shared_cache_events", "What each refresh found in the shared "
                                           "cache, by source and event.", ["source", "event"], registry=r)
        self.shared_cache_errors = Counter("jwksd_shared_cache_errors", "Redis operations that failed or timed "
                                           "out (the replica then fetches directly), by operation.",
                                           ["operation"], registry=r)
        self.shared_cache_up = Gauge("jwksd_shared_cache_up", "1 while the shared cache answers, 0 while the "
                                     "replica fetches directly.", registry=r)
        self.tls_certificate_expiry = Gauge("jwksd_tls_certificate_expiry_timestamp_seconds", "Unix time the TLS "
                                            "certificate in force expires (notAfter); 0 without TLS.", registry=r)
        self.tls_reloads = Counter("jwksd_tls_reloads", "TLS certificate reloads (SIGHUP or a file change) by outcome: "
                                   "applied, or rejected (the previous pair stays).", ["outcome"], registry=r)
        self.connections_open = Gauge("jwksd_connections_open", "Client connections open, by listener.",
                                      ["listener"], registry=r)
        self.connections_max = Gauge("jwksd_connections_max", "server.max_connections in force, by listener.",
                                     ["listener"], registry=r)
        self.connections_cut = Counter("jwksd_connections_cut", "Connections the server closed or refused, by "
                                       "listener and reason: write_timeout, capacity_evicted (a stalled one, to "
                                       "make room), capacity_refused (503).", ["listener", "reason"], registry=r)
        self.build_info = Info("jwksd_build", "Version of jwksd and of Python.", registry=r)
        self.build_info.info({"version": __version__, "python_version": platform.python_version()})
        for source in SERVED_SOURCES:
            self.serving.labels(source)
        self.prepare_aws(AWS_OPERATIONS)
        for operation in ("read", "write"):
            self.state_errors.labels(operation)
        for operation in SHARED_CACHE_OPERATIONS:
            self.shared_cache_errors.labels(operation)
        for outcome in ("applied", "rejected"):
            self.config_reloads.labels(outcome)
            self.tls_reloads.labels(outcome)
        self._sources: set[str] = set()

    def prepare(self, paths: Iterable[str], source_names: Iterable[str], drop_reasons: Iterable[str],
                reject_reasons: Iterable[str]) -> None:
        """Create the label values that depend on configuration so every series reads 0 from the start."""
        for path in paths:
            self.http.prepare(path)
            for source in SERVED_SOURCES:
                for status in (200, 304):
                    self.http.prepare(path, status, source)
            self.http.prepare(path, 503, "none")
        for name in source_names:
            self.refresh_duration.labels(name)
            for outcome in REFRESH_OUTCOMES:
                self.refreshes.labels(name, outcome)
            if name not in self._sources:  # prepare runs again on reload: keep what a known source recorded
                self._sources.add(name)
                self.last_success.labels(name)  # 0 until the first success
                self.last_failure.labels(name)
                self.last_error.labels(name).info({"code": "none"})
        for reason in drop_reasons:
            self.keys_dropped.labels(reason)
        for reason in reject_reasons:
            self.documents_rejected.labels(reason)

    def prepare_aws(self, operations: Iterable[str]) -> None:
        """Create ``jwksd_aws_calls_total`` for the usual result codes of ``operations``, so each reads 0."""
        for operation in operations:
            for code in AWS_COMMON_CODES:
                self.aws_calls.labels(operation, code)

    def set_serving(self, source: str | None) -> None:
        """Mark which rung of the ladder is served (none when ``source`` is None)."""
        for name in SERVED_SOURCES:
            self.serving.labels(name).set(1 if name == source else 0)

    def set_budgets(self, refresh: RefreshConfig) -> None:
        """Export the refresh settings in force, so alert rules compare ages with this daemon's own budget."""
        self.refresh_interval.set(refresh.interval_s)
        self.max_age.set(refresh.max_age_s)
        self.max_staleness.set(refresh.max_staleness_s)

    def track_age(self, age_s: Callable[[], float]) -> None:
        """Compute the served set's age at scrape time."""
        self.served_age.set_function(age_s)
