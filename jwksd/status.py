"""What the refresh loop last reported, as frozen values replaced whole: /health reads these, never its live state."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

SourceOrigin = Literal["fresh", "last-known-good", "none"]
HISTORY = 100  # refresh outcomes kept for the status page


def iso_time(at: float) -> str:
    """A wall time as /health and the log lines show it: UTC, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


@dataclass(frozen=True)
class ErrorInfo:
    """The last thing that went wrong with a source (no key material, no raw content)."""

    code: str
    message: str
    at: float  # wall time


@dataclass(frozen=True)
class SourceStatus:
    """One source as of the last completed refresh."""

    name: str
    origin: SourceOrigin  # where its share of the served set comes from
    failing: bool
    last_success: float | None = None  # wall time
    last_error: ErrorInfo | None = None
    failures: int = 0  # consecutive failed fetches
    next_due: float | None = None  # wall time of its next scheduled fetch (None before the first)


@dataclass(frozen=True)
class Outcome:
    """One completed refresh, as the status page draws it."""

    at: float  # wall time it finished
    outcome: str  # success, unchanged, rejected_document or fetch_error: the worst of its sources
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    served: str = "none"  # the X-JWKS-Source value after it
    duration_ms: float = 0.0


@dataclass(frozen=True)
class RefreshStatus:
    """Every source's status, in config order, after ``completed`` refreshes; the last ``HISTORY`` outcomes."""

    sources: tuple[SourceStatus, ...] = ()
    completed: int = 0
    history: tuple[Outcome, ...] = ()  # oldest first

    @property
    def last_success(self) -> float | None:
        """The latest success of any source."""
        return max((s.last_success for s in self.sources if s.last_success is not None), default=None)

    @property
    def last_error(self) -> ErrorInfo | None:
        """The latest error of any source (a source that recovered keeps its last error)."""
        errors = [s.last_error for s in self.sources if s.last_error is not None]
        return max(errors, key=lambda e: e.at) if errors else None
