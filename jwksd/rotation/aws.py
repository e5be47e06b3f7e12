"""AWS clients for rotation and the ``dynamodb`` source: the one place here that knows botocore.

Every call goes through :func:`call`, which bounds it in time, counts it when asked, and turns
whatever botocore or the network raises into :class:`~jwksd.errors.RotationError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from jwksd.errors import RotationError

OnCall = Callable[[str, str], None]  # (operation, result code)
RETRYABLE_CODES = frozenset({
    "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
    "ProvisionedThroughputExceededException", "InternalServiceError", "InternalServerError", "InternalFailure",
    "ServiceUnavailable", "KMSInternalException", "DependencyTimeoutException", "RequestTimeout",
})


class Client:
    """One aiobotocore client with its deadline and an optional call counter."""

    def __init__(self, service: str, raw: Any, deadline_s: float, on_call: OnCall | None = None) -> None:
        self.service = service
        self.raw = raw
        self.deadline_s = deadline_s
        self.on_call = on_call

    async def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """Call ``operation`` (CamelCase, as AWS names it); raise RotationError on any failure."""
        method = getattr(self.raw, _snake(operation))
        code = "ok"
        try:
            async with asyncio.timeout(self.deadline_s):
                response: dict[str, Any] = await method(**params)
                return response
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code") or "Unknown")
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            raise RotationError(code, f"{operation}: {error.get('Message') or code}",
                                retryable=code in RETRYABLE_CODES or status >= 500) from exc
        except TimeoutError as exc:
            code = "timeout"
            raise RotationError(code, f"{operation}: no answer within {self.deadline_s:g}s", retryable=True) from exc
        except NoCredentialsError as exc:
            code = "NoCredentials"
            raise RotationError(code, "no AWS credentials found in the standard chain") from exc
        except (BotoCoreError, OSError) as exc:
            code = "network"
            raise RotationError(code, f"{operation}: {type(exc).__name__}: {exc}", retryable=True) from exc
        finally:
            if self.on_call is not None:
                self.on_call(operation, code)


def _snake(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(operation))


async def open_client(stack: AsyncExitStack, service: str, *, region: str | None, endpoint_url: str | None,
                      connect_timeout_s: float, read_timeout_s: float, attempts: int = 3,
                      on_call: OnCall | None = None) -> Client:
    """Create a client whose lifetime is ``stack``'s; botocore retries throttling up to ``attempts`` times."""
    config = AioConfig(connect_timeout=connect_timeout_s, read_timeout=read_timeout_s,
                       retries={"total_max_attempts": attempts, "mode": "standard"}, max_pool_connections=4)
    try:
        raw = await stack.enter_async_context(get_session().create_client(
            service, region_name=region, endpoint_url=endpoint_url, config=config))
    except NoRegionError as exc:
        raise RotationError("NoRegion", f"{service}: no AWS region: set region in the config or AWS_REGION") from exc
    return Client(service, raw, attempts * (connect_timeout_s + read_timeout_s), on_call)
