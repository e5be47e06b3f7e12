"""The resources a ``jwksd keys`` command works with, opened together and closed together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from jwksd.config import RotationConfig
from jwksd.errors import RotationError
from jwksd.rotation.aws import Client, open_client
from jwksd.rotation.backends import Backend
from jwksd.rotation.policy import KeyRecord, Policy
from jwksd.rotation.registry import Registry


@dataclass(frozen=True)
class Keyring:
    """The registry, the key backend, and a Secrets Manager client when one is needed."""

    config: RotationConfig
    registry: Registry
    backend: Backend
    secrets: Client | None

    @property
    def policy(self) -> Policy:
        return Policy.of(self.config)

    def backend_for(self, record: KeyRecord) -> Backend:
        """The backend that holds ``record``'s key: a rotator configured for another one must not touch it."""
        if record.backend != self.backend.name:
            raise RotationError("backend_mismatch", f"registry version {record.version} is a {record.backend} key "
                                                    f"and rotation.backend is {self.backend.name}")
        return self.backend


@asynccontextmanager
async def open_keyring(config: RotationConfig, *, publish: bool = False) -> AsyncIterator[Keyring]:
    """Open the clients ``config`` needs (Secrets Manager also for ``publish``); close them on the way out."""
    async with AsyncExitStack() as stack:
        async def client(service: str, endpoint_url: str | None) -> Client:
            return await open_client(stack, service, region=config.region, endpoint_url=endpoint_url,
                                     connect_timeout_s=config.connect_timeout_s, read_timeout_s=config.read_timeout_s)

        registry = Registry(await client("dynamodb", config.dynamodb_endpoint_url), config.table)
        secrets = None
        if config.backend == "local" or publish or config.publish_secret_id:
            secrets = await client("secretsmanager", config.secretsmanager_endpoint_url)
        backend: Backend
        if config.backend == "local" and secrets is not None:
            from jwksd.rotation.local import LocalBackend

            backend = LocalBackend(secrets, config)
        else:
            from jwksd.rotation.kms import KmsBackend

            backend = KmsBackend(await client("kms", config.kms_endpoint_url), config)
        yield Keyring(config, registry, backend, secrets)
