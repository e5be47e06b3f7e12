"""Shared fixtures: a real moto server on 127.0.0.1, dummy AWS credentials, an injectable clock."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
import structlog
from moto.server import ThreadedMotoServer

from tests.tls_ca import TestCA

if TYPE_CHECKING:
    from jwksd.config import RotationConfig

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No real AWS: clear AWS_* and JWKSD_*, then set dummy credentials and no shared config files."""
    import os

    for name in list(os.environ):
        if name.startswith(("AWS_", "JWKSD_")):
            monkeypatch.delenv(name)
    empty = tmp_path_factory.mktemp("aws") / "empty"
    empty.write_text("")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto server for the session, on 127.0.0.1 and a free port."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def own_moto() -> Iterator[ThreadedMotoServer]:
    """A moto server of this test's own, which the test may stop to make AWS unreachable."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    yield server
    with contextlib.suppress(Exception):  # already stopped by the test
        server.stop()


def endpoint_of(server: ThreadedMotoServer) -> str:
    host, port = server.get_host_and_port()
    return f"http://{host}:{port}"


class Secrets:
    """A boto3 client on a moto endpoint, handing out unique secret names."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.client: Any = boto3.client("secretsmanager", endpoint_url=endpoint, region_name=REGION,
                                        aws_access_key_id="testing", aws_secret_access_key="testing")

    def create(self, content: str | bytes) -> str:
        name = f"jwksd-test/{uuid.uuid4()}"
        if isinstance(content, bytes):
            self.client.create_secret(Name=name, SecretBinary=content)
        else:
            self.client.create_secret(Name=name, SecretString=content)
        return name

    def put(self, name: str, content: str) -> None:
        """A new version that becomes AWSCURRENT; the old one becomes AWSPREVIOUS."""
        self.client.put_secret_value(SecretId=name, SecretString=content)


@pytest.fixture
def secrets(moto_endpoint: str) -> Secrets:
    return Secrets(moto_endpoint)


@dataclass
class FakeClock:
    """Wall and monotonic time that only move when a test says so."""

    wall: float = 1_800_000_000.0
    mono: float = 1000.0

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_endpoint() -> str:
    """An http URL on 127.0.0.1 where nothing listens: AWS is down."""
    return f"http://127.0.0.1:{free_port()}"


HMAC_KEY = b"k" * 40  # the shared cache's HMAC key in tests


@pytest.fixture(scope="module")
def ca() -> TestCA:
    """A test certificate authority for the module (tests/tls_ca.py): root, intermediate, localhost leaves."""
    return TestCA()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real redis-server for the test module (tests/redis_server.py)."""
    from tests.redis_server import RedisServer  # it imports this module: not at the top

    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis(redis_server: Any) -> Any:
    """The module's redis-server, running and empty."""
    if not redis_server.running:
        redis_server.start()
    with redis_server.client() as client:
        client.flushall()
    return redis_server


@pytest.fixture
def hmac_key_file(tmp_path: Path) -> Path:
    """A 40-byte HMAC key, newline-terminated as an editor leaves it."""
    path = tmp_path / "hmac.key"
    path.write_bytes(HMAC_KEY + b"\n")
    return path


@pytest.fixture
async def registry(moto_endpoint: str) -> AsyncIterator[RotationConfig]:
    """A KMS registry on moto with v1 active and v2, the next key, published (the signer's tests sign with it)."""
    from tests.rotation_helpers import keyring, rotation_config  # these import this module
    from tests.signer_helpers import active_registry

    config = rotation_config(moto_endpoint)
    async with keyring(config, publish=True) as ring:
        await active_registry(ring, f"{config.private_secret_prefix}/public")
    yield config


@pytest.fixture
def reset_logging() -> Iterator[None]:
    """Each `jwksd` command points structlog at the captured stderr of its test; put it back afterwards."""
    yield
    structlog.reset_defaults()
