"""The measurements: each takes running servers and returns numbers; the run order lives in __main__."""

from __future__ import annotations

import re
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.contenders import JWKS, Server, fetch, start_jwksd, wait_until
from bench.load import Run, Summary, run_wrk, summarize

STATUSES = ("200", "304")


@dataclass
class Cell:
    """Runs of one contender at one status and connection count."""

    contender: str
    status: str
    connections: int
    runs: list[Run] = field(default_factory=list)

    def summary(self) -> Summary:
        return summarize(self.runs)


@dataclass
class Ratios:
    """Per-round ratios of two servers measured back to back: a / b for req/s, p99 and p99.9."""

    a: str
    b: str
    status: str
    connections: int
    rps: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    p999: list[float] = field(default_factory=list)


def matrix(pairs: Sequence[tuple[Server, Server]], etags: Mapping[str, str], *, connections: Sequence[int],
           rounds: int, duration_s: float, during: Callable[[Server], Callable[[], None]] | None = None,
           progress: Callable[[str], None] = print
           ) -> tuple[dict[tuple[str, str, int], Cell], dict[tuple[str, str, str, int], Ratios]]:
    """Each pair at every status and connection count, ``rounds`` times; the two of a pair run back to back.

    The machine is shared, so load drifts within seconds: a ratio is taken within each pair, whose
    runs are adjacent in time (their order alternating by round), and the median of those ratios is
    what is reported. The order of the pairs rotates each round. ``etags`` holds each server's
    If-None-Match value for the 304 runs; ``during(server)`` starts background activity for that
    server's runs and returns the function that stops it.
    """
    cells: dict[tuple[str, str, int], Cell] = {}
    ratios: dict[tuple[str, str, str, int], Ratios] = {}

    def measure(server: Server, status: str, conns: int, round_index: int) -> Run:
        stop = during(server) if during else None
        try:
            run = run_wrk(server.url, connections=conns, duration_s=duration_s,
                          etag=etags[server.name] if status == "304" else None)
        finally:
            if stop:
                stop()
        cells.setdefault((server.name, status, conns), Cell(server.name, status, conns)).runs.append(run)
        progress(f"round {round_index + 1}/{rounds} {server.name:>14} {status} c={conns:<3} {run.rps:9.0f} req/s  "
                 f"p99 {run.p99_ms:6.2f} ms  p99.9 {run.p999_ms:6.2f} ms  errors {run.errors}")
        return run

    for round_index in range(rounds):
        shift = round_index % len(pairs)
        for status in STATUSES:
            for conns in connections:
                for a, b in [*pairs[shift:], *pairs[:shift]]:
                    order = (a, b) if round_index % 2 == 0 else (b, a)
                    runs = {server.name: measure(server, status, conns, round_index) for server in order}
                    first, second = runs[a.name], runs[b.name]
                    ratio = ratios.setdefault((a.name, b.name, status, conns), Ratios(a.name, b.name, status, conns))
                    ratio.rps.append(first.rps / second.rps if second.rps else 0.0)
                    ratio.p99.append(first.p99_ms / second.p99_ms if second.p99_ms else 0.0)
                    ratio.p999.append(first.p999_ms / second.p999_ms if second.p999_ms else 0.0)
    return cells, ratios


class Pulse:
    """Sends a signal-like action every ``interval_s`` on a thread until stopped (SIGUSR1: refresh now)."""

    def __init__(self, action: Callable[[], None], interval_s: float) -> None:
        self.action = action
        self.interval_s = interval_s
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="bench-pulse")

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.action()
            self.count += 1

    def start(self) -> Pulse:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


_SAMPLE = re.compile(r'^(\w+)\{([^}]*)\} ([0-9.e+]+)$', re.MULTILINE)


def metric(server: Server, name: str, **labels: str) -> float:
    """The sum of a metric's samples on the server's /metrics whose labels include ``labels``."""
    _, _, body = fetch(f"http://127.0.0.1:{server.metrics_port}/metrics")
    total = 0.0
    for sample, label_text, value in _SAMPLE.findall(body.decode()):
        if sample != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', label_text))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


