"""One preflight: check-config, a real `jwksd serve` and a SIGHUP reload give a config the same verdict and message."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jwksd.__main__ import main
from jwksd.config import load_config
from jwksd.errors import ConfigError
from jwksd.http.tls import MAX_PEM_FILE_BYTES
from jwksd.preflight import preflight
from tests.conftest import Secrets
from tests.daemon_process import DUMMY_AWS, SERVE, Daemon, base_env, sm_sections, toml_config, wait_until
from tests.keys import jwk_set, rsa_jwk, rsa_key

# Each case: what to add to a good config (given a scratch directory), then the problem every path must name.
Case = Callable[[Path], dict[str, dict[str, Any]]]


def fallback(content: str | None, *, directory: bool = False) -> Case:
    def make(work: Path) -> dict[str, dict[str, Any]]:
        path = work / "fallback.json"
        if directory:
            path.mkdir()
        elif content is not None:
            path.write_text(content)
        return {"state": {"fallback_file": str(path)}}
    return make


def shared_cache(key: bytes | None, *, directory: bool = False, fifo: bool = False) -> Case:
    def make(work: Path) -> dict[str, dict[str, Any]]:
        path = work / "hmac.key"
        if directory:
            path.mkdir()
        elif fifo:
            os.mkfifo(path)  # no writer: a blocking open or read would hang until the test's timeout
        elif key is not None:
            path.write_bytes(key)
        return {"shared_cache": {"url": "redis://127.0.0.1:9/0", "hmac_key_file": str(path)}}
    return make


def state_dir(kind: str) -> Case:
    def make(work: Path) -> dict[str, dict[str, Any]]:
        path = work / "state"
        if kind == "file":
            path.write_text("")
        return {"state": {"state_dir": str(path)}}
    return make


def tls_pair(work: Path) -> dict[str, dict[str, Any]]:
    return {"server": {"tls_cert_file": str(work / "tls.crt"), "tls_key_file": str(work / "tls.key")}}


def tls_cert(kind: str) -> Case:
    """A 0600 key file and, as the certificate, a FIFO or a file one byte over the PEM cap."""
    def make(work: Path) -> dict[str, dict[str, Any]]:
        (work / "tls.key").write_bytes(b"not read: the certificate fails first")
        (work / "tls.key").chmod(0o600)
        if kind == "fifo":
            os.mkfifo(work / "tls.crt")
        else:
            (work / "tls.crt").write_bytes(b"-" * (MAX_PEM_FILE_BYTES + 1))
        return tls_pair(work)
    return make


BAD = {
    "fallback without keys": (fallback('{"keys": []}'),
                              "fallback_file '{w}/fallback.json' is not a valid key set (no_keys: the document "
                              "lists no keys; expected 1 to 100)"),
    "fallback not JSON": (fallback("not json"),
                          "fallback_file '{w}/fallback.json' is not a valid key set (invalid_json: Expecting value "
                          "at line 1 column 1)"),
    "fallback missing": (fallback(None),
                         "fallback_file '{w}/fallback.json' cannot be read: No such file or directory"),
    "fallback a directory": (fallback(None, directory=True), "fallback_file '{w}/fallback.json' is not a regular file"),
    "hmac key missing": (shared_cache(None),
                         "shared_cache.hmac_key_file = '{w}/hmac.key': cannot be read (No such file or directory)"),
    "hmac key short": (shared_cache(b"short\n"),
                       "shared_cache.hmac_key_file = '{w}/hmac.key': expected at least 32 bytes of key, found 5"),
    "hmac key a directory": (shared_cache(None, directory=True),
                             "shared_cache.hmac_key_file = '{w}/hmac.key': expected a regular file"),
    "hmac key a FIFO": (shared_cache(None, fifo=True),
                        "shared_cache.hmac_key_file = '{w}/hmac.key': expected a regular file"),
    "hmac key too large": (shared_cache(b"k" * 4097),
                           "shared_cache.hmac_key_file = '{w}/hmac.key': expected a key file of at most 4096 bytes "
                           "(it has 4097 bytes; at most 4096 are read)"),
    "shared cache without hmac key or opt-out": (lambda work: {"shared_cache": {"url": "redis://127.0.0.1:9/0"}},
                                                 "shared_cache.hmac_key_file = None: expected the path of a key file "
                                                 "(32 bytes or more, the same on every replica), or "
                                                 "shared_cache.allow_unauthenticated = true to let whoever can write "
                                                 "to Redis choose the keys every replica serves"),
    "state_dir missing": (state_dir("missing"),
                          "state.state_dir = '{w}/state': expected a directory, but it does not exist"),
    "state_dir a file": (state_dir("file"),
                         "state.state_dir = '{w}/state': expected a directory, but it is not a directory"),
    "TLS pair missing": (tls_pair, "server.tls_cert_file '{w}/tls.crt' and server.tls_key_file '{w}/tls.key': "
                                   "cannot be read (No such file or directory)"),
    "TLS cert a FIFO": (tls_cert("fifo"), "server.tls_cert_file '{w}/tls.crt' and server.tls_key_file '{w}/tls.key': "
                                          "cannot be read (it is a FIFO; expected a regular file (or a symlink to "
                                          "one))"),
    "TLS cert too large": (tls_cert("large"), "server.tls_cert_file '{w}/tls.crt' and server.tls_key_file "
                                              "'{w}/tls.key': cannot be read (it has 1048577 bytes; at most 1048576 "
                                              "are read)"),
}


@dataclass
class Running:
    """One daemon serving a good config, reloaded with each case's config in turn."""

    daemon: Daemon
    sections: dict[str, dict[str, Any]]
    config_path: Path

    def reload(self, extra: dict[str, dict[str, Any]]) -> tuple[str, list[str]]:
        """Write the good config plus ``extra``, SIGHUP; the verdict and the problems (or warnings) logged."""
        self.config_path.write_text(toml_config(merge(self.sections, extra)))
        before = {name: len(self.daemon.events(name)) for name in ("reload_rejected", "reload_applied",
                                                                   "preflight_warning")}
        self.daemon.signal(signal.SIGHUP)
        wait_until(lambda: any(len(self.daemon.events(name)) > before[name]
                               for name in ("reload_rejected", "reload_applied")), "the reload's verdict")
        rejected = self.daemon.events("reload_rejected")[before["reload_rejected"]:]
        if rejected:
            return "refused", rejected[0]["problems"]
        return "ok", [e["problem"] for e in self.daemon.events("preflight_warning")[before["preflight_warning"]:]]


