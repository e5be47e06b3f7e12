"""A typed async client of ``jwksd signer`` (docs/signer.md): over its Unix socket, or loopback TCP with a token.

    async with SignerClient() as signer:             # /run/jwksd-signer/signer.sock
        token = (await signer.sign({"sub": "alice"}, ttl_s=300, jti=True)).token

Every failure is a :class:`~jwksd.errors.SignerError`: the signer's own ``code`` and ``message`` when it
answered (``bad_claims``, ``no_active_key``, ...), ours when it did not (``unreachable``, ``timeout``,
``bad_response``). ``unavailable`` is true when trying again later may succeed (503, no answer);
``retry_after_s`` is the signer's ``Retry-After``. Nothing is retried here: the caller decides.

``python -m jwksd.signer_client [--socket P] active`` (or ``sign --claims JSON``) prints the answer as
JSON and exits 0, or names the error and exits 1: a container's health check, or a shell script's token.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from jwksd.errors import SignerError

DEFAULT_SOCKET = Path("/run/jwksd-signer/signer.sock")
BASE_URL = "http://jwksd-signer"  # the Host of requests over the socket (the signer does not read it)
MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True)
class SignedToken:
    """A token the signer made: the compact JWS, and its header's kid and alg, and its exp (unix seconds)."""

    token: str
    kid: str
    alg: str
    exp: int


@dataclass(frozen=True)
class NextKey:
    """The next key, and the unix time from which a promotion may make it active (None: not yet published)."""

    kid: str
    promotable_from: int | None


@dataclass(frozen=True)
class ActiveKey:
    """The key the signer signs with now, since when (unix seconds), and the next one if there is one."""

    kid: str
    alg: str
    active_since: int
    next: NextKey | None


class SignerClient:
    """Calls to one signer, over one connection pool; use ``async with``, or :meth:`close` when done.

    ``socket`` (default /run/jwksd-signer/signer.sock) or ``url`` (``http://127.0.0.1:PORT``, loopback
    only, with ``token``: the content of the signer's ``token_file``). ``timeout_s`` bounds each call
    from connecting to the last byte; ``connect_timeout_s`` the connection alone.
    """

    def __init__(self, socket: str | Path | None = None, *, url: str | None = None, token: str | None = None,
                 timeout_s: float = 5.0, connect_timeout_s: float = 1.0) -> None:
        if url is not None and socket is not None:
            raise ValueError("SignerClient: give socket or url, not both")
        if url is not None:
            _check_loopback(url)
            if not token:
                raise ValueError("SignerClient: url needs token (the signer's signer.token_file)")
        elif token is not None:
            raise ValueError("SignerClient: token is sent over TCP only (url=...); the socket checks the caller's uid")
        if not 0 < connect_timeout_s <= timeout_s:
            raise ValueError(f"SignerClient: expected 0 < connect_timeout_s ({connect_timeout_s}) <= timeout_s "
                             f"({timeout_s})")
        self.socket = None if url is not None else Path(socket if socket is not None else DEFAULT_SOCKET)
        self.base_url = url.rstrip("/") if url is not None else BASE_URL
        self.timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=connect_timeout_s)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session: aiohttp.ClientSession | None = None

    @property
    def where(self) -> str:
        """The socket path or the URL, as error messages name it."""
        return str(self.socket) if self.socket is not None else self.base_url

    async def __aenter__(self) -> SignerClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool; the client may not be used afterwards."""
        if self._session is not None:
            await self._session.close()

    async def sign(self, claims: Mapping[str, Any], ttl_s: int | None = None, jti: bool = False) -> SignedToken:
        """A token of ``claims`` signed with the active key; the signer sets iat, exp (and jti when asked)."""
        body: dict[str, Any] = {"claims": dict(claims)}
        if ttl_s is not None:
            body["ttl_s"] = ttl_s
        if jti:
            body["jti"] = True
        answer = await self._call("POST", "/v1/sign", body)
        return SignedToken(token=_field(answer, "token", str), kid=_field(answer, "kid", str),
                           alg=_field(answer, "alg", str), exp=_field(answer, "exp", int))

    async def active(self) -> ActiveKey:
        """The active key's kid, alg and since when, and the next key (None when none is published yet)."""
        answer = await self._call("GET", "/v1/active", None)
        after = answer.get("next")
        if after is not None and not isinstance(after, dict):
            raise _bad_response(f"next is {type(after).__name__}, expected an object or null")
        return ActiveKey(kid=_field(answer, "kid", str), alg=_field(answer, "alg", str),
                         active_since=_field(answer, "active_since", int),
                         next=None if after is None else NextKey(
                             kid=_field(after, "kid", str),
                             promotable_from=None if after.get("promotable_from") is None else _field(
                                 after, "promotable_from", int)))

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector: aiohttp.BaseConnector = (aiohttp.UnixConnector(path=str(self.socket)) if self.socket is not None
                                                else aiohttp.TCPConnector())
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, headers=self._headers,
                                                  json_serialize=_compact)
        return self._session

    async def _call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        """One request; the answer's JSON object when it was 200, else a SignerError."""
        try:
            async with self._open().request(method, self.base_url + path, json=body) as response:
                raw = await _body(response)
                status, retry_after = response.status, response.headers.get("Retry-After")
        except aiohttp.ClientConnectorError as exc:
            raise SignerError("unreachable", f"cannot connect to the signer at {self.where}: {exc.os_error}",
                              unavailable=True) from exc
        except TimeoutError as exc:
            raise SignerError("timeout", f"the signer at {self.where} did not answer within {self.timeout_s:g} s",
                              unavailable=True) from exc
        except aiohttp.ClientError as exc:
            raise SignerError("unreachable", f"the signer at {self.where} broke off: {type(exc).__name__}: {exc}",
                              unavailable=True) from exc
        answer = _decode(raw, status)
        if status == 200:
            return answer
        error = answer.get("error")
        if not isinstance(error, dict) or not isinstance(error.get("code"), str) or not isinstance(
                error.get("message"), str):
            raise _bad_response(f"HTTP {status} without the signer's error object")
        raise SignerError(error["code"], error["message"], unavailable=status >= 500, status=status,
                          retry_after_s=_seconds(retry_after))


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _check_loopback(url: str) -> None:
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme != "http" or not loopback or parts.port is None or parts.path not in ("", "/"):
        raise ValueError(f"SignerClient: url {url!r}: expected http://127.0.0.1:PORT (the signer listens on loopback "
                         "only, and the bearer token must not leave the host)")