def statuses(server: Server) -> dict[str, float]:
    """jwksd's own count of JWKS responses by status: the exact check that nothing but 200/304 went out."""
    _, _, body = fetch(f"http://127.0.0.1:{server.metrics_port}/metrics")
    counts: dict[str, float] = {}
    for sample, label_text, value in _SAMPLE.findall(body.decode()):
        found = dict(re.findall(r'(\w+)="([^"]*)"', label_text))
        if sample == "jwksd_requests_total" and found.get("path") == JWKS:  # not /readyz's 503s before ready
            counts[found["status"]] = counts.get(found["status"], 0.0) + float(value)
    return {status: count for status, count in counts.items() if count}


@dataclass(frozen=True)
class Ready:
    """Time from process start to /readyz 200, over several starts."""

    samples_s: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return statistics.median(self.samples_s)


def time_to_ready(workdir: Path, *, endpoint: str, secret_id: str, starts: int) -> Ready:
    """Start jwksd ``starts`` times against a healthy source; each time measure spawn -> /readyz 200."""
    samples = []
    for index in range(starts):
        server = start_jwksd(workdir, name=f"ready-{index}", endpoint=endpoint, secret_id=secret_id, wait=False)
        try:
            ready_at = wait_until(f"http://127.0.0.1:{server.port}/readyz", process=server.process,
                                  interval_s=0.002)
            samples.append(ready_at - server.started_at)
        finally:
            server.stop()
    return Ready(tuple(samples))


@dataclass(frozen=True)
class Soak:
    """Memory and AWS calls of one jwksd under continuous load."""

    duration_s: float
    requests: int
    rps: float
    errors: int
    rss_samples: tuple[tuple[float, float, int], ...]  # (seconds, requests so far, RSS KiB)
    peak_kib: int
    aws_calls_window: int  # GetSecretValue calls seen at the proxy in the first window
    window_s: float
    refreshes_window: int
    requests_window: int
    statuses: dict[str, float]

    def rss_at(self, requests: int) -> int | None:
        """RSS at the first sample taken after ``requests`` requests."""
        return next((rss for _, count, rss in self.rss_samples if count >= requests), None)


def soak(server: Server, *, duration_s: float, window_s: float, calls: Callable[[], int], sample_s: float = 5.0,
         connections: int = 16) -> Soak:
    """Load ``server`` for ``duration_s`` with wrk; sample RSS and the request count; count AWS calls."""
    result: dict[str, Run] = {}
    failure: list[BaseException] = []

    def load() -> None:
        try:
            result["run"] = run_wrk(server.url, connections=connections, duration_s=duration_s)
        except BaseException as exc:  # reported by the caller's thread
            failure.append(exc)

    def served() -> float:
        return metric(server, "jwksd_requests_total", path=JWKS)

    base_requests, base_calls = served(), calls()
    base_refreshes = metric(server, "jwksd_refreshes_total")
    thread = threading.Thread(target=load, name="bench-soak")
    started = time.monotonic()
    thread.start()
    samples: list[tuple[float, float, int]] = []
    window: tuple[int, int, int] | None = None
    while thread.is_alive():
        thread.join(sample_s)
        elapsed = time.monotonic() - started
        if not thread.is_alive():
            break
        samples.append((round(elapsed, 1), served() - base_requests, server.memory_kib()[0]))
        if window is None and elapsed >= window_s:
            window = (calls() - base_calls, int(metric(server, "jwksd_refreshes_total") - base_refreshes),
                      int(served() - base_requests))
    if failure:
        raise failure[0]
    run = result["run"]
    if window is None:
        window = (calls() - base_calls, int(metric(server, "jwksd_refreshes_total") - base_refreshes),
                  run.requests)
    return Soak(duration_s=run.duration_s, requests=run.requests, rps=run.rps, errors=run.errors,
                rss_samples=tuple(samples), peak_kib=server.memory_kib()[1], aws_calls_window=window[0],
                window_s=window_s, refreshes_window=window[1], requests_window=window[2],
                statuses=statuses(server))


def validation_speed(document: bytes, *, seconds: float) -> tuple[float, float]:
    """Documents per second through jwksd's validator, in this process: (per second, ms per document)."""
    from jwksd.config import ValidationConfig
    from jwksd.validate import validate_document

    config = ValidationConfig(max_document_bytes=131072)
    validate_document(document, config)  # warm caches and imports
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        validate_document(document, config)
        count += 1
    elapsed = time.perf_counter() - started
    return count / elapsed, elapsed / count * 1000
