"""One `jwksd keys rotate` step: independent expiries, the outcome textfile, and the clock checked against AWS's."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from pathlib import Path

import boto3
import pytest
from prometheus_client.parser import text_string_to_metric_families

from jwksd.__main__ import main
from jwksd.errors import RotationError
from jwksd.metrics import Metrics
from jwksd.rotation.clock import check_clock, clock_skew
from jwksd.rotation.report import write_report
from jwksd.rotation.rotate import iso, rotate
from tests.conftest import REGION
from tests.fault_proxy import start_proxy
from tests.rotation_helpers import DAY, T0, key_state, keyring, rotation_config

P = 1500
RULES_DIR = Path(__file__).resolve().parent.parent / "config" / "prometheus"


pytestmark = pytest.mark.usefixtures("reset_logging")  # conftest: structlog put back after each test


def samples(path: Path) -> dict[tuple[str, str], float]:
    """(name, action label) -> value of a Prometheus textfile."""
    return {(s.name, s.labels.get("action", "")): s.value
            for family in text_string_to_metric_families(path.read_text()) for s in family.samples}


async def test_a_failing_expiry_does_not_stop_a_due_promotion(moto_endpoint: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """An expiry that fails (backend_mismatch) is reported, exit 1 and a metric, and the due promotion still runs."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    config = rotation_config(moto_endpoint, rotate_every_s=2 * DAY, retire_grace_s=2 * DAY)
    async with keyring(config) as ring:
        for at in (T0, T0 + P, T0 + P + 2 * DAY):
            await rotate(ring, at)
        v1 = (await ring.registry.records())[0]
    boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name=REGION).update_item(
        TableName=config.table, Key={"version": {"N": "1"}}, UpdateExpression="SET backend = :b",
        ExpressionAttributeValues={":b": {"S": "local"}})
    metrics_file = tmp_path / "jwksd-rotation.prom"
    path = tmp_path / "rotate.toml"
    path.write_text(f'[rotation]\ntable = "{config.table}"\nkey_spec = "ECC_NIST_P256"\nrotate_every_s = {2 * DAY}\n'
                    f'metrics_file = "{metrics_file}"\n')
    before = time.time()
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["keys", "rotate", "--config", str(path), "--now", iso(T0 + P + 4 * DAY),
                                          "--clock-override"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert lines[0] == (f"expiry failed v1 kid={v1.kid} error_code=backend_mismatch message='registry version 1 is "
                        "a local key and rotation.backend is kms'")
    assert lines[1].startswith("activated v3 kid=") and lines[2].startswith("retired v2 kid=")
    assert lines[3].startswith("created v4 kid=")
    found = samples(metrics_file)
    assert found[("jwksd_rotation_failed_actions", "expire")] == 1
    assert found[("jwksd_rotation_failed_actions", "publish")] == found[("jwksd_rotation_failed_actions", "step")] == 0
    assert found[("jwksd_rotation_last_run_timestamp_seconds", "")] >= before
    # v1's failed expiry is still due: the next change is overdue from now on, until a run completes it.
    assert found[("jwksd_rotation_next_due_timestamp_seconds", "")] == T0 + P + 4 * DAY


async def test_a_skewed_clock_is_refused(moto_endpoint: str) -> None:
    """A host clock two hours fast (or slow) is refused, naming both clocks' difference; a right one passes."""
    config = rotation_config(moto_endpoint, max_clock_skew_s=60)
    async with keyring(config) as ring:
        assert abs(await clock_skew(ring)) < 60  # moto answers with this machine's clock
        await check_clock(ring)
        with pytest.raises(RotationError) as info:
            await check_clock(ring, clock=lambda: time.time() + 7200)
        assert re.match(r"clock_skew: this host's clock is 7(19[89]|20[0-2])s ahead of AWS's \(the Date of a DynamoDB "
                        r"response\); rotation\.max_clock_skew_s is 60\. No change made: fix the clock \(NTP\) and "
                        r"run again$", str(info.value)), str(info.value)
        with pytest.raises(RotationError, match=r"^clock_skew: this host's clock is 1\d\ds behind AWS's"):
            await check_clock(ring, clock=lambda: time.time() - 130)


def test_now_outside_dry_run_needs_clock_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--now on a changing command is refused (exit 2) unless --dry-run or --clock-override is given."""
    path = tmp_path / "rotate.toml"
    path.write_text("[rotation]\n")
    for command in (["rotate"], ["promote"], ["revoke", "some-kid"]):
        assert main(["keys", *command, "--config", str(path), "--now", "2027-01-15T08:00:00Z"]) == 2
        assert capsys.readouterr().err == ("jwksd: invalid configuration:\n  - --now = '2027-01-15T08:00:00Z': "
                                           "changes keys at a time that is not the clock's; allowed with --dry-run, "
                                           "or with --clock-override (tests and drills only)\n")


def test_overdue_and_failing_alerts_pass_promtool(tmp_path: Path) -> None:
    """promtool checks and unit-tests rotation-alerts.yml; every metric it names is one write_report or the daemon
    writes."""
    for args in (("check", "rules", "rotation-alerts.yml"), ("test", "rules", "rotation-alerts.test.yml")):
        result = subprocess.run(["promtool", *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=60,
                                check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    write_report(tmp_path / "r.prom", ["expire"], next_due=T0)
    written = {name for name, _ in samples(tmp_path / "r.prom")} | {
        family.name for family in Metrics().registry.collect()}  # the daemon's, the dynamodb source's gauges too
    used = set(re.findall(r"\bjwksd_[a-z_]+", (RULES_DIR / "rotation-alerts.yml").read_text()))
    assert used <= written, used - written


async def test_a_lost_answer_to_the_registry_write_keeps_the_key(moto_endpoint: str) -> None:
    """When the answer to a new key's registry write is lost and the retry finds the item its creation id made,
    the key stays recorded and usable, not deleted as another rotator's loss."""
    proxy = await start_proxy(moto_endpoint)  # between the rotator and DynamoDB; KMS is reached directly
    try:
        async with keyring(rotation_config(moto_endpoint, dynamodb_endpoint_url=proxy.url)) as ring:
            proxy.fault, proxy.operations, proxy.times = "truncated", frozenset({"TransactWriteItems"}), 1
            result = await rotate(ring, T0)
            assert [a.fault for a in proxy.attempts if a.fault] == ["truncated"]
            (record,) = await ring.registry.records()
            assert result.lines[0].startswith(f"created v1 kid={record.kid} state=pending key={record.key_ref}")
            assert not result.conflict and record.creation_id is not None
            assert key_state(moto_endpoint, record.key_ref) == "Enabled"
    finally:
        await proxy.close()
