"""`jwksd signer` as a real process: tokens verified through a live `jwksd serve`, promote, revoke, restart,
socket permissions against another uid, and systemd socket activation."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest

from jwksd.config import RotationConfig
from jwksd.rotation.incident import promote_now
from jwksd.rotation.keyring import Keyring
from jwksd.rotation.rotate import iso
from jwksd.signer import audit
from tests.conftest import free_port
from tests.daemon_process import DUMMY_AWS, JWKS, Daemon, base_env, toml_config, wait_until
from tests.rotation_helpers import T0, keyring, rotation_config
from tests.signer_helpers import Load, P, SignerProcess, active_registry, request, rotation_table
from tests.test_verifiers import NodeJose, pyjwt_verify

KEYS = (sys.executable, "-m", "jwksd", "keys")
NOBODY = 65534
PYTHON = "/usr/bin/python3"  # a caller of another uid cannot read a python under /root
CONNECT = """
import socket, sys
sock = socket.socket(socket.AF_UNIX)
try:
    sock.connect(sys.argv[1])
except OSError as exc:
    print(exc.strerror)
    sys.exit(3)
sock.sendall(b"GET /readyz HTTP/1.1\\r\\nHost: signer\\r\\nConnection: close\\r\\n\\r\\n")
print(sock.recv(12).decode())
"""


@dataclass
class World:
    """A registry (v1 active, v2 published), a `jwksd serve` on it, and a rotator's keyring."""

    config: RotationConfig
    ring: Keyring
    endpoint: str

    async def kids(self) -> dict[str, str]:
        return {r.status: r.kid for r in await self.ring.registry.records()}

    def table(self) -> dict[str, Any]:
        return rotation_table(self.config, self.endpoint)

    def keys(self, workdir: Path, *argv: str, at: int) -> str:
        """`jwksd keys ...` as an operator runs it (a process of its own, at ``at``); its output."""
        config = workdir / "rotator.toml"
        config.write_text(toml_config({"rotation": {**self.table(), "publish_secret_id": self.secret_id}}))
        result = subprocess.run([*KEYS, *argv, "--config", str(config), "--now", iso(at), "--clock-override"],
                                env={**base_env(), **DUMMY_AWS}, capture_output=True, text=True, timeout=60,
                                check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout

    @property
    def secret_id(self) -> str:
        return f"{self.config.private_secret_prefix}/public"


@pytest.fixture
async def world(moto_endpoint: str) -> AsyncIterator[World]:
    config = rotation_config(moto_endpoint)
    async with keyring(config, publish=True) as ring:
        await active_registry(ring, f"{config.private_secret_prefix}/public")
        yield World(config, ring, moto_endpoint)


@pytest.fixture(scope="module")
def jose() -> Iterator[NodeJose]:
    node = NodeJose()
    yield node
    node.close()


def start(workdir: Path, world: World, **options: Any) -> SignerProcess:
    return SignerProcess.start(workdir, world.table(), **options)


def jwks_daemon(tmp_path: Path, world: World) -> Daemon:
    """`jwksd serve` on the registry (dynamodb source), refreshed every second."""
    workdir = tmp_path / "serve"
    workdir.mkdir()
    return Daemon.from_toml(workdir, {
        "source": {"kind": "dynamodb", "table": world.config.table, "endpoint_url": world.endpoint,
                   "kms_endpoint_url": world.endpoint, "read_timeout_s": 5.0},
        "refresh": {"interval_s": 1, "max_age_s": 1}, "log": {"level": "info"}})


def failures(url: str, tokens: list[dict[str, Any]], jose: NodeJose) -> list[str]:
    """Each token through PyJWT and Node jose against the served set at ``url``: what did not verify."""
    found = []
    for token in tokens:
        for name, verify in (("pyjwt", pyjwt_verify), ("jose", jose)):
            ok, why = verify(url, token["token"], "ES256")
            if not ok:
                found.append(f"{name} kid={token['kid']}: {why}")
    return found


async def test_tokens_verify_through_a_promotion_and_a_revoke(world: World, tmp_path: Path, jose: NodeJose) -> None:
    """Under continuous signing, a promote switches the kid with every token verifying; a revoked kid never signs."""
    before = await world.kids()
    with jwks_daemon(tmp_path, world) as daemon, start(tmp_path, world) as signer:
        url = daemon.url(JWKS)
        with Load(signer.socket_path, callers=2) as load:
            load.wait_for(lambda token: token["kid"] == before["active"], "a token of the active key")
            assert world.keys(tmp_path, "promote", at=T0 + 2 * P).startswith(f"activated v2 kid={before['pending']}")
            load.wait_for(lambda token: token["kid"] == before["pending"], "a token of the promoted key")
        tokens = load.tokens()
        assert {t["kid"] for t in tokens} == {before["active"], before["pending"]}
        assert [status for status, _ in load.answers if status != 200] == []
        assert failures(url, tokens[:: max(1, len(tokens) // 40)] + tokens[-5:], jose) == []

        revoked = (await world.kids())["active"]
        assert world.keys(tmp_path, "revoke", revoked, "--emergency", at=T0 + 2 * P + 60).startswith("emergency: v3")
        promoted = (await world.kids())["active"]
        wait_until(lambda: any(e["active"] == promoted for e in signer.events("registry_view")),
                   "the signer to read the revoke")
        fresh = [signer.sign({"sub": "after-revoke"}) for _ in range(10)]
        assert {t["kid"] for t in fresh} == {promoted} != {revoked}
        wait_until(lambda: revoked not in daemon.kids(), "the revoked kid to leave the served set")
        assert failures(url, fresh[-2:], jose) == []
        lines = signer.events("token_signed")
        assert signer.events("audit_uids_limited") == []  # no user namespace here: uids are the callers'
        signed = {kid: signer.metric("jwksd_signer_tokens_total", kid=kid, outcome="signed")
                  for kid in (before["active"], before["pending"], promoted)}
        assert signed == {kid: sum(line["kid"] == kid for line in lines) for kid in signed}
        assert signer.metric("jwksd_signer_aws_calls_total", operation="Sign", code="ok") == len(lines)
        assert signer.metric("jwksd_signer_sign_duration_seconds_count", backend="kms") == len(lines)
        assert signer.metric("jwksd_signer_ready") == 1
        assert len(lines) == len(tokens) + 10 and all(set(line) == {"kid", "sub", "jti", "exp", "uid", "gid", "pid",
                                                                    "event", "level", "timestamp"} for line in lines)


async def test_restart_under_load_never_signs_with_a_non_active_key(world: World, tmp_path: Path) -> None:
    """Stopped under load, the registry promoted meanwhile, started again: each run signs with its active key only."""
    kids = await world.kids()
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    socket_path = tmp_path / "signer.sock"
    with Load(socket_path, callers=3) as load:
        with SignerProcess.start(first, world.table(), signer={"socket": str(socket_path)}) as signer:
            load.wait_for(lambda token: True, "tokens from the first run")
        await promote_now(world.ring, T0 + 2 * P, emergency=False, max_age_s=600)  # while no signer runs
        with SignerProcess.start(second, world.table(), signer={"socket": str(socket_path)}) as restarted:
            load.wait_for(lambda token: token["kid"] == kids["pending"], "tokens from the second run")
            restarted.signal(signal.SIGHUP)  # nothing to reload: logged, and the signer signs on
            restarted.wait_event("reload_unsupported")
            load.wait_for(lambda token: True, "tokens after SIGHUP")
    assert {line["kid"] for line in signer.events("token_signed")} == {kids["active"]}
    assert {line["kid"] for line in restarted.events("token_signed")} == {kids["pending"]}
    statuses = {status for status, _ in load.answers}
    assert statuses <= {200, 503, 0}, statuses  # 503: not ready yet; 0: no socket while restarting
    assert len(load.tokens()) == len(signer.events("token_signed")) + len(restarted.events("token_signed"))


def shared_directory() -> Path:
    """A directory every user may enter (tmp_path's parents are root's alone), removed by the caller."""
    path = Path(tempfile.mkdtemp(prefix="jwksd-signer-"))
    path.chmod(0o755)
    return path


def as_user(socket_path: Path, uid: int, gid: int) -> tuple[int, str]:
    """Connect to the socket as ``uid``:``gid`` (no supplementary groups) through setpriv; exit code and output."""
    setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
    result = subprocess.run([setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", PYTHON, "-c", CONNECT,
                             str(socket_path)], capture_output=True, text=True, timeout=30, check=False)
    return result.returncode, result.stdout.strip()


async def test_socket_permissions_refuse_another_uid(world: World, tmp_path: Path) -> None:
    """With socket_mode 0660 and socket_group nogroup, a caller in that group connects and one outside is refused."""
    directory = shared_directory()
    try:
        socket_path = directory / "signer.sock"
        with start(tmp_path, world, signer={"socket": str(socket_path), "socket_group": "nogroup"}):
            info = socket_path.stat()
            assert (oct(info.st_mode & 0o777), info.st_gid) == ("0o660", NOBODY)
            assert as_user(socket_path, NOBODY, NOBODY) == (0, "HTTP/1.1 200")
            assert as_user(socket_path, NOBODY, 1234) == (3, "Permission denied")
        assert not socket_path.exists()  # removed on the way out
    finally:
        shutil.rmtree(directory)


async def test_socket_activation(world: World, tmp_path: Path) -> None:
    """Under systemd-socket-activate the signer serves the sockets it is handed (LISTEN_FDS) and leaves them be:
    the Unix one as it is, the loopback TCP one behind the bearer token."""
    activate = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"
    socket_path, port = tmp_path / "activated.sock", free_port()
    token_file = tmp_path / "signer.token"
    token_file.write_text("s" * 40)
    token_file.chmod(0o600)
    passed = ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_EC2_METADATA_DISABLED",
              "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "JWKSD_LOG_FORMAT", "PYTHONPATH"]
    wrapper = [activate, "-l", str(socket_path), "-l", f"127.0.0.1:{port}", *(f"-E{name}" for name in passed)]
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent.parent),
                                                       os.environ.get("PYTHONPATH")]))}
    with SignerProcess.start(tmp_path, world.table(), wrapper=wrapper, wait_ready=False, env=env,
                             signer={"socket": str(tmp_path / "unused.sock"), "token_file": str(token_file)}) as signer:
        signer.socket_path = socket_path
        signer.wait_ready()  # the first connection makes systemd-socket-activate start the signer
        token = signer.sign({"sub": "activated"})
        assert token["kid"] == (await world.kids())["active"]
        assert signer.events("listening")[0]["api"] == [f"unix:{socket_path}", f"tcp:127.0.0.1:{port}"]
        assert not (tmp_path / "unused.sock").exists()
        assert jwt.decode(token["token"], options={"verify_signature": False})["sub"] == "activated"
        tcp = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            assert request(tcp, "POST", "/v1/sign", {"claims": {}})[0] == 401
            status, _, answer = request(tcp, "POST", "/v1/sign", {"claims": {}},
                                        headers={"Authorization": f"Bearer {'s' * 40}"})
            assert (status, answer["kid"]) == (200, token["kid"])
        finally:
            tcp.close()
        assert {line.get("peer", "unix") for line in signer.events("token_signed")} >= {"unix"}
        assert any(line.get("peer", "").startswith("127.0.0.1:") for line in signer.events("token_signed"))
    assert socket_path.exists()  # systemd's socket, not the signer's to remove


