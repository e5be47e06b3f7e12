"""The signer's least-privilege IAM policies (config/iam/): their shape, that IAM accepts them, and that they
grant every AWS call a real signer makes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from prometheus_client.parser import text_string_to_metric_families

from jwksd.config.model import RotationConfig
from tests.conftest import REGION
from tests.rotation_helpers import keyring, rotation_config
from tests.signer_helpers import SignerProcess, active_registry, rotation_table

IAM_DIR = Path(__file__).resolve().parent.parent / "config" / "iam"
POLICIES = {"kms": IAM_DIR / "jwksd-signer-kms.json", "local": IAM_DIR / "jwksd-signer-local.json"}
TABLE_ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/jwksd-keys"
KMS_KEYS = "arn:aws:kms:eu-west-1:123456789012:key/*"
PRIVATE_KEYS = f"arn:aws:secretsmanager:eu-west-1:123456789012:secret:{RotationConfig.private_secret_prefix}/*"
TAGGED = {"aws:ResourceTag/jwksd-table": "jwksd-keys"}
# What the signer calls, by backend: the registry item by item, then the keys (KMS: GetPublicKey once
# per kid to check it, Sign per token; local: the private JWK once per kid).
EXPECTED = {
    "kms": {"dynamodb:GetItem": TABLE_ARN, "dynamodb:Query": TABLE_ARN, "kms:GetPublicKey": KMS_KEYS,
            "kms:Sign": KMS_KEYS},
    "local": {"dynamodb:GetItem": TABLE_ARN, "dynamodb:Query": TABLE_ARN,
              "secretsmanager:GetSecretValue": PRIVATE_KEYS},
}


def statements(backend: str) -> list[dict[str, Any]]:
    document = json.loads(POLICIES[backend].read_text())
    assert set(document) == {"Version", "Statement"} and document["Version"] == "2012-10-17"
    found: list[dict[str, Any]] = document["Statement"]
    return found


@pytest.mark.parametrize("backend", sorted(POLICIES))
def test_policy_grants_exactly_what_the_signer_calls(backend: str) -> None:
    """Each action the signer needs, on its one resource, and nothing else: no Scan, no write, no wildcard action."""
    granted: dict[str, str] = {}
    for statement in statements(backend):
        assert statement["Effect"] == "Allow" and statement["Sid"].isalnum(), statement
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}, statement
        assert isinstance(statement["Action"], list) and isinstance(statement["Resource"], str), statement
        for action in statement["Action"]:
            assert "*" not in action and action not in granted, action
            granted[action] = statement["Resource"]
    assert granted == EXPECTED[backend]
    assert not any(name.endswith(":Scan") for name in granted)


def test_kms_statements_are_confined_to_the_tables_keys() -> None:
    """Every KMS action is conditioned on the tag jwksd puts on its keys; Sign only on a raw message."""
    kms = {action: statement for statement in statements("kms") for action in statement["Action"]
           if action.startswith("kms:")}
    assert kms["kms:GetPublicKey"]["Condition"] == {"StringEquals": TAGGED}
    assert kms["kms:Sign"]["Condition"] == {"StringEquals": {**TAGGED, "kms:MessageType": "RAW"}}
    assert not [statement for statement in statements("local") if "Condition" in statement]


@pytest.mark.parametrize("backend", sorted(POLICIES))
def test_iam_accepts_the_policy(backend: str, moto_endpoint: str) -> None:
    """moto's IAM, which validates a policy document's grammar, creates each policy as shipped."""
    iam = boto3.client("iam", endpoint_url=moto_endpoint, region_name=REGION)
    name = f"jwksd-signer-{backend}"
    created = iam.create_policy(PolicyName=name, PolicyDocument=POLICIES[backend].read_text())
    try:
        assert created["Policy"]["PolicyName"] == name
    finally:
        iam.delete_policy(PolicyArn=created["Policy"]["Arn"])


SERVICE_OF = {"GetItem": "dynamodb", "Query": "dynamodb", "Scan": "dynamodb", "Sign": "kms", "GetPublicKey": "kms",
              "GetSecretValue": "secretsmanager"}


@pytest.mark.parametrize("backend", sorted(POLICIES))
def test_the_policy_covers_every_call_of_a_real_signer(backend: str, moto_endpoint: str, tmp_path: Path) -> None:
    """A real signer that starts and signs on each backend makes only AWS calls its policy grants (its own metrics)."""
    config = rotation_config(moto_endpoint, backend=backend)
    asyncio.run(_active_registry(config))
    signer = SignerProcess.start(tmp_path, rotation_table(config, moto_endpoint))
    try:
        signer.sign({"sub": "iam"})
        _, _, text = signer.metrics_get("/metrics")
    finally:
        signer.kill()
    made = {f"{SERVICE_OF[sample.labels['operation']]}:{sample.labels['operation']}"
            for family in text_string_to_metric_families(text.decode()) for sample in family.samples
            if sample.name == "jwksd_signer_aws_calls_total" and sample.value > 0}
    assert made and made <= set(EXPECTED[backend]), made


async def _active_registry(config: RotationConfig) -> None:
    async with keyring(config, publish=True) as ring:
        await active_registry(ring, f"{config.private_secret_prefix}/public")
