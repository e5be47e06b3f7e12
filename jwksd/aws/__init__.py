"""The AWS boundary: aiobotocore clients for Secrets Manager, DynamoDB and KMS, the only module that knows botocore.

Every call goes through :meth:`Client.call`. Each attempt is one request (botocore's own retries
are off), bounded by connect + read timeout, counted by the caller's ``on_call`` (the daemon's
``jwksd_aws_calls_total``), and whatever botocore or the network raises becomes an
:class:`~jwksd.errors.AwsError` with a stable code. A retryable failure is tried again after a
full-jitter backoff (:mod:`jwksd.aws.retry`), up to the caller's ``max_retries``.

Beside it: ``retry.py``, the one retry policy (the http source uses it too), and ``registry.py``,
the key registry's read side (the ``dynamodb`` source and ``jwksd keys`` read through it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import botocore.exceptions as bx
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from jwksd.aws.retry import RetryPolicy, with_retries
from jwksd.errors import AwsError

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_kms import KMSClient
    from types_aiobotocore_secretsmanager import SecretsManagerClient

    from jwksd.metrics import Metrics

OnCall = Callable[[str, str], None]  # (operation, result code), once per attempt
RawT = TypeVar("RawT")
T = TypeVar("T")

# AWS error codes worth another attempt (any HTTP 5xx is too): throttling and transient failures of
# the three services, and botocore's standard-mode lists.
RETRYABLE_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException", "RequestThrottled",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "TransactionInProgressException",
    "RequestLimitExceeded", "BandwidthLimitExceeded", "LimitExceededException", "SlowDown",
    "PriorRequestNotComplete", "RequestTimeout", "RequestTimeoutException", "InternalServiceError",
    "InternalServerError", "InternalFailure", "ServiceUnavailable", "KMSInternalException",
    "DependencyTimeoutException",
})
NO_CREDENTIALS_DETAIL = "no AWS credentials found in the standard chain"


@dataclass(frozen=True)
class Kind:
    """What a botocore exception class becomes: a stable code and whether another attempt may help."""

    code: str
    retryable: bool


TIMEOUT = Kind("timeout", True)
NETWORK = Kind("network", True)
NO_CREDENTIALS = Kind("NoCredentials", False)
CREDENTIALS_UNAVAILABLE = Kind("credentials_unavailable", True)  # a provider (IMDS, SSO) failed for now
NO_REGION = Kind("NoRegion", False)
CONFIGURATION = Kind("configuration", False)  # the region, endpoint or AWS config files need fixing
INVALID_REQUEST = Kind("invalid_request", False)  # botocore refused what jwksd built: a bug, never retried

_KINDS: dict[Kind, tuple[type[Exception], ...]] = {
    TIMEOUT: (bx.ConnectTimeoutError, bx.ReadTimeoutError),
    NETWORK: (bx.BotoCoreError, bx.HTTPClientError, bx.ConnectionError, bx.EndpointConnectionError, bx.SSLError,
              bx.ConnectionClosedError, bx.ProxyConnectionError, bx.ResponseStreamingError, bx.IncompleteReadError,
              bx.ChecksumError, bx.FlexibleChecksumError, bx.CapacityNotAvailableError),
    NO_CREDENTIALS: (bx.NoCredentialsError, bx.PartialCredentialsError, bx.NoAuthTokenError,
                     bx.UnknownCredentialError, bx.UnknownTokenProviderError, bx.RefreshWithMFAUnsupportedError,
                     bx.UnauthorizedSSOTokenError, bx.SSOTokenLoadError, bx.LoginRefreshRequired,
                     bx.LoginInsufficientPermissions, bx.LoginTokenLoadError, bx.LoginAuthorizationCodeError),
    CREDENTIALS_UNAVAILABLE: (bx.CredentialRetrievalError, bx.MetadataRetrievalError, bx.TokenRetrievalError,
                              bx.SSOError, bx.LoginError),
    NO_REGION: (bx.NoRegionError,),
    CONFIGURATION: (
        bx.UnknownRegionError, bx.InvalidRegionError, bx.BaseEndpointResolverError, bx.UnknownEndpointError,
        bx.UnknownFIPSEndpointError, bx.EndpointVariantError, bx.EndpointProviderError, bx.EndpointResolutionError,
        bx.UnknownEndpointResolutionBuiltInName, bx.InvalidEndpointConfigurationError, bx.ServiceNotInRegionError,
        bx.InvalidHostLabelError, bx.InvalidDNSNameError, bx.ProfileNotFound, bx.ConfigParseError, bx.ConfigNotFound,
        bx.InvalidConfigError, bx.InfiniteLoopConfigError, bx.InvalidIMDSEndpointError,
        bx.InvalidIMDSEndpointModeError, bx.InvalidRetryConfigurationError, bx.InvalidMaxRetryAttemptsError,
        bx.InvalidRetryModeError, bx.InvalidProxiesConfigError, bx.InvalidDefaultsMode,
        bx.InvalidChecksumConfigError, bx.InvalidEndpointDiscoveryConfigurationError,
        bx.InvalidS3UsEast1RegionalEndpointConfigError, bx.InvalidSTSRegionalEndpointsConfigError,
        bx.InvalidS3AddressingStyleError, bx.UnsupportedS3ConfigurationError,
        bx.UnsupportedS3AccesspointConfigurationError, bx.UnsupportedS3ControlConfigurationError,
        bx.UnsupportedS3ArnError, bx.UnsupportedS3ControlArnError, bx.UnsupportedOutpostResourceError,
        bx.UnknownSignatureVersionError, bx.UnsupportedSignatureVersionError, bx.UnknownServiceError,
        bx.DataNotFoundError, bx.ApiVersionNotFoundError, bx.UnknownServiceStyle,
        bx.UnsupportedServiceProtocolsError, bx.MissingDependencyException, bx.MD5UnavailableError,
        bx.UndefinedModelAttributeError, bx.MissingServiceIdError),
    INVALID_REQUEST: (
        bx.ValidationError, bx.ParamValidationError, bx.UnknownKeyError, bx.RangeError, bx.UnknownParameterError,
        bx.AliasConflictParameterError, bx.MissingParametersError, bx.UnknownClientMethodError,
        bx.OperationNotPageableError, bx.PaginationError, bx.WaiterError, bx.WaiterConfigError,
        bx.InvalidExpressionError, bx.UnseekableStreamError, bx.AwsChunkedWrapperError, bx.StubResponseError,
        bx.StubAssertionError, bx.UnStubbedResponseError),
}
# Every exception class botocore defines, to its kind; ClientError (and EventStreamError) carry AWS's own code.
BOTOCORE_ERRORS: dict[type[Exception], Kind] = {cls: kind for kind, classes in _KINDS.items() for cls in classes}
_CAUGHT = (bx.ClientError, *BOTOCORE_ERRORS, OSError)  # OSError includes TimeoutError: our own deadline


def kind_of(cls: type[Exception]) -> Kind:
    """The kind of a botocore exception class: its own entry, else its nearest mapped base class."""
    return next(BOTOCORE_ERRORS[base] for base in cls.__mro__ if base in BOTOCORE_ERRORS)


def aws_error(operation: str, exc: Exception, deadline_s: float) -> AwsError:
    """The AwsError of anything an attempt at ``operation`` raised (one of ``_CAUGHT``)."""
    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "Unknown")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return AwsError(operation, code, str(error.get("Message") or code),
                        retryable=code in RETRYABLE_CODES or status >= 500, status=status)
    if isinstance(exc, tuple(BOTOCORE_ERRORS)):
        kind = kind_of(type(exc))
        detail = NO_CREDENTIALS_DETAIL if kind is NO_CREDENTIALS else f"{type(exc).__name__}: {exc}"
        return AwsError(operation, kind.code, detail, retryable=kind.retryable)
    if isinstance(exc, TimeoutError):
        return AwsError(operation, TIMEOUT.code, f"no complete answer within {deadline_s:g}s", retryable=True)
    return AwsError(operation, NETWORK.code, f"{type(exc).__name__}: {exc}", retryable=True)


@dataclass(frozen=True)
class Endpoint:
    """Where a client connects (None: the AWS default) and how long each attempt may take."""

    region: str | None
    url: str | None
    connect_timeout_s: float
    read_timeout_s: float

    @property
    def deadline_s(self) -> float:
        return self.connect_timeout_s + self.read_timeout_s


class Client(Generic[RawT]):
    """One typed aiobotocore client: each call bounded, counted, mapped to AwsError, retried."""

    def __init__(self, service: str, raw: RawT, endpoint: Endpoint, retries: RetryPolicy,
                 on_call: OnCall | None = None) -> None:
        self.service = service
        self.raw = raw
        self.deadline_s = endpoint.deadline_s
        self.retries = retries
        self.on_call = on_call

    async def call(self, operation: str, request: Callable[[RawT], Awaitable[T]], **fields: Any) -> T:
        """``request(raw)`` as ``operation`` (CamelCase, as AWS names it; a metric label), retried as configured.

        ``fields`` go into the ``aws_retry`` log line of each retry.
        """
        return await with_retries(lambda: self._attempt(operation, request), self.retries, "aws_retry",
                                  operation=operation, **fields)

    async def _attempt(self, operation: str, request: Callable[[RawT], Awaitable[T]]) -> T:
        """One request; counted once it has an outcome (an attempt cancelled by shut-down is not)."""
        try:
            async with asyncio.timeout(self.deadline_s):
                response = await request(self.raw)
        except _CAUGHT as exc:
            error = aws_error(operation, exc, self.deadline_s)
            self._count(operation, error.code)
            raise error from exc
        self._count(operation, "ok")
        return response

    def _count(self, operation: str, code: str) -> None:
        if self.on_call is not None:
            self.on_call(operation, code)


def call_counter(metrics: Metrics, operations: Iterable[str]) -> OnCall:
    """An ``on_call`` counting into ``jwksd_aws_calls_total``, the usual codes of ``operations`` created at 0."""
    metrics.prepare_aws(operations)

    def count(operation: str, code: str) -> None:
        metrics.aws_calls.labels(operation, code).inc()

    return count


async def _open(stack: AsyncExitStack, service: str, endpoint: Endpoint, pool_connections: int = 4) -> Any:
    """A raw client that lives as long as ``stack``; AwsError (NoRegion, ...) when botocore cannot make one."""
    config = AioConfig(connect_timeout=endpoint.connect_timeout_s, read_timeout=endpoint.read_timeout_s,
                       retries={"total_max_attempts": 1, "mode": "standard"}, max_pool_connections=pool_connections)
    try:
        return await stack.enter_async_context(get_session().create_client(
            service, region_name=endpoint.region, endpoint_url=endpoint.url, config=config))
    except tuple(BOTOCORE_ERRORS) as exc:
        kind = kind_of(type(exc))
        detail = ("no AWS region: set region in the config or AWS_REGION" if kind is NO_REGION
                  else f"{type(exc).__name__}: {exc}")
        raise AwsError(service, kind.code, detail, retryable=False) from exc


async def secretsmanager(stack: AsyncExitStack, endpoint: Endpoint, retries: RetryPolicy,
                         on_call: OnCall | None = None) -> Client[SecretsManagerClient]:
    """A Secrets Manager client closed with ``stack``."""
    return Client("secretsmanager", await _open(stack, "secretsmanager", endpoint), endpoint, retries, on_call)


async def dynamodb(stack: AsyncExitStack, endpoint: Endpoint, retries: RetryPolicy,
                   on_call: OnCall | None = None) -> Client[DynamoDBClient]:
    """A DynamoDB client closed with ``stack``."""
    return Client("dynamodb", await _open(stack, "dynamodb", endpoint), endpoint, retries, on_call)


async def kms(stack: AsyncExitStack, endpoint: Endpoint, retries: RetryPolicy, on_call: OnCall | None = None, *,
              pool_connections: int = 4) -> Client[KMSClient]:
    """A KMS client closed with ``stack``; ``pool_connections`` bounds its calls in flight (the signer's Sign)."""
    return Client("kms", await _open(stack, "kms", endpoint, pool_connections), endpoint, retries, on_call)