async def _body(response: aiohttp.ClientResponse) -> bytes:
    """The answer's body to its end, or its first MAX_RESPONSE_BYTES + 1 (read() returns what has arrived, not all)."""
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_RESPONSE_BYTES and (chunk := await response.content.read(MAX_RESPONSE_BYTES + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _decode(raw: bytes, status: int) -> dict[str, Any]:
    if len(raw) > MAX_RESPONSE_BYTES:
        raise _bad_response(f"HTTP {status} with a body over {MAX_RESPONSE_BYTES} bytes")
    try:
        answer = json.loads(raw)
    except ValueError as exc:
        raise _bad_response(f"HTTP {status} with a body that is not JSON") from exc
    if not isinstance(answer, dict):
        raise _bad_response(f"HTTP {status} with a JSON {type(answer).__name__}, expected an object")
    return answer


def _field(answer: Mapping[str, Any], name: str, kind: type[Any]) -> Any:
    value = answer.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _bad_response(f"{name} is {type(value).__name__}, expected {kind.__name__}")
    return value


def _seconds(header: str | None) -> float | None:
    try:
        return float(header) if header is not None else None
    except ValueError:
        return None


def _bad_response(detail: str) -> SignerError:
    return SignerError("bad_response", f"not a jwksd signer answer: {detail}", unavailable=True)



def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jwksd.signer_client", description="Ask a jwksd signer.")
    parser.add_argument("--socket", type=Path, help=f"the signer's Unix socket (default: {DEFAULT_SOCKET})")
    parser.add_argument("--url", help="or its loopback TCP listener, http://127.0.0.1:PORT")
    parser.add_argument("--token-file", type=Path, help="with --url: the bearer token's file")
    parser.add_argument("--timeout-s", type=float, default=5.0, help="for the whole call (default 5)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("active", help="the active key and the next (exit 1 while the signer cannot sign)")
    sign = commands.add_parser("sign", help="a token of --claims, signed with the active key")
    sign.add_argument("--claims", required=True, help='a JSON object, e.g. \'{"sub": "svc"}\'')
    sign.add_argument("--ttl-s", type=int, help="lifetime (default and maximum: the registry's max_token_lifetime_s)")
    sign.add_argument("--jti", action="store_true", help="add a random jti")
    return parser


async def _ask(args: argparse.Namespace) -> dict[str, Any]:
    token = args.token_file.read_text().strip() if args.token_file else None
    async with SignerClient(args.socket, url=args.url, token=token, timeout_s=args.timeout_s,
                            connect_timeout_s=min(1.0, args.timeout_s)) as client:
        if args.command == "active":
            return asdict(await client.active())
        return asdict(await client.sign(_claims(args.claims), ttl_s=args.ttl_s, jti=args.jti))


def _claims(text: str) -> dict[str, Any]:
    try:
        claims = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"--claims: not JSON ({exc})") from exc
    if not isinstance(claims, dict):
        raise ValueError(f"--claims: expected a JSON object, e.g. '{{\"sub\": \"svc\"}}', got {text[:40]!r}")
    return claims


def main(argv: list[str] | None = None) -> int:
    """The command line: the answer as JSON on stdout (exit 0), or the error on stderr (exit 1; 2 for usage)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        print(json.dumps(asyncio.run(_ask(args))))
    except (ValueError, OSError) as exc:  # bad --claims, --url or --token-file
        parser.error(str(exc))
    except SignerError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
