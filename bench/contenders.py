"""The servers under test, each a process on 127.0.0.1: jwksd, a bare aiohttp handler, nginx and Node.js.

jwksd is started first; the others serve the bytes and headers jwksd served, so every contender
answers with the same document, ETag and cache headers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.source import CREDENTIALS, REGION

ROOT = Path(__file__).resolve().parent.parent
JWKS = "/.well-known/jwks.json"
# Per-connection and per-server headers that differ by design; everything else must match.
TRANSPORT_HEADERS = frozenset({"date", "server", "content-length", "connection", "keep-alive"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fetch(url: str, headers: dict[str, str] | None = None, timeout_s: float = 2.0) -> tuple[int, dict[str, str], bytes]:
    """One GET: status, headers, body (a 304 or an error status is returned, not raised)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


def wait_until(url: str, *, status: int = 200, timeout_s: float = 20.0, interval_s: float = 0.005,
               process: subprocess.Popen[bytes] | None = None) -> float:
    """Poll ``url`` until it answers ``status``; return the monotonic time it did."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} before {url} answered")
        with contextlib.suppress(OSError):
            if fetch(url, timeout_s=1.0)[0] == status:
                return time.monotonic()
        time.sleep(interval_s)
    raise RuntimeError(f"{url} did not answer {status} within {timeout_s:g} s")


@dataclass
class Server:
    """One running contender."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    workdir: Path
    metrics_port: int | None = None
    started_at: float = field(default_factory=time.monotonic)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{JWKS}"

    def memory_kib(self) -> tuple[int, int]:
        """(current RSS, peak RSS) of the process, from /proc."""
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            fields[name] = value.strip()
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _spawn(command: list[str], workdir: Path, name: str, env: dict[str, str] | None = None,
           cwd: Path = ROOT) -> subprocess.Popen[bytes]:
    with (workdir / f"{name}.log").open("wb") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                start_new_session=True)


def jwksd_config(workdir: Path, *, name: str, port: int, metrics_port: int, endpoint: str, secret_id: str,
                 loop: str, interval_s: float = 300.0) -> Path:
    """A config file for one jwksd: refreshes on SIGUSR1 or ``interval_s``, room for a 100-key RSA-4096 set."""
    path = workdir / f"{name}.toml"
    path.write_text(f"""[server]
listen = "127.0.0.1:{port}"
metrics_listen = "127.0.0.1:{metrics_port}"
event_loop = "{loop}"

[source]
secret_id = "{secret_id}"
endpoint_url = "{endpoint}"
region = "{REGION}"
read_timeout_s = 10     # the slow source answers in 3 s; that is slow, not failed

[refresh]
interval_s = {interval_s}
max_age_s = {max(600.0, interval_s * 2)}

[validation]
max_document_bytes = 131072   # 100 RSA-4096 keys are about 78 KB

[log]
format = "json"
""")
    return path


def start_jwksd(workdir: Path, *, name: str, endpoint: str, secret_id: str, loop: str = "auto",
                interval_s: float = 300.0, wait: bool = True, root: Path = ROOT) -> Server:
    """Start ``python -m jwksd serve`` from the tree at ``root``; with ``wait``, return once /readyz says 200."""
    port, metrics_port = free_port(), free_port()
    config = jwksd_config(workdir, name=name, port=port, metrics_port=metrics_port, endpoint=endpoint,
                          secret_id=secret_id, loop=loop, interval_s=interval_s)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **CREDENTIALS,
           "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
           "AWS_EC2_METADATA_DISABLED": "true"}
    started = time.monotonic()
    process = _spawn([sys.executable, "-m", "jwksd", "serve", "--config", str(config)], workdir, name, env, root)
    server = Server(name, port, process, workdir, metrics_port=metrics_port, started_at=started)
    if wait:
        wait_until(f"http://127.0.0.1:{port}/readyz", process=process)
    return server


