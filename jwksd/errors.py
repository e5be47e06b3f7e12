"""The exception tree: every error jwksd raises on purpose is one of these.

    JwksdError
    ├── ConfigError          bad configuration; carries every problem at once
    ├── DocumentRejected     a key document that must not be served; carries a reason code
    ├── SourceError          a source could not deliver a document; carries a code and retryability
    ├── AwsError             an AWS call failed (AWS said no, the network, a deadline); carries a code
    ├── StateError           the last-known-good or fallback file could not be read or written
    ├── SharedCacheError     the shared cache (Redis) failed or timed out; the replica fetches directly
    ├── RotationError        a key lifecycle step could not be done; carries a code and retryability
    │   └── RegistryConflict another rotator changed the key registry first (a conditional write lost)
    └── SignerError          `jwksd signer` refused a request (400) or cannot sign now (503); carries a code

Third-party exceptions are translated at one boundary each (botocore in aws/__init__.py, aiohttp's client
in sources/http.py, redis in fleet/cache.py, the JSON parser in validate/__init__.py) and raised as these
``from`` the original. A source turns an AwsError into a SourceError naming what it was reading.
"""

from __future__ import annotations


class JwksdError(Exception):
    """Base class of every error jwksd raises on purpose."""


class ConfigError(JwksdError):
    """The configuration is invalid; ``problems`` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class DocumentRejected(JwksdError):
    """A key document that must not be served.

    ``reason`` is a short stable code (a metric label); ``detail`` says what was wrong in words,
    never echoing key material.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class SourceError(JwksdError):
    """A source failed to deliver a document.

    ``code`` is a short stable code such as ``AccessDeniedException`` or ``timeout``;
    ``retryable`` says whether trying again soon may help.
    """

    def __init__(self, code: str, message: str, *, retryable: bool) -> None:
        self.code = code
        self.message = message
        self.retryable = retryable
        super().__init__(f"{code}: {message}")


class AwsError(JwksdError):
    """An AWS call failed.

    ``code`` is AWS's error code (``AccessDeniedException``) or ours (``timeout``, ``network``,
    ``NoCredentials``, ...); ``message`` is ``"<operation>: <detail>"``; ``status`` is the HTTP
    status when AWS answered (0 when it did not).
    """

    def __init__(self, operation: str, code: str, detail: str, *, retryable: bool, status: int = 0) -> None:
        self.operation = operation
        self.code = code
        self.detail = detail
        self.message = f"{operation}: {detail}"
        self.retryable = retryable
        self.status = status
        super().__init__(f"{code}: {self.message}")


class StateError(JwksdError):
    """The state directory or the fallback file could not be used."""


class SharedCacheError(JwksdError):
    """A Redis operation of the shared cache failed or timed out; never fatal."""


class RotationError(JwksdError):
    """A ``jwksd keys`` step or a registry read failed; ``code`` is short and stable (an AWS error code or ours)."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        self.code = code
        self.message = message
        self.retryable = retryable
        super().__init__(f"{code}: {message}")


class RegistryConflict(RotationError):
    """A conditional write to the key registry lost to another rotator; re-read, and do nothing."""

    def __init__(self, message: str) -> None:
        super().__init__("conflict", message)


class SignerError(JwksdError):
    """``jwksd signer`` did not sign: ``code`` is the API's error code, ``message`` names what was wrong.

    ``unavailable``: the signer's state (no usable active key, a registry it cannot read), answered
    503 with Retry-After; otherwise the request was at fault, answered 400. On the client's side
    (``jwksd.signer_client``) ``status`` is the HTTP status it got (0: no answer) and ``retry_after_s``
    the signer's Retry-After.
    """

    def __init__(self, code: str, message: str, *, unavailable: bool = False, status: int = 0,
                 retry_after_s: float | None = None) -> None:
        self.code = code
        self.message = message
        self.unavailable = unavailable
        self.status = status
        self.retry_after_s = retry_after_s
        super().__init__(f"{code}: {message}")
