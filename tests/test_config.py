"""Configuration: the file, the environment over it, and errors that name key, value and expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from jwksd.config import (
    FileSourceConfig,
    HttpSourceConfig,
    Listen,
    SecretsManagerSourceConfig,
    SharedCacheConfig,
    load_config,
    load_validation_config,
)
from jwksd.errors import ConfigError
from tests.config_helpers import problems

EXAMPLE = Path(__file__).parent.parent / "config" / "jwksd.example.toml"


def test_example_config_loads() -> None:
    """The documented example is a valid config and shows the defaults."""
    config = load_config(EXAMPLE, {})
    source = config.sources[0]
    assert isinstance(source, SecretsManagerSourceConfig)
    assert source.version_stages == ("AWSCURRENT", "AWSPREVIOUS")
    assert config.server.listen == Listen("127.0.0.1", 8080)
    assert config.server.paths == ("/.well-known/jwks.json", "/api/.well-known/jwks.json")
    assert config.refresh.interval_s == 300 and config.refresh.max_age_s == 600


def test_environment_only_sidecar() -> None:
    """With no file, the JWKSD_* and AWS endpoint variables are enough."""
    config = load_config(None, {
        "JWKSD_SECRET_ID": "jwt/keys", "JWKSD_LISTEN": "127.0.0.1:9000", "JWKSD_METRICS_LISTEN": "off",
        "JWKSD_REFRESH_INTERVAL_S": "30", "JWKSD_STATE_DIR": "/tmp/s", "JWKSD_FALLBACK_FILE": "/tmp/f.json",
        "JWKSD_LOG_LEVEL": "DEBUG", "JWKSD_LOG_FORMAT": "json", "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
        "AWS_REGION": "eu-west-1",
    })
    source = config.sources[0]
    assert isinstance(source, SecretsManagerSourceConfig)
    assert (source.secret_id, source.endpoint_url, source.region) == ("jwt/keys", "http://127.0.0.1:1", "eu-west-1")
    assert config.server.listen == Listen("127.0.0.1", 9000)
    assert config.server.metrics_listen is None
    assert config.refresh.interval_s == 30
    assert config.state.state_dir == Path("/tmp/s")
    assert (config.log.level, config.log.format) == ("debug", "json")


def test_environment_wins_over_file(tmp_path: Path) -> None:
    """An environment variable overrides the same key in the file."""
    path = tmp_path / "c.toml"
    path.write_text('[source]\nsecret_id = "from-file"\n[refresh]\ninterval_s = 100\nmax_age_s = 1000\n')
    config = load_config(path, {"JWKSD_SECRET_ID": "from-env", "JWKSD_REFRESH_INTERVAL_S": "50"})
    assert config.sources[0].secret_id == "from-env"  # type: ignore[union-attr]
    assert config.refresh.interval_s == 50


def test_service_specific_endpoint_wins() -> None:
    """AWS_ENDPOINT_URL_SECRETS_MANAGER is preferred over AWS_ENDPOINT_URL."""
    config = load_config(None, {"JWKSD_SECRET_ID": "s", "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
                                "AWS_ENDPOINT_URL_SECRETS_MANAGER": "http://127.0.0.1:2"})
    assert config.sources[0].endpoint_url == "http://127.0.0.1:2"  # type: ignore[union-attr]


def test_config_path_from_environment(tmp_path: Path) -> None:
    """JWKSD_CONFIG names the file when no path is given."""
    path = tmp_path / "c.toml"
    path.write_text('[source]\nsecret_id = "s"\n')
    assert load_config(None, {"JWKSD_CONFIG": str(path)}).path == path


def test_every_problem_reported_at_once(tmp_path: Path) -> None:
    """Each bad value is named with its key, its value and what was expected, all in one error."""
    found = problems(
        '[source]\nsecret_id = "s"\nmax_retries = -1\n'
        '[refresh]\ninterval_s = "soon"\njitter = 2\n'
        '[server]\nlisten = "localhost"\n'
        '[log]\nlevel = "loud"\n', tmp_path)
    assert found == [
        "source.max_retries = -1: expected a whole number >= 0 and <= 10",
        "server.listen = 'localhost': expected host:port with a port from 0 to 65535",
        "refresh.interval_s = 'soon': expected a number > 0",
        "refresh.jitter = 2: expected a number >= 0 and <= 0.5",
        "log.level = 'loud': expected debug or info or warning or error",
    ]


def test_missing_secret_id(tmp_path: Path) -> None:
    """A Secrets Manager source without a secret id is refused by name."""
    assert problems("[source]\n", tmp_path) == [
        "source.secret_id = None: expected the name or ARN of a secret (JWKSD_SECRET_ID)"]


def test_unknown_keys_and_sections(tmp_path: Path) -> None:
    """A typo is an error, not a silently ignored key."""
    assert problems('[source]\nsecret_id = "s"\nsecretid = "t"\n[refrsh]\n', tmp_path) == [
        "refrsh: unknown section", "source.secretid: unknown key"]


def test_bad_toml(tmp_path: Path) -> None:
    """A file that is not TOML is named as such."""
    found = problems("[source\n", tmp_path)
    assert len(found) == 1 and "not valid TOML" in found[0]


def test_unreadable_file(tmp_path: Path) -> None:
    """A missing config file is an error naming the path."""
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.toml", {})
    assert info.value.problems[0].startswith(f"config file {str(tmp_path / 'missing.toml')!r}: cannot be read")


def test_max_age_below_interval(tmp_path: Path) -> None:
    """max_age_s shorter than interval_s would make every response stale: refused."""
    found = problems('[source]\nsecret_id = "s"\n[refresh]\ninterval_s = 300\nmax_age_s = 100\n', tmp_path)
    assert found == ["refresh.max_age_s = 100: expected at least refresh.interval_s (300), "
                     "or every response would count as stale"]


def test_stages_must_include_current(tmp_path: Path) -> None:
    """version_stages without AWSCURRENT is refused."""
    found = problems('[source]\nsecret_id = "s"\nversion_stages = ["AWSPREVIOUS"]\n', tmp_path)
    assert found == ["source.version_stages = ['AWSPREVIOUS']: expected a list that includes AWSCURRENT"]


def test_file_source(tmp_path: Path) -> None:
    """kind = "file" reads a local document path."""
    config = load_config(None, {"JWKSD_SOURCE_KIND": "file", "JWKSD_SOURCE_FILE": "/etc/keys.json"})
    assert config.sources == (FileSourceConfig(path=Path("/etc/keys.json"), name="file"),)


def test_several_sources(tmp_path: Path) -> None:
    """[[sources]] lists sources in priority order; names must be unique."""
    path = tmp_path / "c.toml"
    path.write_text('[[sources]]\nsecret_id = "a"\nname = "a"\n[[sources]]\nkind = "file"\npath = "/k"\nname = "a"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert info.value.problems == ["sources: name 'a' is used twice: expected each source to have its own name"]


def test_validation_section_only(tmp_path: Path) -> None:
    """`jwksd validate --config` reads only [validation]."""
    path = tmp_path / "c.toml"
    path.write_text("[validation]\nrequire_thumbprint_kid = true\nmax_keys = 5\n")
    validation = load_validation_config(path)
    assert (validation.require_thumbprint_kid, validation.max_keys) == (True, 5)


def test_http_source_requires_https(tmp_path: Path) -> None:
    """Plain http is refused, even for loopback, unless allow_insecure_loopback is set; never for other hosts."""
    assert problems('[source]\nkind = "http"\nurl = "http://127.0.0.1:9/jwks.json"\n', tmp_path) == [
        "source.url = 'http://127.0.0.1:9/jwks.json': expected an https:// URL (plain http only with "
        "allow_insecure_loopback = true and a loopback host)"]
    assert problems('[source]\nkind = "http"\nurl = "http://10.0.0.1/jwks.json"\nallow_insecure_loopback = true\n',
                    tmp_path)[0].startswith("source.url = 'http://10.0.0.1/jwks.json': expected an https:// URL")
    config = load_config(None, {"JWKSD_SOURCE_KIND": "http", "JWKSD_SOURCE_URL": "https://idp.example/jwks"})
    assert config.sources == (HttpSourceConfig(url="https://idp.example/jwks"),)


def test_http_source_refresh_bounds(tmp_path: Path) -> None:
    """min_refresh_s above max_refresh_s is refused by name."""
    found = problems('[source]\nkind = "http"\nurl = "https://idp.example/j"\nmin_refresh_s = 600\n'
                     'max_refresh_s = 60\n', tmp_path)
    assert found == ["source.max_refresh_s = 60: expected at least min_refresh_s (600)"]


def test_shared_cache_section(tmp_path: Path) -> None:
    """[shared_cache] is off by default, on with a redis:// URL; JWKSD_SHARED_CACHE_URL overrides it."""
    assert not load_config(None, {"JWKSD_SECRET_ID": "s"}).shared_cache.enabled
    config = load_config(None, {"JWKSD_SECRET_ID": "s", "JWKSD_SHARED_CACHE_URL": "redis://:pw@10.0.0.5:6380/2"})
    assert config.shared_cache == SharedCacheConfig(url="redis://:pw@10.0.0.5:6380/2")
    assert config.shared_cache.safe_url == "redis://***@10.0.0.5:6380/2"


