"""The settings' declarations: the example config, the defaults, the environment and the restart-only list."""

from __future__ import annotations

import re
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from jwksd.aws.head import POLICY_FIELDS
from jwksd.config import (
    Config,
    DynamoDBSourceConfig,
    FileSourceConfig,
    HttpCacheConfig,
    HttpSourceConfig,
    Listen,
    LogConfig,
    RefreshConfig,
    RotationConfig,
    SecretsManagerSourceConfig,
    ServerConfig,
    SharedCacheConfig,
    StateConfig,
    SystemdConfig,
    ValidationConfig,
    all_settings,
    keep_restart_only,
    load_config,
    restart_required,
)
from jwksd.config.declare import REQUIRED
from jwksd.config.example import in_registry, is_off, render
from jwksd.config.reference import BEGIN, END, render_table
from jwksd.config.settings import SECTIONS, env_keys, section_settings, source_settings
from jwksd.config.source_model import SOURCE_CLASSES

EXAMPLE = Path(__file__).parent.parent / "config" / "jwksd.example.toml"


def test_example_file_is_rendered_from_the_declarations() -> None:
    """config/jwksd.example.toml is exactly what `python -m jwksd.config.example` prints."""
    assert EXAMPLE.read_text() == render(), "run: python -m jwksd.config.example > config/jwksd.example.toml"


def test_a_copied_example_follows_the_registrys_policy() -> None:
    """The example sets none of the policy values the registry stores, so a copy of it never pins one."""
    config = load_config(EXAMPLE, need_source=False)
    assert config.rotation is not None
    assert config.rotation.explicit & set(POLICY_FIELDS) == set()
    assert "\n# rotate_every_s = 2592000 " in EXAMPLE.read_text()


def test_example_file_matches_the_declarations() -> None:
    """Each table of the example holds exactly the declared keys, at their defaults, with their env names."""
    data = tomllib.loads(EXAMPLE.read_text())
    tables = {name: section_settings(name) for name in SECTIONS}
    tables["source"] = source_settings("secretsmanager")
    assert set(data) == {name for name, settings in tables.items() if not all(is_off(s) for s in settings)}
    for name in data:
        active = {s.name: s for s in tables[name] if not is_off(s) and not in_registry(s)}
        assert set(data[name]) == set(active), name
        for key, value in data[name].items():
            expected = active[key].default if active[key].example is None else active[key].example
            assert value == (list(expected) if isinstance(expected, tuple) else
                             str(expected) if isinstance(expected, Listen | Path) else expected), f"{name}.{key}"
    envs = {}
    for line in EXAMPLE.read_text().splitlines():
        found = re.fullmatch(r"[#\s]*(\w+) = .*# .*\[(JWKSD_\w+)\]( \(restart\))?", line)
        if found:
            envs[found[2]] = found[1]
    assert envs == {variable: key for variable, (_, key) in env_keys().items()}


def test_every_setting_is_fully_declared() -> None:
    """Each setting has a doc, a value to show, a known kind; env names are unique and JWKSD_*."""
    settings = all_settings()
    for setting in settings:
        assert setting.doc and setting.kind, setting.key
        assert not is_off(setting) or setting.example is not None, setting.key
        assert setting.default is not REQUIRED or setting.section == "source", setting.key
    variables = [s.env for s in settings if s.env]
    assert len(variables) == len(set(variables)) and all(v.startswith("JWKSD_") for v in variables)
    assert {s.key for s in settings} >= {"server.listen", "source.kind", "rotation.endpoint_url", "log.format"}
    assert [s.unit for s in settings if s.key in ("refresh.interval_s", "validation.max_document_bytes",
                                                  "rotation.deletion_window_days", "log.level")] == \
        ["seconds", "bytes", "", "days"]


def test_minimal_config_is_every_default(tmp_path: Path) -> None:
    """A file with only a secret id loads to these values, each default spelled out once here."""
    path = tmp_path / "jwksd.toml"
    path.write_text('[source]\nsecret_id = "s"\n')
    assert load_config(path, {}) == Config(
        sources=(SecretsManagerSourceConfig(
            secret_id="s", name="secretsmanager", version_stages=("AWSCURRENT", "AWSPREVIOUS"), region=None,
            endpoint_url=None, connect_timeout_s=5.0, read_timeout_s=5.0, max_retries=3, retry_base_s=0.2,
            retry_cap_s=5.0),),
        server=ServerConfig(
            listen=Listen("127.0.0.1", 8080), metrics_listen=Listen("127.0.0.1", 9464), metrics_on_main=False,
            paths=("/.well-known/jwks.json",), keepalive_timeout_s=5.0, max_line_size=4096, max_field_size=4096,
            max_headers=32, shutdown_timeout_s=5.0, event_loop="auto", tls_cert_file=None, tls_key_file=None,
            tls_watch_interval_s=5.0, write_timeout_s=5.0,
            max_connections=None),
        refresh=RefreshConfig(interval_s=300.0, jitter=0.1, max_age_s=600.0, max_staleness_s=86400.0,
                              retry_base_s=1.0, retry_cap_s=60.0, startup_grace_s=10.0),
        http_cache=HttpCacheConfig(stale_while_revalidate_s=60, stale_if_error_s=86400, degraded_max_age_s=30),
        state=StateConfig(state_dir=None, fallback_file=None),
        validation=ValidationConfig(max_document_bytes=65536, max_keys=100, max_depth=20, require_kid=True,
                                    require_thumbprint_kid=False, allow_secp256k1=False),
        log=LogConfig(level="info", format="auto"),
        systemd=SystemdConfig(notify_socket=None, watchdog_s=None),
        shared_cache=SharedCacheConfig(url="", namespace="jwksd", lease_s=5.0, hmac_key_file=None, timeout_s=0.5),
        rotation=None,
        oidc=None,
        path=path,
    )