def export_tree(ref: str, workdir: Path) -> Path:
    """The jwksd package as of git ``ref``, unpacked under ``workdir`` (``python -m jwksd`` runs it from there)."""
    target = workdir / f"tree-{ref}"
    if target.exists():
        return target
    target.mkdir()
    archive = subprocess.run(["git", "archive", ref, "jwksd"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def capture(server: Server, workdir: Path) -> tuple[Path, Path, str]:
    """What jwksd serves: the body file, the headers file ({"200": ..., "304": ...}) and the ETag."""
    status, headers, body = fetch(server.url)
    if status != 200:
        raise RuntimeError(f"{server.name} answered {status} instead of the key set")
    etag = next(value for name, value in headers.items() if name.lower() == "etag")
    status_304, headers_304, _ = fetch(server.url, {"If-None-Match": etag})
    if status_304 != 304:
        raise RuntimeError(f"{server.name} answered {status_304} to If-None-Match instead of 304")
    kept: dict[str, Any] = {"etag": etag,
                            "200": {k: v for k, v in headers.items() if k.lower() not in TRANSPORT_HEADERS},
                            "304": {k: v for k, v in headers_304.items() if k.lower() not in TRANSPORT_HEADERS}}
    body_path, headers_path = workdir / "jwks.json", workdir / "headers.json"
    body_path.write_bytes(body)
    headers_path.write_text(json.dumps(kept, indent=1))
    return body_path, headers_path, etag


def start_bare(workdir: Path, body: Path, headers: Path, *, loop: str) -> Server:
    port = free_port()
    name = f"bare-{loop}"
    process = _spawn([sys.executable, "-m", "bench.bare", "--port", str(port), "--body", str(body), "--headers",
                      str(headers), "--loop", loop], workdir, name)
    server = Server(name, port, process, workdir)
    wait_until(server.url, process=process)
    return server


def start_node(workdir: Path, body: Path, headers: Path) -> Server:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed")
    port = free_port()
    process = _spawn([node, str(ROOT / "bench" / "node_server.js"), str(port), str(body), str(headers)], workdir,
                     "node")
    server = Server("node", port, process, workdir)
    wait_until(server.url, process=process)
    return server


def nginx_config(prefix: Path, port: int, headers: dict[str, Any]) -> str:
    """One worker (jwksd is one process too), the file from disk, jwksd's headers added, 304 on the ETag."""
    ok = headers["200"]
    added = "\n".join(f"      add_header {name} '{value}' always;" for name, value in ok.items()
                      if name.lower() not in ("content-type", "last-modified", "etag"))
    etag = headers["etag"]
    temps = "\n".join(f"  {kind}_temp_path {prefix}/tmp-{kind};" for kind in
                      ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
{temps}
  sendfile on;
  tcp_nodelay on;
  keepalive_timeout 5s;
  keepalive_requests 100000000;   # aiohttp and node do not cap requests per connection either
  open_file_cache max=16 inactive=60s;
  open_file_cache_valid 60s;
  server_tokens off;
  server {{
    listen 127.0.0.1:{port};
    location = {JWKS} {{
      root {prefix}/www;
      default_type application/json;
      etag off;
      add_header ETag '{etag}' always;
{added}
      if ($http_if_none_match = '{etag}') {{ return 304; }}
    }}
  }}
}}
"""


def start_nginx(workdir: Path, body: Path, headers: Path, last_modified: float) -> Server:
    """nginx with a generated config under ``workdir``: no root needed, pid and logs kept there."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        raise RuntimeError("nginx is not installed: run `make bench` (it installs Debian's nginx)")
    prefix = workdir / "nginx"
    served = prefix / "www" / JWKS.lstrip("/")
    served.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(body, served)
    os.utime(served, (last_modified, last_modified))  # nginx's Last-Modified is the file's mtime
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_config(prefix, port, json.loads(headers.read_text())))
    # Running as root, nginx's worker is `nobody`: it must be able to read the tree.
    for path in (workdir, prefix, *prefix.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    process = _spawn([nginx, "-p", str(prefix), "-e", str(prefix / "nginx-error.log"), "-c", str(conf)], workdir,
                     "nginx")
    server = Server("nginx", port, process, workdir)
    wait_until(server.url, process=process)
    return server
