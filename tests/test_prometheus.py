"""A real Prometheus scrapes real jwksd processes; promtool checks and unit-tests the shipped rules."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REGION, Secrets, closed_endpoint, free_port
from tests.daemon_process import Daemon, base_env, http_get, terminate, wait_until
from tests.keys import jwk_set, rsa_jwk, rsa_key

RULES_DIR = Path(__file__).resolve().parent.parent / "config" / "prometheus"
PROMETHEUS = "/usr/bin/prometheus"
Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=60, check=False)


def test_alert_rules_pass_promtool_check() -> None:
    """promtool check rules accepts every alerting rule."""
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 13 rules found" in result.stdout


def test_alert_rules_unit_tests() -> None:
    """promtool test rules: each alert fires when it should, with its labels and text, and not otherwise."""
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_scrape_config_is_valid() -> None:
    """The example prometheus.yml and the rule file it names pass promtool check config."""
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


class Prometheus:
    """A Prometheus server on 127.0.0.1 scraping ``targets`` every second, with the shipped alert rules."""

    def __init__(self, workdir: Path, targets: list[str]) -> None:
        self.port = free_port()
        config = workdir / "prometheus.yml"
        config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": [str(RULES_DIR / "alerts.yml")],
            "scrape_configs": [{"job_name": "jwksd", "static_configs": [{"targets": targets}]}],
        }))  # JSON is YAML
        self.log = (workdir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        """Until /-/ready says 200: the API answers 503 while the storage opens."""
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.process.returncode}")
            return http_get(f"http://127.0.0.1:{self.port}/-/ready")[0] == 200

        wait_until(ready, "prometheus to be ready")

    def api(self, path: str, **params: str) -> Any:
        status, _, body = http_get(f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}")
        assert status == 200, body
        return json.loads(body)["data"]

    def series(self, instance: str) -> Series:
        """Every jwksd_* series of one target at its latest scrape, without the job and instance labels."""
        result = self.api("query", query=f'{{__name__=~"jwksd_.+", instance="{instance}"}}')["result"]
        return {_key(s["metric"].pop("__name__"), s["metric"]): float(s["value"][1]) for s in result}

    def stop(self) -> None:
        terminate(self.process)
        self.log.close()


def _key(name: str, labels: dict[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted((k, v) for k, v in labels.items() if k not in ("job", "instance")))


def scraped_by_daemon(metrics_url: str) -> Series:
    """What the daemon itself reports on /metrics, parsed by prometheus-client's parser."""
    status, _, body = http_get(metrics_url)
    assert status == 200
    return {_key(sample.name, sample.labels): sample.value
            for family in text_string_to_metric_families(body.decode()) for sample in family.samples}


@pytest.fixture
def daemons(secrets: Secrets, tmp_path: Path) -> Iterator[tuple[Daemon, Daemon]]:
    """A healthy jwksd on the moto secret, and one with AWS down serving its fallback file."""
    secret = secrets.create(jwk_set(rsa_jwk(rsa_key(0), "k1")))
    fallback = tmp_path / "fallback.json"
    fallback.write_text(jwk_set(rsa_jwk(rsa_key(1), "fb")))
    common = {"JWKSD_REFRESH_INTERVAL_S": "3600", "JWKSD_MAX_AGE_S": "3600", "AWS_REGION": REGION}
    healthy = Daemon.from_env(base_env(**common, JWKSD_SECRET_ID=secret, JWKSD_LISTEN=f"127.0.0.1:{free_port()}",
                                       JWKSD_METRICS_LISTEN=f"127.0.0.1:{free_port()}",
                                       AWS_ENDPOINT_URL_SECRETS_MANAGER=secrets.endpoint),
                              tmp_path / "healthy.log", wait_ready=False)
    degraded = Daemon.from_env(base_env(**common, JWKSD_SECRET_ID="jwksd-test/none",
                                        JWKSD_LISTEN=f"127.0.0.1:{free_port()}",
                                        JWKSD_METRICS_LISTEN=f"127.0.0.1:{free_port()}",
                                        JWKSD_FALLBACK_FILE=str(fallback),
                                        AWS_ENDPOINT_URL_SECRETS_MANAGER=closed_endpoint()),
                               tmp_path / "degraded.log", wait_ready=False)
    try:
        healthy.wait_ready()
        healthy.wait_event("refresh")
        degraded.wait_ready()
        yield healthy, degraded
    finally:
        healthy.kill()
        degraded.kill()


def metrics_target(daemon: Daemon) -> str:
    return daemon.env["JWKSD_METRICS_LISTEN"]


def test_prometheus_scrapes_jwksd_and_evaluates_the_rules(daemons: tuple[Daemon, Daemon], tmp_path: Path) -> None:
    """Prometheus sees both targets up, stores exactly what the healthy daemon reports, alerts on the degraded one."""
    healthy, degraded = daemons
    a, b = metrics_target(healthy), metrics_target(degraded)
    prometheus = Prometheus(tmp_path, [a, b])
    try:
        prometheus.wait_ready()
        def targets_up() -> list[dict[str, Any]] | None:
            active = prometheus.api("targets")["activeTargets"]
            up = [t for t in active if t["health"] == "up"]
            return active if len(up) == 2 else None

        targets = wait_until(targets_up, "both jwksd targets to be scraped and up")
        assert {t["labels"]["instance"] for t in targets} == {a, b}

        # The healthy daemon refreshes hourly and nobody calls it: its series must match /metrics exactly
        # (the served set's age and the open connections, the scrapers' own, are computed at scrape time,
        # so they are left out).
        stored = wait_until(lambda: prometheus.series(a), "the healthy daemon's series in Prometheus")
        reported = scraped_by_daemon(f"http://{a}/metrics")
        moving = {key for key in reported if key[0] in ("jwksd_served_age_seconds", "jwksd_connections_open")}
        assert {k: v for k, v in stored.items() if k not in moving} == {
            k: v for k, v in reported.items() if k not in moving}
        assert stored[("jwksd_keys_served", ())] == 1
        assert stored[("jwksd_serving", (("source", "fresh"),))] == 1
        assert stored[("jwksd_refreshes_total", (("outcome", "success"), ("source", "secretsmanager")))] == 1
        assert stored[("jwksd_aws_calls_total", (("code", "ok"), ("operation", "GetSecretValue")))] == 1
        assert stored[("jwksd_max_age_seconds", ())] == 3600
        assert any(name == "jwksd_build_info" for name, _ in stored)

        # Every metric an alert rule names exists on a real daemon (a renamed metric would silence a rule).
        names = set(prometheus.api("label/__name__/values"))
        used = set(re.findall(r"\bjwksd_[a-z_]+", (RULES_DIR / "alerts.yml").read_text()))
        assert used <= names, used - names

        def degraded_alerts() -> set[str] | None:
            alerts = prometheus.api("alerts")["alerts"]
            on_b = {alert["labels"]["alertname"] for alert in alerts if alert["labels"].get("instance") == b}
            return on_b if {"JwksdServingFallback", "JwksdNoSuccessfulRefresh"} <= on_b else None

        on_b = wait_until(degraded_alerts, "the degraded daemon's alerts to be pending")
        assert on_b <= {"JwksdServingFallback", "JwksdNoSuccessfulRefresh", "JwksdAwsErrors"}
        alerts = prometheus.api("alerts")["alerts"]
        assert [alert for alert in alerts if alert["labels"].get("instance") == a] == []
        groups = prometheus.api("rules")["groups"]
        assert [(rule["name"], rule["health"]) for group in groups for rule in group["rules"]
                if rule["health"] != "ok"] == []
    finally:
        prometheus.stop()