def merge(sections: dict[str, dict[str, Any]], extra: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The tables of ``sections`` with ``extra``'s keys laid over them."""
    return {name: {**sections.get(name, {}), **extra.get(name, {})} for name in {*sections, *extra}}


@pytest.fixture(scope="module")
def running(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A daemon on a good config with one key, for the reload third of each case."""
    secret = Secrets(moto_endpoint).create(jwk_set(rsa_jwk(rsa_key(0), "k1")))
    work = tmp_path_factory.mktemp("running")
    with Daemon.from_toml(work, sm_sections(secret), endpoint=moto_endpoint) as daemon:
        config_path = work / "jwksd.toml"
        yield Running(daemon, tomllib.loads(config_path.read_text()), config_path)


def problems_of(stderr: str) -> list[str]:
    return [line[4:] for line in stderr.splitlines() if line.startswith("  - ")]


def verdicts(work: Path, running: Running, extra: dict[str, dict[str, Any]], capsys: pytest.CaptureFixture[str],
             endpoint: str) -> dict[str, tuple[str, list[str]]]:
    """check-config, serve and reload on the good config plus ``extra``: each one's verdict and problems."""
    path = work / "jwksd.toml"
    path.write_text(toml_config(merge(running.sections, extra)))
    capsys.readouterr()
    code = main(["check-config", "--config", str(path)])
    check = ("ok" if code == 0 else "refused", problems_of(capsys.readouterr().err))
    env = {**base_env(), **DUMMY_AWS, "AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoint, "JWKSD_LOG_FORMAT": "json"}
    result = subprocess.run([*SERVE, "--config", str(path)], env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    serve = ("refused" if result.returncode == 2 else f"exit {result.returncode}", problems_of(result.stderr))
    return {"check-config": check, "serve": serve, "reload": running.reload(extra)}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_config_refused_alike(name: str, running: Running, tmp_path: Path, moto_endpoint: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """check-config exits 2, serve exits 2 and the reload is rejected, each naming the same one problem."""
    make, message = BAD[name]
    extra = make(tmp_path)
    expected = ("refused", [message.format(w=tmp_path)])
    assert verdicts(tmp_path, running, extra, capsys, moto_endpoint) == {
        "check-config": expected, "serve": expected, "reload": expected}
    with pytest.raises(ConfigError) as info:
        preflight(load_config(tmp_path / "jwksd.toml", {}))
    assert info.value.problems == expected[1]
    assert running.daemon.kids() == {"k1"}  # the running config and the served set stay


def test_problems_reported_together(tmp_path: Path) -> None:
    """Every preflight problem of one config is raised at once, in a fixed order."""
    extra = {**fallback("not json")(tmp_path), **shared_cache(None)(tmp_path)}
    path = tmp_path / "jwksd.toml"
    path.write_text(toml_config({"source": {"secret_id": "s"}, **extra}))
    with pytest.raises(ConfigError) as info:
        preflight(load_config(path, {}))
    assert [p.split(" ")[0] for p in info.value.problems] == ["fallback_file", "shared_cache.hmac_key_file"]


def test_unwritable_state_dir_is_a_warning_everywhere(running: Running, tmp_path: Path, moto_endpoint: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A state_dir the daemon cannot write only warns: check-config exits 0, serve starts, the reload applies."""
    extra = {"state": {"state_dir": "/sys"}}  # a directory even root cannot create files in
    path = tmp_path / "jwksd.toml"
    path.write_text(toml_config(merge(running.sections, extra)))
    warnings = preflight(load_config(path, {}))
    assert len(warnings) == 1 and warnings[0].startswith("state.state_dir = '/sys': not writable (")
    capsys.readouterr()
    assert main(["check-config", "--config", str(path)]) == 0
    assert f"jwksd: warning: {warnings[0]}" in capsys.readouterr().err
    own = tmp_path / "own"
    own.mkdir()
    sections = {name: table for name, table in merge(running.sections, extra).items() if name != "server"}
    with Daemon.from_toml(own, sections, endpoint=moto_endpoint) as daemon:  # its own free ports
        assert daemon.wait_event("preflight_warning")["problem"] == warnings[0]
    assert running.reload(extra) == ("ok", warnings)
    running.reload({})  # back to the good config for the other tests


def test_source_that_cannot_open_refused_alike(tmp_path: Path) -> None:
    """No AWS region: check-config opens the sources as serve does, and both exit 2 with the same line."""
    path = tmp_path / "jwksd.toml"
    path.write_text(toml_config({"source": {"secret_id": "s"}, "server": {"metrics_listen": "off"}}))
    env = {name: value for name, value in {**base_env(), **DUMMY_AWS}.items()
           if name not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    line = "jwksd: cannot start: NoRegion: no AWS region: set source.region, AWS_REGION or use a secret ARN"
    for command in ("check-config", "serve"):
        result = subprocess.run([*SERVE[:-1], command, "--config", str(path)], env=env, capture_output=True,
                                text=True, timeout=60, check=False)
        assert (command, result.returncode, result.stderr.splitlines()[-1]) == (command, 2, line)


def test_connection_cap_over_the_file_limit_refused_alike(tmp_path: Path) -> None:
    """Under 128 descriptors, max_connections = 1000 makes check-config and serve exit 2 with the same complaint."""
    path = tmp_path / "jwksd.toml"
    path.write_text(toml_config({**sm_sections("unused"), "server": {"listen": "127.0.0.1:0",
                                                                     "max_connections": 1000}}))
    complaint = re.compile(r"jwksd: cannot start: invalid configuration:\n  - server\.max_connections = 1000: the "
                           r"open-file limit \(RLIMIT_NOFILE\) is 128: \d+ are open at start, .* which leaves \d+; "
                           r"raise LimitNOFILE or `ulimit -n`, or lower server\.max_connections\n")
    for command in ("check-config", "serve"):
        result = subprocess.run(["prlimit", "--nofile=128:128", "--", *SERVE[:-1], command, "--config", str(path)],
                                env={**base_env(), **DUMMY_AWS}, capture_output=True, text=True, timeout=60,
                                check=False)
        assert result.returncode == 2 and complaint.search(result.stderr), (command, result.stderr)


def test_fifo_hmac_key_refused_by_check_config_process(tmp_path: Path) -> None:
    """A real `jwksd check-config` process refuses a FIFO as hmac_key_file at once instead of blocking on it."""
    path = tmp_path / "jwksd.toml"
    path.write_text(toml_config({**sm_sections("unused"), **shared_cache(None, fifo=True)(tmp_path)}))
    result = subprocess.run([*SERVE[:-1], "check-config", "--config", str(path)], env={**base_env(), **DUMMY_AWS},
                            capture_output=True, text=True, timeout=60, check=False)  # a hang fails here, bounded
    assert (result.returncode, problems_of(result.stderr)) == (
        2, [f"shared_cache.hmac_key_file = '{tmp_path}/hmac.key': expected a regular file"])