def test_other_kinds_and_rotation_defaults(tmp_path: Path) -> None:
    """Each other source kind and [rotation] load to these values, each default spelled out once here."""
    path = tmp_path / "jwksd.toml"
    path.write_text('[[sources]]\nkind = "file"\npath = "/k.json"\n[[sources]]\nkind = "http"\n'
                    'url = "https://idp.example/jwks"\n[[sources]]\nkind = "dynamodb"\n[rotation]\n')
    config = load_config(path, {})
    assert config.sources == (
        FileSourceConfig(path=Path("/k.json"), name="file"),
        HttpSourceConfig(url="https://idp.example/jwks", name="http", connect_timeout_s=5.0, read_timeout_s=5.0,
                         max_retries=2, retry_base_s=0.2, retry_cap_s=5.0, min_refresh_s=60.0, max_refresh_s=3600.0,
                         allow_insecure_loopback=False),
        DynamoDBSourceConfig(table="jwksd-keys", name="dynamodb", region=None, endpoint_url=None,
                             kms_endpoint_url=None, connect_timeout_s=5.0, read_timeout_s=5.0),
    )
    assert config.rotation == RotationConfig(
        table="jwksd-keys", backend="kms", private_secret_prefix="jwksd/private-keys", publish_secret_id=None,
        verify_urls=(), rotate_every_s=2592000, publish_ahead_s=1500, retire_grace_s=172800,
        max_token_lifetime_s=3600, deletion_window_days=30, key_spec="RSA_2048", alg="RS256", region=None,
        dynamodb_endpoint_url=None, kms_endpoint_url=None, secretsmanager_endpoint_url=None,
        connect_timeout_s=5.0, read_timeout_s=10.0)


ENV_VALUES = {
    "JWKSD_LISTEN": ("127.0.0.1:9000", lambda c: c.server.listen == Listen("127.0.0.1", 9000)),
    "JWKSD_METRICS_LISTEN": ("off", lambda c: c.server.metrics_listen is None),
    "JWKSD_PATHS": ("/a,/b", lambda c: c.server.paths == ("/.well-known/jwks.json", "/a", "/b")),
    "JWKSD_EVENT_LOOP": ("asyncio", lambda c: c.server.event_loop == "asyncio"),
    "JWKSD_WRITE_TIMEOUT_S": ("2.5", lambda c: c.server.write_timeout_s == 2.5),
    "JWKSD_MAX_CONNECTIONS": ("64", lambda c: c.server.max_connections == 64),
    "JWKSD_SOURCE_KIND": ("file", lambda c: isinstance(c.sources[0], FileSourceConfig)),
    "JWKSD_SECRET_ID": ("other", lambda c: c.sources[0].secret_id == "other"),
    "JWKSD_SOURCE_FILE": ("/x.json", lambda c: c.sources[0].path == Path("/x.json")),
    "JWKSD_SOURCE_URL": ("https://idp.example/j", lambda c: c.sources[0].url == "https://idp.example/j"),
    "JWKSD_SOURCE_TABLE": ("keys", lambda c: c.sources[0].table == "keys"),
    "JWKSD_REFRESH_INTERVAL_S": ("30", lambda c: c.refresh.interval_s == 30.0),
    "JWKSD_MAX_AGE_S": ("900", lambda c: c.refresh.max_age_s == 900.0),
    "JWKSD_STARTUP_GRACE_S": ("2.5", lambda c: c.refresh.startup_grace_s == 2.5),
    "JWKSD_DEGRADED_MAX_AGE_S": ("15", lambda c: c.http_cache.degraded_max_age_s == 15),
    "JWKSD_STATE_DIR": ("/var/x", lambda c: c.state.state_dir == Path("/var/x")),
    "JWKSD_FALLBACK_FILE": ("/f.json", lambda c: c.state.fallback_file == Path("/f.json")),
    "JWKSD_SHARED_CACHE_URL": ("redis://127.0.0.1:6379/0", lambda c: c.shared_cache.url == "redis://127.0.0.1:6379/0"),
    "JWKSD_SHARED_CACHE_HMAC_KEY_FILE": ("/etc/jwksd/shared-cache.key",
                                         lambda c: c.shared_cache.hmac_key_file == Path("/etc/jwksd/shared-cache.key")),
    "JWKSD_LOG_LEVEL": ("debug", lambda c: c.log.level == "debug"),
    "JWKSD_LOG_FORMAT": ("json", lambda c: c.log.format == "json"),
    "JWKSD_OIDC_ISSUER": ("https://idp.example/a", lambda c: c.oidc.issuer == "https://idp.example/a"),
    "JWKSD_TLS_CERT_FILE": ("/tls.crt", lambda c: c.server.tls_cert_file == Path("/tls.crt")),
    "JWKSD_TLS_KEY_FILE": ("/tls.key", lambda c: c.server.tls_key_file == Path("/tls.key")),
}
BASE = {"JWKSD_SOURCE_KIND": {"JWKSD_SOURCE_FILE": "/k.json"}, "JWKSD_SOURCE_FILE": {"JWKSD_SOURCE_KIND": "file"},
        "JWKSD_SOURCE_URL": {"JWKSD_SOURCE_KIND": "http"}, "JWKSD_SOURCE_TABLE": {"JWKSD_SOURCE_KIND": "dynamodb"},
        # TLS needs both files: each variable is tested with the other one set.
        "JWKSD_TLS_CERT_FILE": {"JWKSD_SECRET_ID": "s", "JWKSD_TLS_KEY_FILE": "/other.key"},
        "JWKSD_TLS_KEY_FILE": {"JWKSD_SECRET_ID": "s", "JWKSD_TLS_CERT_FILE": "/other.crt"}}