def test_shared_cache_problems(tmp_path: Path) -> None:
    """A bad URL is named without its password; a lease as long as the interval is refused."""
    found = problems('[source]\nsecret_id = "s"\n[refresh]\ninterval_s = 10\n[shared_cache]\n'
                     'url = "http://user:secret@cache:6379/0"\nlease_s = 10\nttl = 3\n', tmp_path)
    assert found == [
        "shared_cache.url = 'http://***@cache:6379/0': expected redis://host:port/db (or rediss:// for TLS), "
        "or empty for off",
        "shared_cache.ttl: unknown key",
    ]
    found = problems('[source]\nsecret_id = "s"\n[refresh]\ninterval_s = 10\n[shared_cache]\n'
                     'url = "redis://cache:6379/0"\nlease_s = 10\n', tmp_path)
    assert found == ["shared_cache.lease_s = 10: expected less than refresh.interval_s (10)"]


def test_section_given_as_url(tmp_path: Path) -> None:
    """A section written as a URL string instead of a table is named without the URL's password."""
    assert problems('source = "https://user:secret@idp/jwks"\nshared_cache = "redis://:pw@cache:6379/0"\n',
                    tmp_path) == [
        "source = 'https://***@idp/jwks': expected a table",
        "shared_cache = 'redis://***@cache:6379/0': expected a table",
    ]


def test_event_loop_setting(tmp_path: Path) -> None:
    """server.event_loop takes auto, uvloop or asyncio (also JWKSD_EVENT_LOOP); anything else is named."""
    base = {"JWKSD_SECRET_ID": "s", "AWS_REGION": "us-east-1"}
    assert load_config(None, base).server.event_loop == "auto"
    assert load_config(None, {**base, "JWKSD_EVENT_LOOP": "asyncio"}).server.event_loop == "asyncio"
    assert problems('[server]\nevent_loop = "tokio"\n[source]\nsecret_id = "s"\n', tmp_path) == [
        "server.event_loop = 'tokio': expected auto or uvloop or asyncio"]
