"""The rotator's clock checked against AWS's: the ``Date`` of a DynamoDB response.

Every time a rotator writes (created, first published, activated, retired, revoked) decides when
a key may sign; a host clock hours fast would promote a key verifiers have not fetched. The Date
header has whole seconds, so the comparison allows one second on top of ``max_clock_skew_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

from jwksd.errors import RotationError
from jwksd.rotation.keyring import Keyring


async def clock_skew(ring: Keyring, clock: Callable[[], float] = time.time) -> float:
    """Seconds this host's clock is ahead of AWS's (negative: behind), from the Date header of a one-item Scan."""
    before = clock()
    response = await ring.registry.client.call(
        "Scan", lambda db: db.scan(TableName=ring.config.table, Limit=1))
    after = clock()
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        aws_time = parsedate_to_datetime(date).timestamp() if date else None
    except (TypeError, ValueError):
        aws_time = None
    if aws_time is None:
        raise RotationError("clock_unknown", f"Scan {ring.config.table}: the response has no usable Date "
                                             "header to check this host's clock against; no change made")
    return (before + after) / 2 - (aws_time + 0.5)  # the header truncates to the second


async def check_clock(ring: Keyring, clock: Callable[[], float] = time.time) -> None:
    """RotationError when this host's clock and AWS's differ by more than ``rotation.max_clock_skew_s``."""
    skew = await clock_skew(ring, clock)
    limit = ring.config.max_clock_skew_s
    if abs(skew) > limit + 1:
        ahead = "ahead of" if skew > 0 else "behind"
        raise RotationError("clock_skew", f"this host's clock is {abs(skew):.0f}s {ahead} AWS's (the Date of a "
                                          f"DynamoDB response); rotation.max_clock_skew_s is {limit}. No change "
                                          "made: fix the clock (NTP) and run again")
