"""`make run`: a local Secrets Manager (moto on 127.0.0.1) seeded with a fresh key, and jwksd serving it.

Needs the ``demo`` extra (moto, PyJWT). Prints the JWKS URL and a JWT signed with the demo private
key that verifies against the served set. The private key lives only in this process.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from jwksd import aws
from jwksd.aws.retry import NO_RETRIES
from jwksd.config import load_config
from jwksd.errors import JwksdError
from jwksd.log import configure_logging
from jwksd.validate.jwk import thumbprint

SECRET_ID = "jwksd/demo/public-keys"  # noqa: S105 - a secret name, not a secret
REGION = "us-east-1"
OIDC_DEMO_VARIABLES = ("JWKSD_OIDC_ISSUER", "JWKSD_TLS_CERT_FILE", "JWKSD_TLS_KEY_FILE")
# Taken from the environment when set: the walk-through test runs the demo beside others (its own ports).
DEMO_VARIABLES = {"JWKSD_REFRESH_INTERVAL_S": "30", "JWKSD_METRICS_LISTEN": "127.0.0.1:9464"}


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def demo_key() -> tuple[rsa.RSAPrivateKey, dict[str, Any]]:
    """A fresh RSA-2048 key pair and its public JWK, kid = RFC 7638 thumbprint."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = private.public_key().public_numbers()
    jwk: dict[str, Any] = {"kty": "RSA", "n": _b64(numbers.n), "e": _b64(numbers.e)}
    jwk.update(kid=thumbprint(jwk), use="sig", alg="RS256")
    return private, jwk


async def _seed(endpoint: str, secret: str) -> None:
    """Create the demo secret in the local Secrets Manager, through jwksd's one AWS boundary."""
    async with contextlib.AsyncExitStack() as stack:
        client = await aws.secretsmanager(stack, aws.Endpoint(REGION, endpoint, 5.0, 5.0), NO_RETRIES)
        await client.call("CreateSecret", lambda raw: raw.create_secret(Name=SECRET_ID, SecretString=secret))


def run_demo(port: int = 8080) -> int:
    """Start moto, seed the secret in the kid-map format, print a sample token, serve until Ctrl-C."""
    import jwt
    from moto.server import ThreadedMotoServer

    from jwksd.daemon import serve

    # Dummy credentials for the local endpoint only; botocore reads them from the environment.
    for name, value in {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo",
                        "AWS_DEFAULT_REGION": REGION}.items():
        os.environ.setdefault(name, value)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines are noise here
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, moto_port = moto.get_host_and_port()
        endpoint = f"http://{host}:{moto_port}"
        private, jwk = demo_key()
        kid = jwk.pop("kid")
        asyncio.run(_seed(endpoint, json.dumps({kid: jwk})))
        state_dir = tempfile.mkdtemp(prefix="jwksd-demo-")
        config = load_config(None, {
            "JWKSD_LISTEN": f"127.0.0.1:{port}",
            "JWKSD_SECRET_ID": SECRET_ID, "JWKSD_STATE_DIR": state_dir,
            **{name: os.environ.get(name) or default for name, default in DEMO_VARIABLES.items()},
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoint, "AWS_REGION": REGION,
            "JWKSD_LOG_FORMAT": os.environ.get("JWKSD_LOG_FORMAT", "console"),
            # The OIDC walk-through (docs/oidc.md) runs the demo as an issuer, over TLS if given a pair.
            **{name: os.environ[name] for name in OIDC_DEMO_VARIABLES if os.environ.get(name)},
        })
        now = int(time.time())
        token = jwt.encode({"sub": "demo-user", "iss": "jwksd-demo", "iat": now, "exp": now + 3600},
                           private, algorithm="RS256", headers={"kid": kid})
        url = f"{'https' if config.server.tls_cert_file else 'http'}://127.0.0.1:{port}/.well-known/jwks.json"
        print(f"\njwksd demo\n  local Secrets Manager: {endpoint} (secret {SECRET_ID})\n"
              f"  the same moto serves KMS and DynamoDB, for the rotation walk-through (docs/rotation.md):\n"
              f"    export AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo "
              f"AWS_REGION={REGION}\n  JWKS: {url}\n"
              f"  metrics: http://{config.server.metrics_listen}/metrics   health: http://127.0.0.1:{port}/health\n"
              f"  sample JWT (RS256, kid {kid}):\n{token}\n"
              f"  verify it from another shell:\n    .venv/bin/python -c \"import jwt,sys; t=sys.argv[1]; "
              f"k=jwt.PyJWKClient('{url}').get_signing_key_from_jwt(t); "
              f"print(jwt.decode(t, k.key, algorithms=['RS256']))\" {token}\n"
              f"  Ctrl-C to stop.\n", flush=True)
        configure_logging(config.log.level, config.log.format)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(config))
    except JwksdError as exc:  # a port taken (another demo?): said in one line, as serve says it
        print(f"jwksd demo: cannot start: {exc}\n  another jwksd may be running; `jwksd demo --port N` "
              "picks another port (JWKSD_METRICS_LISTEN the metrics one)", file=sys.stderr)
        return 2
    finally:
        moto.stop()
    return 0
