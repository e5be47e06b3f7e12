"""nginx from the shipped config/nginx/jwksd.conf, caching a jwksd on loopback (tests/test_nginx.py and the bench).

The bench's pair "nginx caching jwksd" against "nginx serving the same file" starts here
(``start_cache``) and is written to its own block of BENCHMARKS.md (``render_section``).

``render`` swaps only the deployment's own values (listen address, upstream, certificate paths,
cache directory, optionally the rate limit) and checks that each one it swaps is in the file, so a
change to the shipped config that the tests no longer cover fails loudly instead of going untested.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.contenders import Server

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config" / "nginx" / "jwksd.conf"
TLS_LINES = ("ssl_", )


@dataclass(frozen=True)
class Edge:
    """Where a rendered nginx listens and keeps its files."""

    port: int
    prefix: Path
    config: Path


def nginx_binary() -> str:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        raise RuntimeError("nginx is not installed: `make test` and `make bench` install Debian's nginx")
    return nginx


def _swap(text: str, old: str, new: str) -> str:
    if old not in text:
        raise ValueError(f"config/nginx/jwksd.conf no longer contains {old!r}: update bench/edge.py and its tests")
    return text.replace(old, new)


def render(prefix: Path, *, port: int, upstream_port: int, cert: Path | None = None, key: Path | None = None,
           rate: str | None = None, burst: int | None = None) -> Edge:
    """Write ``prefix``/nginx.conf: one worker, the shipped server block with local values; plain HTTP without a cert.

    Without ``cert`` the ``ssl_*`` lines go too (the bench compares the cache with a file, TLS aside).
    """
    text = SHIPPED.read_text()
    text = _swap(text, "/var/cache/nginx/jwksd", str(prefix / "cache"))
    text = _swap(text, "server 127.0.0.1:8080;", f"server 127.0.0.1:{upstream_port};")
    if cert is not None and key is not None:
        text = _swap(text, "listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
        text = _swap(text, "/etc/nginx/tls/jwksd.crt", str(cert))
        text = _swap(text, "/etc/nginx/tls/jwksd.key", str(key))
    else:
        text = _swap(text, "listen 443 ssl;", f"listen 127.0.0.1:{port};")
        text = "\n".join(line for line in text.splitlines() if not line.strip().startswith(TLS_LINES))
    if rate is not None:
        text = _swap(text, "rate=20r/s", f"rate={rate}")
    if burst is not None:
        text = _swap(text, "burst=40", f"burst={burst}")
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "jwksd.conf").write_text(text)
    temps = "\n".join(f"  {kind}_temp_path {prefix}/tmp-{kind};" for kind in
                      ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # As root, nginx's workers would run as nobody, who cannot enter a 0700 test directory.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    config = prefix / "nginx.conf"
    config.write_text(f"""{user}worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
{temps}
  keepalive_requests 100000000;
  include {prefix}/jwksd.conf;
}}
""")
    return Edge(port=port, prefix=prefix, config=config)


def spawn(edge: Edge) -> subprocess.Popen[bytes]:
    """Start nginx on ``edge`` in the foreground; its output goes to ``prefix``/nginx.out."""
    with (edge.prefix / "nginx.out").open("wb") as out:
        return subprocess.Popen([nginx_binary(), "-p", str(edge.prefix), "-e", str(edge.prefix / "error.log"),
                                 "-c", str(edge.config)], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def start_cache(workdir: Path, upstream_port: int) -> Server:
    """The bench's "nginx-cache": the shipped config in plain HTTP, its rate limit raised out of the way."""
    from bench.contenders import Server, free_port, wait_until

    edge = render(workdir / "nginx-cache", port=free_port(), upstream_port=upstream_port, rate="1000000r/s",
                  burst=1000000)
    server = Server("nginx-cache", edge.port, spawn(edge), workdir)
    wait_until(server.url, process=server.process)  # the first request fills the cache
    return server


BEGIN = "<!-- bench:edge:begin: written by `make bench` (or BENCH_ARGS='--only edge'); edit outside -->"
END = "<!-- bench:edge:end -->"


def render_section(results: Mapping[str, Any]) -> str:
    """The BENCHMARKS.md block of the edge pair: req/s of each and the ratio, per status and connection count."""
    e = results["edge"]
    cells = {(row["contender"], row["status"], row["connections"]): row for row in e["cells"]}
    ratios = {(row["status"], row["connections"]): row for row in e["ratios"]}
    m = results["machine"]
    out = [BEGIN, "", "## nginx in front: caching jwksd against serving the file", "",
           f"Measured {m['date']} ({'quick' if results['quick'] else 'full'} settings: "
           f"{results['settings']['rounds']} round(s) of {results['settings']['duration_s']:g} s per cell), "
           f"{m['nginx']}, one worker each. *nginx-cache* is `config/nginx/jwksd.conf` (TLS left out, the rate "
           f"limit raised out of the way) caching a jwksd ({e['loop']}); *nginx* serves the same bytes and headers "
           "from a file. The two run back to back, order alternating; the ratio is the median of the pairs'. "
           "Requests that reached jwksd during the runs: "
           + (", ".join(f"{count:.0f} answered {status}" for status, count in e["upstream_requests"].items()) or "none")
           + ".", "",
           "| status | connections | nginx-cache req/s | nginx (file) req/s | cache ÷ file | p99 ms cache "
           "| p99 ms file |",
           "|---|---|---|---|---|---|---|"]
    for status in ("200", "304"):
        for conns in results["settings"]["connections"]:
            cache, static = cells[("nginx-cache", status, conns)], cells[("nginx", status, conns)]
            out.append(f"| {status} | {conns} | {cache['rps']:,.0f} | {static['rps']:,.0f} | "
                       f"{ratios[(status, conns)]['rps']:.2f}x | {cache['p99_ms']:.2f} | {static['p99_ms']:.2f} |")
    out += ["", END]
    return "\n".join(out)