@pytest.mark.parametrize("variable", sorted(env_keys()))
def test_each_environment_variable_overrides_its_key(variable: str) -> None:
    """Every declared JWKSD_* variable sets the key it is declared on."""
    assert set(ENV_VALUES) == set(env_keys())
    value, check = ENV_VALUES[variable]
    config = load_config(None, {**BASE.get(variable, {"JWKSD_SECRET_ID": "s"}), variable: value})
    assert check(config), variable


def test_restart_required_names_each_start_only_setting() -> None:
    """Listeners, log format and the shared cache need a restart; sources, refresh, rotation and log level do not."""
    old = Config(sources=(SecretsManagerSourceConfig(secret_id="s"),))
    new = replace(old, sources=(FileSourceConfig(path=Path("/k")),), refresh=RefreshConfig(interval_s=30.0),
                  server=replace(old.server, listen=Listen("127.0.0.1", 9), max_headers=64),
                  log=LogConfig(level="debug", format="json"), shared_cache=SharedCacheConfig(lease_s=1.0),
                  rotation=RotationConfig())
    assert restart_required(old, new) == ["server.listen", "server.max_headers", "shared_cache.lease_s",
                                          "log.format"]
    kept = keep_restart_only(old, new)
    assert (kept.server, kept.shared_cache, kept.log) == (old.server, old.shared_cache, LogConfig(level="debug"))
    assert (kept.sources, kept.refresh, kept.rotation) == (new.sources, new.refresh, RotationConfig())
    assert restart_required(old, old) == [] and keep_restart_only(old, old) == old
    with_oidc = load_config(None, {"JWKSD_SECRET_ID": "s", "JWKSD_OIDC_ISSUER": "https://idp.example/a"})
    other = load_config(None, {"JWKSD_SECRET_ID": "s", "JWKSD_OIDC_ISSUER": "https://idp.example/b"})
    assert restart_required(with_oidc, other) == ["server.paths", "oidc.issuer", "oidc.jwks_uri"]  # both derived
    assert restart_required(old, with_oidc) == ["server.paths", "oidc"]  # the issuer's JWKS path is served too
    assert keep_restart_only(with_oidc, other).oidc == with_oidc.oidc


def test_every_server_and_shared_cache_setting_is_restart_only() -> None:
    """The listeners, routes and the Redis client are built once at start: every one of their settings says so."""
    # So does the start-up grace: it only acts while the first fetch runs, and a reload waits for that fetch.
    for setting in all_settings():
        expected = setting.section in ("server", "shared_cache", "oidc") or setting.key in (
            "log.format", "refresh.startup_grace_s")
        assert setting.restart == expected, setting.key
    assert set(SOURCE_CLASSES) == {"secretsmanager", "file", "http", "dynamodb"}


def test_configuration_doc_table_is_rendered_from_the_declarations() -> None:
    """docs/configuration.md holds exactly the table `python -m jwksd.config.reference` prints."""
    text = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END) + 1
    assert text[start:end] == render_table(), "run: python -m jwksd.config.reference, and paste it over the table"
