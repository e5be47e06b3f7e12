"""How long never-reading pipelining clients can stop a normal client (docs/reliability.md, "Clients misbehave").

``python -m bench.slow_readers`` (not part of ``make test`` nor ``make bench``; about a minute):
one ``jwksd serve`` with the default ``server.write_timeout_s`` (5 s) under ``prlimit --nofile``,
reading a ~12 kB key set from moto; two threads keep opening connections that pipeline 2000 GETs
and never read; one normal client GETs the key set one request after another and records its
longest wait for a 200. Prints one line of figures.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.source import Moto
from tests.daemon_process import JWKS, Daemon, sm_sections
from tests.slow_readers import attack, big_key_set, poll


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.slow_readers", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=45.0, help="how long the attack lasts (default 45)")
    parser.add_argument("--nofile", type=int, default=128, help="the daemon's open-file limit (default 128)")
    parser.add_argument("--write-timeout-s", type=float, default=5.0, help="server.write_timeout_s (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="attacking threads (default 2)")
    args = parser.parse_args()
    moto = Moto()
    try:
        secret = moto.create(big_key_set("bench").encode(), big_key_set("bench").encode())
        sections = {**sm_sections(secret), "server": {"write_timeout_s": args.write_timeout_s}}
        with tempfile.TemporaryDirectory() as workdir, \
                Daemon.from_toml(Path(workdir), sections, endpoint=moto.endpoint,
                                 wrapper=("prlimit", f"--nofile={args.nofile}:{args.nofile}", "--")) as running:
            limits = running.events("connection_limits")[0]
            started = time.monotonic()
            with attack(running.port, args.threads) as hostile:
                seen = poll(running.url(JWKS), lambda _: time.monotonic() - started < args.seconds,
                            timeout_s=args.seconds)
                made = len(hostile)
            cut = {reason: int(running.metric("jwksd_connections_cut_total", listener="main", reason=reason))
                   for reason in ("write_timeout", "capacity_evicted", "capacity_refused")}
    finally:
        moto.stop()
    print(f"nofile={args.nofile} max_connections={limits['max_connections']} write_timeout_s={args.write_timeout_s:g}"
          f" attack={args.seconds:g}s hostile_connections={made} normal_requests={seen.requests}"
          f" statuses={seen.statuses} longest_wait_for_200_s={seen.longest_s:.2f} cut={cut}")


if __name__ == "__main__":
    main()
