"""The Docker sidecar without a Docker engine: the Dockerfile parses and says what it must, and the wheel its
build stage makes runs the way the image runs it (only JWKSD_* variables, an unprivileged numeric user,
nothing writable but the state directory), answering /readyz and the image's HEALTHCHECK; and the signer's
sidecar form (docs/signer.md) from the same wheel, its socket shared with the app's group only."""

from __future__ import annotations

import asyncio
import email
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from jwksd.config import RotationConfig
from tests.conftest import free_port
from tests.daemon_process import DUMMY_AWS, Daemon, toml_config, wait_until
from tests.keys import jwk_set, rsa_jwk, rsa_key
from tests.rotation_helpers import keyring, rotation_config
from tests.signer_helpers import active_registry, rotation_table

ROOT = Path(__file__).resolve().parent.parent
INSTRUCTIONS = {"FROM", "ARG", "WORKDIR", "COPY", "RUN", "ENV", "USER", "VOLUME", "EXPOSE", "STOPSIGNAL",
                "HEALTHCHECK", "ENTRYPOINT", "CMD", "LABEL", "COMMENT"}
NOBODY = 65534
SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"  # the daemon runs with no PATH
DEBIAN_PYTHON = "/usr/bin/python3.11"  # readable by nobody, unlike a python under /root


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    with (ROOT / "Dockerfile").open("rb") as handle:
        return DockerfileParser(fileobj=handle, cache_content=True)


def instructions(parser: DockerfileParser, name: str, *, final: bool = True) -> list[str]:
    """The values of one instruction, in the final stage only unless ``final`` is False."""
    structure: list[dict[str, Any]] = parser.structure
    last_from = max(i for i, item in enumerate(structure) if item["instruction"] == "FROM")
    return [item["value"] for i, item in enumerate(structure)
            if item["instruction"] == name and (not final or i > last_from)]


def healthcheck_argv(parser: DockerfileParser) -> list[str]:
    (value,) = instructions(parser, "HEALTHCHECK")
    argv: list[str] = json.loads(value[value.index("CMD") + 3:])
    return argv


def test_dockerfile_parses_and_has_what_a_sidecar_needs(dockerfile: DockerfileParser) -> None:
    """Multi-stage on slim Python, numeric non-root USER, both ports, SIGTERM, a /readyz HEALTHCHECK, JWKSD_* env."""
    structure = dockerfile.structure
    assert {item["instruction"] for item in structure} <= INSTRUCTIONS
    assert dockerfile.is_multistage
    assert all(image.startswith("python:3.11-slim") for image in dockerfile.parent_images)
    assert "pip wheel" in " ".join(instructions(dockerfile, "RUN", final=False))
    assert "--find-links /wheels jwksd" in " ".join(instructions(dockerfile, "RUN"))
    (user,) = instructions(dockerfile, "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and gid.isdigit() and int(uid) != 0 and int(gid) != 0
    assert instructions(dockerfile, "EXPOSE") == ["8080 9464"]
    assert instructions(dockerfile, "STOPSIGNAL") == ["SIGTERM"]
    assert "/readyz" in " ".join(healthcheck_argv(dockerfile))
    assert json.loads(instructions(dockerfile, "ENTRYPOINT")[0]) == ["jwksd"]
    assert json.loads(instructions(dockerfile, "CMD")[0]) == ["serve"]
    assert json.loads(instructions(dockerfile, "VOLUME")[0]) == [dockerfile.envs["JWKSD_STATE_DIR"]]
    assert {name for name in dockerfile.envs if not name.startswith("PYTHON")} == {
        "JWKSD_LISTEN", "JWKSD_METRICS_LISTEN", "JWKSD_STATE_DIR", "JWKSD_LOG_FORMAT"}


def test_build_context_holds_what_the_dockerfile_copies(dockerfile: DockerfileParser) -> None:
    """Each COPY source exists and is let through .dockerignore (which keeps .venv and tests out)."""
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    for value in instructions(dockerfile, "COPY", final=False):
        *sources, _ = shlex.split(value)
        for source in sources:
            assert (ROOT / source).exists() and source in allowed, source


def requirements_of(wheel: Path) -> list[Requirement]:
    """The wheel's Requires-Dist, as pip would read them."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = (name for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(archive.read(name))
    return [Requirement(line) for line in metadata.get_all("Requires-Dist") or []]


MARKER_ENVIRONMENT = """import json, os, platform, sys
print(json.dumps({"implementation_name": sys.implementation.name, "implementation_version": platform.python_version(),
                  "os_name": os.name, "platform_machine": platform.machine(), "platform_release": platform.release(),
                  "platform_system": platform.system(), "platform_version": platform.version(),
                  "python_full_version": platform.python_version(),
                  "platform_python_implementation": platform.python_implementation(),
                  "python_version": ".".join(platform.python_version_tuple()[:2]), "sys_platform": sys.platform}))"""


def marker_environment(python: Path) -> dict[str, str]:
    """PEP 508 marker values of ``python``, which is not the interpreter running the tests."""
    out = subprocess.run([str(python), "-c", MARKER_ENVIRONMENT], check=True, capture_output=True, text=True).stdout
    environment: dict[str, str] = json.loads(out)
    return environment


def dependency_closure(requirements: list[Requirement], environment: dict[str, str]) -> list[metadata.Distribution]:
    """The installed distributions ``requirements`` need on ``environment``, transitively, extras honoured."""
    found: dict[str, metadata.Distribution] = {}
    todo = [(requirement, "") for requirement in requirements]
    seen: set[tuple[str, str]] = set()
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({**environment, "extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        for wanted in ("", *sorted(requirement.extras)):
            if (name, wanted) in seen:
                continue
            seen.add((name, wanted))
            found[name] = distribution = metadata.distribution(requirement.name)
            todo += [(Requirement(line), wanted) for line in distribution.requires or []]
    return list(found.values())


def copy_distribution(distribution: metadata.Distribution, purelib: Path) -> None:
    """Copy an installed distribution's files (its RECORD) into ``purelib``; scripts outside it are left out."""
    files = distribution.files
    assert files is not None, f"{distribution.metadata['Name']} has no RECORD to copy from"
    for file in files:
        if ".." in file.parts or "__pycache__" in file.parts:
            continue
        target = purelib / file
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(str(distribution.locate_file(file))), target)


