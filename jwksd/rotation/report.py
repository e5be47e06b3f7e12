"""The outcome of a ``jwksd keys rotate`` run as a Prometheus textfile (node_exporter's textfile collector).

``rotation.metrics_file`` names it; it is rewritten atomically by prometheus-client after every
run, failed ones included, so an alert sees both a failing step and a timer that stopped running.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

# What a run can fail at: one expiry (the rest of the step still runs), the publish, or the whole step.
FAILURES = ("expire", "publish", "step")


def write_report(path: Path, failed: Sequence[str], *, next_due: int | None = None, at: float | None = None) -> None:
    """Write the run's time, how many of each action failed in it (0 for each that did not), and when the
    registry's next change falls due (left out when unknown: the run failed before reading it, or nothing is due)."""
    registry = CollectorRegistry()
    Gauge("jwksd_rotation_last_run_timestamp_seconds", "When `jwksd keys rotate` last ran (unix seconds)",
          registry=registry).set(time.time() if at is None else at)
    if next_due is not None:
        Gauge("jwksd_rotation_next_due_timestamp_seconds", "When the registry's next lifecycle change falls due "
              "(unix seconds); in the past while a step is overdue", registry=registry).set(next_due)
    failures = Gauge("jwksd_rotation_failed_actions", "Actions that failed in the last `jwksd keys rotate` run",
                     ["action"], registry=registry)
    for action in FAILURES:
        failures.labels(action).set(sum(1 for name in failed if name == action))
    write_to_textfile(str(path), registry)
