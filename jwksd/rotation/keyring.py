"""The resources a ``jwksd keys`` command works with, opened together and closed together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jwksd import aws
from jwksd.aws.registry import EXTERNAL, KeyRecord, RegistryHead
from jwksd.aws.retry import Retries
from jwksd.config import RotationConfig
from jwksd.errors import RotationError
from jwksd.rotation.backends import Backend
from jwksd.rotation.external import EXTERNAL_BACKEND
from jwksd.rotation.policy import Policy
from jwksd.rotation.registry import Registry

if TYPE_CHECKING:
    from types_aiobotocore_secretsmanager import SecretsManagerClient

# Three attempts, full jitter from 1 s up to 20 s: what botocore's standard retry mode did for these commands.
RETRIES = Retries(max_retries=2, retry_base_s=1.0, retry_cap_s=20.0)


@dataclass(frozen=True)
class Keyring:
    """The registry, the key backend, and a Secrets Manager client when one is needed.

    Once the head is adopted (``head.adopt_head``), ``config`` carries the registry's stored policy.
    """

    config: RotationConfig
    registry: Registry
    backend: Backend
    secrets: aws.Client[SecretsManagerClient] | None
    head: RegistryHead | None = None  # as read when the command started; None before it was adopted

    @property
    def policy(self) -> Policy:
        """The lifecycle's durations: the registry's stored policy once the head is adopted."""
        return Policy.of(self.head.policy if self.head is not None else self.config)

    def backend_for(self, record: KeyRecord) -> Backend:
        """The backend that holds ``record``'s key: a rotator configured for another one must not touch it.

        An external (adopted) key has the external backend, whatever ``rotation.backend`` is.
        """
        if record.backend == EXTERNAL:
            return EXTERNAL_BACKEND
        if record.backend != self.backend.name:
            raise RotationError("backend_mismatch", f"registry version {record.version} is a {record.backend} key "
                                                    f"and rotation.backend is {self.backend.name}")
        return self.backend


@asynccontextmanager
async def open_keyring(config: RotationConfig, *, publish: bool = False) -> AsyncIterator[Keyring]:
    """Open the clients ``config`` needs (Secrets Manager also for ``publish``); close them on the way out."""
    async with AsyncExitStack() as stack:
        def at(url: str | None) -> aws.Endpoint:
            return aws.Endpoint(config.region, url, config.connect_timeout_s, config.read_timeout_s)

        registry = Registry(await aws.dynamodb(stack, at(config.dynamodb_endpoint_url), RETRIES), config.table)
        secrets = None
        if config.backend == "local" or publish or config.publish_secret_id:
            secrets = await aws.secretsmanager(stack, at(config.secretsmanager_endpoint_url), RETRIES)
        backend: Backend
        if config.backend == "local" and secrets is not None:
            from jwksd.rotation.local import LocalBackend

            backend = LocalBackend(secrets, config)
        else:
            from jwksd.rotation.kms import KmsBackend

            backend = KmsBackend(await aws.kms(stack, at(config.kms_endpoint_url), RETRIES), config)
        yield Keyring(config, registry, backend, secrets)
