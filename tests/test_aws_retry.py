"""The one retry policy (jwksd/aws/retry.py): bounded attempts, full-jitter pauses, only retryable errors retried."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from jwksd.aws.retry import NO_RETRIES, Retries, backoff_s, with_retries
from jwksd.errors import AwsError, SourceError, StateError

FAST = Retries(max_retries=3, retry_base_s=0.001, retry_cap_s=0.002)


class Flaky:
    """Fails with each of ``errors`` in turn, then answers ``"done"``."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def test_backoff_is_full_jitter_within_the_cap() -> None:
    """Pause n lies in [0, min(cap, base * 2^n)], spread over all of it (400 draws: near both ends)."""
    policy = Retries(max_retries=5, retry_base_s=0.2, retry_cap_s=1.0)
    for attempt, bound in enumerate((0.2, 0.4, 0.8, 1.0, 1.0)):
        pauses = [backoff_s(policy, attempt) for _ in range(400)]
        assert min(pauses) >= 0 and max(pauses) <= bound
        assert min(pauses) < bound * 0.1 and max(pauses) > bound * 0.9


async def test_retryable_errors_are_retried_until_an_answer() -> None:
    """Retryable AwsError and SourceError are tried again, each retry logged with its attempt and code."""
    call = Flaky(AwsError("Scan", "ThrottlingException", "slow down", retryable=True),
                 SourceError("network", "GET x: reset", retryable=True))
    with capture_logs() as logs:
        assert await with_retries(call, FAST, "aws_retry", operation="Scan") == "done"
    assert call.calls == 3
    assert [(e["event"], e["operation"], e["code"], e["attempt"]) for e in logs] == [
        ("aws_retry", "Scan", "ThrottlingException", 1), ("aws_retry", "Scan", "network", 2)]


async def test_attempts_are_bounded() -> None:
    """After max_retries + 1 failed attempts the last error is raised."""
    errors = [AwsError("Scan", "timeout", f"try {n}", retryable=True) for n in range(5)]
    call = Flaky(*errors)
    with pytest.raises(AwsError) as info:
        await with_retries(call, FAST, "aws_retry")
    assert (call.calls, info.value) == (4, errors[3])
    with pytest.raises(AwsError):
        await with_retries(Flaky(*errors), NO_RETRIES, "aws_retry")


@pytest.mark.parametrize("error", [AwsError("Scan", "AccessDeniedException", "no", retryable=False),
                                   SourceError("http_404", "GET x: HTTP 404", retryable=False),
                                   StateError("not ours to retry")])
async def test_other_errors_are_raised_at_once(error: Exception) -> None:
    """A non-retryable error, or one that is not a source's or AWS's, ends the call after one attempt."""
    call = Flaky(error)
    with pytest.raises(type(error)):
        await with_retries(call, FAST, "aws_retry")
    assert call.calls == 1
