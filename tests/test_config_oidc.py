"""The [oidc] table: the issuer's rules, the paths it adds, and errors naming what was wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from jwksd.config import load_config
from jwksd.redact import shown
from tests.config_helpers import problems as config_problems

SOURCE = '[source]\nsecret_id = "s"\n'
HTTPS = ("an https:// URL with a host, optionally a path, no query, fragment or user name")


def problems(text: str, tmp_path: Path, environ: dict[str, str] | None = None) -> list[str]:
    """The problems of ``text`` after a valid [source]."""
    return config_problems(SOURCE + text, tmp_path, environ)


def test_issuer_with_path_adds_its_jwks_path(tmp_path: Path) -> None:
    """An issuer with a path serves discovery and the default jwks_uri under that path, besides the usual path."""
    path = tmp_path / "jwksd.toml"
    path.write_text(SOURCE + '[oidc]\nissuer = "https://auth.example.com/tenants/a"\n')
    oidc = load_config(path, {}).oidc
    assert oidc is not None
    assert oidc.discovery_path == "/tenants/a/.well-known/openid-configuration"
    assert oidc.jwks_uri == "https://auth.example.com/tenants/a/.well-known/jwks.json"
    assert oidc.jwks_path == "/tenants/a/.well-known/jwks.json"
    assert load_config(path, {}).server.paths == ("/.well-known/jwks.json", "/tenants/a/.well-known/jwks.json")


def test_issuer_from_environment_and_trailing_slash() -> None:
    """JWKSD_OIDC_ISSUER sets the issuer; a terminating slash is kept in the issuer but not in the paths."""
    config = load_config(None, {"JWKSD_SECRET_ID": "s", "JWKSD_OIDC_ISSUER": "https://auth.example.com/"})
    assert config.oidc is not None
    assert config.oidc.issuer == "https://auth.example.com/"
    assert config.oidc.discovery_path == "/.well-known/openid-configuration"
    assert config.oidc.jwks_uri == "https://auth.example.com/.well-known/jwks.json"
    assert config.server.paths == ("/.well-known/jwks.json",)


def test_configured_jwks_uri_adds_no_path(tmp_path: Path) -> None:
    """A configured jwks_uri (a CDN, say) is published as is, and jwksd serves no extra JWKS path for it."""
    path = tmp_path / "jwksd.toml"
    path.write_text(SOURCE + '[oidc]\nissuer = "https://auth.example.com/x"\n'
                             'jwks_uri = "https://cdn.example.com/keys.json"\n'
                             '[oidc.extra]\nclaims_supported = ["sub", "aud"]\n')
    config = load_config(path, {})
    assert config.oidc is not None
    assert config.oidc.jwks_uri == "https://cdn.example.com/keys.json" and config.oidc.jwks_path is None
    assert config.oidc.extra == (("claims_supported", ["sub", "aud"]),)
    assert config.server.paths == ("/.well-known/jwks.json",)


@pytest.mark.parametrize("issuer", [
    "http://auth.example.com", "https://auth.example.com/a?x=1", "https://auth.example.com/a#f",
    "https://user@auth.example.com", "https:///path", "auth.example.com", "https://auth.example.com/{id}",
    "https://auth.example.com/a%20b", "https://auth.example.com:99999",
])
def test_bad_issuer(tmp_path: Path, issuer: str) -> None:
    """Plain http, a query, a fragment, a user name, no host, or a path jwksd cannot serve literally is refused."""
    found = problems(f'[oidc]\nissuer = "{issuer}"\n', tmp_path)
    assert len(found) == 1
    assert found[0].startswith(f"oidc.issuer = {shown(issuer)!r}: expected {HTTPS}")  # no user info, query


def test_plain_http_issuer_names_the_way_out(tmp_path: Path) -> None:
    """The error for an http:// issuer says why and what provides https."""
    assert problems('[oidc]\nissuer = "http://auth.example.com"\n', tmp_path) == [
        f"oidc.issuer = 'http://auth.example.com': expected {HTTPS} (OpenID Connect Discovery 1.0 and RFC 8414 "
        "require https; a TLS terminator in front of jwksd, or server.tls_cert_file, provides it)"]


def test_discovery_path_colliding_with_a_jwks_path(tmp_path: Path) -> None:
    """An issuer whose discovery path is already one of server.paths is a config error naming both."""
    found = problems('[server]\npaths = ["/t/.well-known/openid-configuration"]\n'
                     '[oidc]\nissuer = "https://auth.example.com/t"\n', tmp_path)
    assert found == ["oidc.issuer = 'https://auth.example.com/t': the discovery document path "
                     "'/t/.well-known/openid-configuration' collides with another route "
                     "(server.paths, /health, /healthz, /readyz, /metrics)"]


def test_extra_members_checked(tmp_path: Path) -> None:
    """Extra members may not replace jwksd's own members and must be JSON values."""
    found = problems('[oidc]\nissuer = "https://a.example.com"\nbogus = 1\n'
                     '[oidc.extra]\njwks_uri = "https://x.example.com/k"\nwhen = 1979-05-27\n', tmp_path)
    assert found == [
        "oidc.bogus: unknown key",
        "oidc.extra.jwks_uri: jwksd writes this member itself; remove it from oidc.extra",
        "oidc.extra.when = datetime.date(1979, 5, 27): expected a JSON value (string, number, boolean, array or "
        "table)",
    ]


def test_oidc_members_without_issuer(tmp_path: Path) -> None:
    """jwks_uri or extra members without an issuer are a mistake, not silently ignored."""
    assert problems('[oidc]\njwks_uri = "https://cdn.example.com/k"\n', tmp_path) == [
        "oidc.jwks_uri: set without oidc.issuer (JWKSD_OIDC_ISSUER)"]


def test_bad_jwks_uri(tmp_path: Path) -> None:
    """A jwks_uri that is not https is refused with the same rule as the issuer."""
    found = problems('[oidc]\nissuer = "https://a.example.com"\njwks_uri = "ftp://a.example.com/k"\n', tmp_path)
    assert found == [f"oidc.jwks_uri = 'ftp://a.example.com/k': expected {HTTPS}"]


def test_check_config_names_the_issuer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """check-config prints the issuer, where the document is served and the jwks_uri it publishes."""
    from jwksd.__main__ import main

    path = tmp_path / "jwksd.toml"
    path.write_text(SOURCE + '[oidc]\nissuer = "https://auth.example.com/t"\n')
    assert main(["check-config", "--config", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "oidc ok: issuer https://auth.example.com/t, discovery at /t/.well-known/openid-configuration, "
        "jwks_uri https://auth.example.com/t/.well-known/jwks.json")