@pytest.fixture(scope="module")
def installed(dockerfile: DockerfileParser) -> Iterator[Path]:
    """The wheel built from exactly what the build stage copies, installed into a fresh venv of Debian's python3.11.

    Its dependencies are copied, file by file, from the test venv into the new venv (no package index),
    so nothing the daemon runs lives under the clone: the clone may sit in a directory only root can
    enter. The tree is root-owned and world-readable: read-only to nobody.
    """
    top = Path(tempfile.mkdtemp(prefix="jwksd-wheel-"))
    try:
        top.chmod(0o755)
        unreachable = [str(path) for path in top.parents if path.stat().st_mode & 0o001 == 0]
        assert not unreachable, f"nobody cannot enter {unreachable}: point TMPDIR at a world-enterable directory"
        context = top / "context"
        context.mkdir()
        for value in instructions(dockerfile, "COPY", final=False):
            *sources, _ = shlex.split(value)
            for source in sources:
                (shutil.copytree if (ROOT / source).is_dir() else shutil.copy2)(ROOT / source, context / source)
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
        subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(top / "dist"),
                        str(context)], check=True, timeout=120, capture_output=True)
        (wheel,) = (top / "dist").glob("jwksd-*.whl")
        subprocess.run([DEBIAN_PYTHON, "-m", "venv", "--without-pip", str(top / "venv")], check=True, timeout=60)
        python = top / "venv" / "bin" / "python"
        purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                      check=True, capture_output=True, text=True).stdout.strip())
        for distribution in dependency_closure(requirements_of(wheel), marker_environment(python)):
            copy_distribution(distribution, purelib)
        installing = subprocess.run([*pip, "--python", str(python), "install", "--no-index", str(wheel)],
                                    timeout=120, capture_output=True, text=True, check=False)
        assert installing.returncode == 0, installing.stderr
        yield top / "venv"
    finally:
        shutil.rmtree(top, ignore_errors=True)


