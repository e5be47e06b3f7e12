"""Load from wrk: one run gives requests/s, wrk's p50/p99/p99.9 latency and every error it saw."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "report.lua"
MARKER = "BENCH_RESULT "


@dataclass(frozen=True)
class Run:
    """One wrk run against one URL."""

    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    errors: int  # connect, read, write and timeout errors, and statuses of 400 and above

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def wrk_path() -> str:
    """The wrk binary; `make bench` installs it from Debian when missing."""
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is not installed: run `make bench` (it installs Debian's wrk) or apt-get install wrk")
    return path


def run_wrk(url: str, *, connections: int, duration_s: float, etag: str | None = None) -> Run:
    """Run wrk (one thread: the server gets the other core) and parse the script's result line."""
    threads = 1
    command = [wrk_path(), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
               "--timeout", "5s", "--latency", "-s", str(SCRIPT), url]
    env = {"BENCH_IF_NONE_MATCH": etag or "", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + 30, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}")
    return parse(result.stdout)


def parse(output: str) -> Run:
    """The numbers from the script's BENCH_RESULT line (microseconds in, milliseconds out)."""
    for line in output.splitlines():
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER):])
            errors = sum(data[name] for name in ("connect_errors", "read_errors", "write_errors", "status_errors",
                                                 "timeouts"))
            return Run(requests=data["requests"], duration_s=data["duration_us"] / 1e6, p50_ms=data["p50_us"] / 1e3,
                       p99_ms=data["p99_us"] / 1e3, p999_ms=data["p999_us"] / 1e3, max_ms=data["max_us"] / 1e3,
                       errors=errors)
    raise RuntimeError(f"no {MARKER.strip()} line in wrk's output:\n{output}")


@dataclass(frozen=True)
class Summary:
    """The medians of several runs of one cell, and the errors summed."""

    rounds: int
    rps: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    requests: int
    errors: int


def summarize(runs: Sequence[Run]) -> Summary:
    """Medians across rounds: the machines are shared, so one run alone says little."""
    return Summary(rounds=len(runs), rps=statistics.median(r.rps for r in runs),
                   p50_ms=statistics.median(r.p50_ms for r in runs), p99_ms=statistics.median(r.p99_ms for r in runs),
                   p999_ms=statistics.median(r.p999_ms for r in runs), requests=sum(r.requests for r in runs),
                   errors=sum(r.errors for r in runs))