async def test_a_file_that_disagrees_with_the_registry_is_refused(world: World, tmp_path: Path) -> None:
    """A signer whose file sets max_token_lifetime_s otherwise than the registry exits 2 naming both values."""
    signer = SignerProcess.start(tmp_path, {**world.table(), "max_token_lifetime_s": 600}, wait_ready=False)
    with signer:
        assert signer.process.wait(timeout=30) == 2
    assert signer.log_path.read_text().endswith(
        "jwksd signer: cannot start: invalid configuration:\n"
        f"  - rotation.max_token_lifetime_s = 600 in {tmp_path / 'signer.toml'}, but registry {world.config.table} "
        "holds 3600: remove it from the file to follow the registry, or change the registry's policy with `jwksd "
        "keys policy --apply`\n")


async def test_a_user_namespace_is_named_in_the_log(world: World, tmp_path: Path) -> None:
    """Run in a user namespace (as PrivateUsers= does), the signer warns that unmapped callers show as 65534."""
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    with start(tmp_path, world, wrapper=[unshare, "--user", "--map-root-user"]) as signer:
        (warning,) = signer.events("audit_uids_limited")
        assert warning["detail"] == audit.uid_map_problem("0 0 1\n")
        signer.sign({"sub": "mapped"})
        assert signer.wait_event("token_signed")["uid"] == 0  # root is mapped: --map-root-user
    assert audit.uid_map_problem("         0          0 4294967295\n") is None