def as_nobody(*argv: str) -> list[str]:
    return [SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--no-new-privs", *argv]


def test_wheel_serves_as_nobody_with_only_jwksd_variables(installed: Path, dockerfile: DockerfileParser) -> None:
    """The image's own environment (listeners on loopback here) plus a file source: /readyz and HEALTHCHECK pass."""
    work = Path(tempfile.mkdtemp(prefix="jwksd-run-"))
    try:
        work.chmod(0o755)
        readonly = work / "cwd"
        readonly.mkdir(mode=0o555)
        state = work / "state"
        state.mkdir(mode=0o700)
        os.chown(state, NOBODY, NOBODY)
        keys = work / "keys.json"
        keys.write_text(jwk_set(rsa_jwk(rsa_key(0), "k1")))
        keys.chmod(0o644)
        env = {**dockerfile.envs, "JWKSD_LISTEN": f"127.0.0.1:{free_port()}",
               "JWKSD_METRICS_LISTEN": f"127.0.0.1:{free_port()}", "JWKSD_STATE_DIR": str(state),
               "JWKSD_SOURCE_KIND": "file", "JWKSD_SOURCE_FILE": str(keys)}
        assert all(name.startswith(("JWKSD_", "PYTHON")) for name in env)
        daemon = Daemon.from_env(env, work / "jwksd.log", cwd=readonly,
                                 argv=as_nobody(str(installed / "bin" / "jwksd"), "serve"))
        try:
            assert b'"k1"' in daemon.get()[2]
            where = subprocess.run(as_nobody(str(installed / "bin" / "python"), "-c",
                                             "import jwksd; print(jwksd.__file__)"),
                                   capture_output=True, text=True, check=True, cwd=readonly, env=env).stdout
            assert where.startswith(str(installed))  # the wheel's jwksd, not the source tree
            health = {**env, "PATH": str(installed / "bin")}  # `python` is the image's python
            check = subprocess.run(as_nobody(*healthcheck_argv(dockerfile)), env=health, cwd=readonly,
                                   capture_output=True, timeout=10, check=False)
            assert check.returncode == 0, check.stderr
            closed = {**health, "JWKSD_LISTEN": f"127.0.0.1:{free_port()}"}
            assert subprocess.run(as_nobody(*healthcheck_argv(dockerfile)), env=closed, capture_output=True,
                                  timeout=10, check=False).returncode != 0
            (written,) = state.iterdir()  # the only file it wrote, as nobody
            assert (written.name, written.stat().st_uid) == ("last-known-good.json", NOBODY)
            assert daemon.stop() == 0
        finally:
            daemon.kill()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def sidecar_compose() -> dict[str, Any]:
    """The compose example of docs/signer.md: the signer and an app sharing the socket's volume."""
    from tests.markdown import Document

    (text,) = [s.text for s in Document.read(ROOT / "docs" / "signer.md").snippets
               if s.kind == "yaml" and "signer-socket" in s.text]
    compose: dict[str, Any] = yaml.safe_load(text)
    return compose


def as_user(user: str, groups: list[str], *argv: str) -> list[str]:
    uid, _, gid = user.partition(":")
    joined = [f"--groups={','.join(groups)}"] if groups else ["--clear-groups"]
    return [SETPRIV, f"--reuid={uid}", f"--regid={gid}", *joined, "--no-new-privs", *argv]


def test_signer_sidecar_shares_its_socket_with_the_app_only(installed: Path, dockerfile: DockerfileParser,
                                                            moto_endpoint: str) -> None:
    """docs/signer.md's compose form from the wheel: the signer as its user, the app in its group signs, others not."""
    compose = sidecar_compose()
    signer_service, app = compose["services"]["signer"], compose["services"]["app"]
    options = dict(item.split("=") for item in compose["volumes"]["signer-socket"]["driver_opts"]["o"].split(","))
    assert signer_service["command"] == ["signer"] and app["group_add"] == [signer_service["user"].split(":")[1]]
    config = rotation_config(moto_endpoint)
    asyncio.run(_active_registry(config))
    work = Path(tempfile.mkdtemp(prefix="jwksd-sidecar-"))
    try:
        work.chmod(0o755)
        volume = work / "run-jwksd-signer"  # the volume both containers mount at /run/jwksd-signer
        volume.mkdir()
        os.chown(volume, int(options["uid"]), int(options["gid"]))
        volume.chmod(int(options["mode"], 8))
        socket_path = volume / "signer.sock"
        toml = work / "signer.toml"
        toml.write_text(toml_config({"rotation": rotation_table(config, moto_endpoint),
                                     "signer": {"socket": str(socket_path), "metrics_listen": "off"}}))
        toml.chmod(0o644)
        env = {**dockerfile.envs, **DUMMY_AWS, "JWKSD_CONFIG": str(toml)}
        health = [word.replace("/run/jwksd-signer/signer.sock", str(socket_path))
                  for word in signer_service["healthcheck"]["test"][1:]]
        with (work / "signer.log").open("wb") as log:
            signer = subprocess.Popen(as_user(signer_service["user"], [], str(installed / "bin" / "jwksd"),
                                              *signer_service["command"]), env=env, cwd=work, stdout=log,
                                      stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: subprocess.run(as_user(signer_service["user"], [], *health), capture_output=True,
                                              env={**env, "PATH": str(installed / "bin")}, timeout=10,
                                              check=False).returncode == 0, "the compose health check to pass")
            assert oct(socket_path.stat().st_mode & 0o777) == "0o660"
            curl = ["curl", "-s", "--unix-socket", str(socket_path), "-d", '{"claims": {"sub": "app"}}',
                    "http://signer/v1/sign"]
            signed = subprocess.run(as_user(app["user"], app["group_add"], *curl), capture_output=True, text=True,
                                    timeout=10, check=True)
            assert json.loads(signed.stdout)["token"].count(".") == 2
            stranger = subprocess.run(as_user("1001:1001", [], *curl), capture_output=True, timeout=10, check=False)
            assert (stranger.returncode, stranger.stdout) == (7, b"")  # curl: could not connect (EACCES)
            signer.terminate()
            assert signer.wait(15) == 0
        finally:
            signer.kill()
            signer.wait()
        lines = [json.loads(line) for line in (work / "signer.log").read_text().splitlines() if line.startswith("{")]
        (audit,) = [line for line in lines if line["event"] == "token_signed"]
        assert (audit["sub"], audit["uid"], audit["gid"]) == ("app", int(app["user"].split(":")[0]),
                                                             int(app["user"].split(":")[1]))
        assert not socket_path.exists()  # removed on the way out
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _active_registry(config: RotationConfig) -> None:
    async with keyring(config, publish=True) as ring:
        await active_registry(ring, f"{config.private_secret_prefix}/public")
