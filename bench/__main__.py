"""`make bench` (``python -m bench``): run every measurement, alternating contenders, and write BENCHMARKS.md.

``BENCH_QUICK=1`` (or ``--quick``) runs one short round of everything, for a look in about three minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import chain, contenders, edge, report, scenarios, signer
from bench.documents import RESULTS, rsa_document, split_stages
from bench.source import Moto, Proxy


@dataclass(frozen=True)
class Settings:
    """How long and how often; the full run stays under 20 minutes on two cores."""

    rounds: int
    duration_s: float
    connections: tuple[int, ...]
    ready_starts: int
    soak_s: float
    window_s: float
    validate_s: float
    pulse_s: float = 0.5  # refreshes are forced this often during the degraded runs

    @classmethod
    def full(cls) -> Settings:
        return cls(rounds=4, duration_s=2, connections=(1, 16, 64), ready_starts=5, soak_s=300, window_s=60,
                   validate_s=3)

    @classmethod
    def quick(cls) -> Settings:
        return cls(rounds=1, duration_s=1, connections=(1, 16, 64), ready_starts=2, soak_s=20, window_s=10,
                   validate_s=0.5)


def uvloop_installed() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


@contextlib.contextmanager
def running(*servers: contenders.Server) -> Iterator[None]:
    try:
        yield
    finally:
        for server in servers:
            server.stop()


def last_modified(headers: Path) -> float:
    return email.utils.parsedate_to_datetime(json.loads(headers.read_text())["200"]["Last-Modified"]).timestamp()


def throughput(work: Path, moto: Moto, settings: Settings, loops: list[str], before: str | None) -> dict[str, Any]:
    """jwksd on each loop against the bare handler on the same loop, nginx and Node (and jwksd as of ``before``)."""
    proxy = Proxy(moto.endpoint).start()
    previous, current = split_stages(rsa_document(2, 2048))
    secret = moto.create(previous, current)
    try:
        jwksds = [contenders.start_jwksd(work, name=f"jwksd-{loop}", endpoint=proxy.endpoint, secret_id=secret,
                                         loop=loop) for loop in loops]
        if before:
            jwksds.append(contenders.start_jwksd(work, name="jwksd-before", endpoint=proxy.endpoint, secret_id=secret,
                                                 loop=loops[-1], root=contenders.export_tree(before, work)))
        with running(*jwksds):
            body, headers, etag = contenders.capture(jwksds[0], work)
            others = [contenders.start_bare(work, body, headers, loop=loop) for loop in loops]
            with running(*others):
                others.append(contenders.start_nginx(work, body, headers, last_modified(headers)))
                with running(others[-1]):
                    others.append(contenders.start_node(work, body, headers))
                    with running(others[-1]):
                        log(f"throughput: {len(jwksds) + len(others)} contenders, {settings.rounds} rounds")
                        servers = {server.name: server for server in [*jwksds, *others]}
                        default = servers[f"jwksd-{loops[-1]}"]
                        pairs = [(servers[f"jwksd-{loop}"], servers[f"bare-{loop}"]) for loop in loops]
                        pairs += [(default, server) for server in servers.values()
                                  if server.name in ("jwksd-before", "nginx", "node")]
                        cells, ratios = scenarios.matrix(pairs, dict.fromkeys(servers, etag),
                                                         connections=settings.connections, rounds=settings.rounds,
                                                         duration_s=settings.duration_s, progress=log)
                        statuses = {server.name: scenarios.statuses(server) for server in jwksds}
            return {"cells": report.cells_json(cells), "ratios": report.ratios_json(ratios),
                    "jwksd_statuses": statuses, "body_bytes": body.stat().st_size,
                    "headers": json.loads(headers.read_text()), "before": before}
    finally:
        proxy.stop()


def edge_pair(work: Path, moto: Moto, settings: Settings, loop: str) -> dict[str, Any]:
    """nginx caching jwksd (config/nginx/jwksd.conf) against nginx serving jwksd's bytes from a file."""
    proxy = Proxy(moto.endpoint).start()
    previous, current = split_stages(rsa_document(2, 2048))
    upstream = contenders.start_jwksd(work, name="jwksd-upstream", endpoint=proxy.endpoint,
                                      secret_id=moto.create(previous, current), loop=loop)
    try:
        body, headers, etag = contenders.capture(upstream, work)
        static = contenders.start_nginx(work, body, headers, last_modified(headers))
        with running(static):
            cache = edge.start_cache(work, upstream.port)
            with running(cache):
                before = scenarios.statuses(upstream)
                log(f"edge: nginx caching jwksd ({loop}) against nginx serving the file, {settings.rounds} rounds")
                cells, ratios = scenarios.matrix([(cache, static)], {"nginx-cache": etag, "nginx": etag},
                                                 connections=settings.connections, rounds=settings.rounds,
                                                 duration_s=settings.duration_s, progress=log)
                after = scenarios.statuses(upstream)
        reached = {status: after.get(status, 0) - before.get(status, 0) for status in after}
        return {"cells": report.cells_json(cells), "ratios": report.ratios_json(ratios), "loop": loop,
                "upstream_requests": {status: count for status, count in reached.items() if count}}
    finally:
        upstream.stop()
        proxy.stop()


def degraded(work: Path, moto: Moto, settings: Settings, loop: str) -> dict[str, Any]:
    """One jwksd per source condition, refreshes forced every ``pulse_s`` while each is measured."""
    previous, current = split_stages(rsa_document(2, 2048))
    big = rsa_document(100, 4096)
    keys = json.loads(big)["keys"]
    big_b = json.dumps({"keys": [{**keys[0], "alg": "PS256"}, *keys[1:]]}).encode()  # a changed set each time
    proxies = {name: Proxy(moto.endpoint).start() for name in ("healthy", "slow", "down", "refresh-100")}
    secrets = {name: moto.create(previous, current) for name in ("healthy", "slow", "down")}
    secrets["refresh-100"] = moto.create(big_b, big)
    servers = [contenders.start_jwksd(work, name=name, endpoint=proxies[name].endpoint, secret_id=secrets[name],
                                      loop=loop) for name in proxies]
    try:
        etag = contenders.capture(servers[0], work)[2]
        etags = dict.fromkeys(proxies, etag)
        etags["refresh-100"] = rotation_etags(servers[3], lambda: moto.put(secrets["refresh-100"], big_b))
        proxies["slow"].mode, proxies["down"].mode = "slow", "down"
        flip = {"next": big}

        def during(server: contenders.Server) -> Callable[[], None]:
            def pulse() -> None:
                if server.name == "refresh-100":  # a rotation: the served set changes on every refresh
                    moto.put(secrets["refresh-100"], flip["next"])
                    flip["next"] = big if flip["next"] is big_b else big_b
                server.signal(signal.SIGUSR1)
            return scenarios.Pulse(pulse, settings.pulse_s).start().stop

        calls_before = {name: proxy.get_secret_calls() for name, proxy in proxies.items()}
        log(f"degraded: healthy, slow (3 s a call), down (503) and a 100-key RSA-4096 rotation, on {loop}")
        healthy = servers[0]
        cells, ratios = scenarios.matrix([(server, healthy) for server in servers[1:]], etags,
                                         connections=settings.connections, rounds=settings.rounds,
                                         duration_s=settings.duration_s, during=during, progress=log)
        return {"cells": report.cells_json(cells), "ratios": report.ratios_json(ratios), "loop": loop,
                "statuses": {server.name: scenarios.statuses(server) for server in servers},
                "aws_calls": {name: proxy.get_secret_calls() - calls_before[name] for name, proxy in proxies.items()},
                "refreshes": {server.name: scenarios.metric(server, "jwksd_refreshes_total", outcome=outcome)
                              for server in servers
                              for outcome in ("success",) if server.name != "down"},
                "big_document_bytes": len(big)}
    finally:
        for server in servers:
            server.stop()
        for proxy in proxies.values():
            proxy.stop()


def rotation_etags(server: contenders.Server, rotate: Callable[[], None]) -> str:
    """Both ETags of a rotating set, as one If-None-Match list: a client that saw either gets 304."""
    first = contenders.fetch(server.url)[1]
    rotate()
    server.signal(signal.SIGUSR1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        second = contenders.fetch(server.url)[1]
        if _etag(second) != _etag(first):
            return f"{_etag(first)}, {_etag(second)}"
        time.sleep(0.05)
    raise RuntimeError(f"{server.name} did not pick up the rotated set within 30 s")


def _etag(headers: dict[str, str]) -> str:
    return next(value for name, value in headers.items() if name.lower() == "etag")


def handler_chain(work: Path, settings: Settings, before: str | None) -> dict[str, Any]:
    """Microseconds per request through the handler chain alone, jwksd (and as of ``before``) against bare."""
    trees: dict[str, Path | None] = {"jwksd": None, "bare": None}
    if before:
        trees["jwksd-before"] = contenders.export_tree(before, work)
    samples: dict[str, dict[str, list[float]]] = {name: {"200": [], "304": []} for name in trees}
    iterations = 20000 if settings.rounds > 1 else 3000
    for _ in range(settings.rounds):
        for name, tree in trees.items():
            for status, value in chain.run("bare" if name == "bare" else "jwksd", tree, iterations=iterations).items():
                samples[name][status].append(value)
    log("handler chain: " + ", ".join(f"{name} {statistics.median(s['200']):.1f}/{statistics.median(s['304']):.1f} us"
                                      for name, s in samples.items()))
    return {name: {status: statistics.median(values) for status, values in s.items()} for name, s in samples.items()}


def memory_and_calls(work: Path, moto: Moto, settings: Settings, loop: str) -> dict[str, Any]:
    """A soak at full speed: RSS over time, the peak, and GetSecretValue calls counted at the proxy."""
    proxy = Proxy(moto.endpoint).start()
    previous, current = split_stages(rsa_document(2, 2048))
    server = contenders.start_jwksd(work, name="soak", endpoint=proxy.endpoint,
                                    secret_id=moto.create(previous, current), loop=loop, interval_s=10)
    try:
        start_kib = server.memory_kib()[0]
        log(f"soak: {settings.soak_s:g} s at 16 connections, refresh every 10 s (±10%), on {loop}")
        result = scenarios.soak(server, duration_s=settings.soak_s, window_s=settings.window_s,
                                calls=proxy.get_secret_calls)
        return {**asdict(result), "start_kib": start_kib, "interval_s": 10, "loop": loop}
    finally:
        server.stop()
        proxy.stop()


def signing(work: Path, moto: Moto, settings: Settings, quick: bool) -> dict[str, Any]:
    """jwksd signer over its socket against in-process signing, KMS Sign and `jwksd keys sign` (bench/signer.py)."""
    return signer.measure(work, moto.endpoint, rounds=settings.rounds, duration_s=settings.duration_s,
                          keys_sign_tokens=3 if quick else 5, progress=log)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1",
                        help="one short round of everything (also BENCH_QUICK=1)")
    parser.add_argument("--out", type=Path, default=contenders.ROOT / "BENCHMARKS.md")
    parser.add_argument("--before", metavar="GIT_REF", help="also measure jwksd as of this commit (jwksd-before)")
    parser.add_argument("--only", choices=["edge", "signer"],
                        help="only this part: edge = nginx caching jwksd against nginx serving the file; "
                             "signer = jwksd signer's tokens/s")
    parser.add_argument("--render", type=Path, metavar="RESULTS_JSON",
                        help="only rewrite the tables from a saved run (bench/results/latest.json)")
    args = parser.parse_args()
    if args.render:
        report.write(args.out, json.loads(args.render.read_text()))
        return 0
    settings = Settings.quick() if args.quick else Settings.full()
    loops = ["asyncio", "uvloop"] if uvloop_installed() else ["asyncio"]
    default_loop = loops[-1]  # what `event_loop = "auto"` picks here
    started = time.monotonic()
    results: dict[str, Any] = {"settings": asdict(settings), "quick": args.quick, "loops": loops,
                               "machine": report.machine()}
    if args.only:
        moto = Moto()
        try:
            with tempfile.TemporaryDirectory(prefix="jwksd-bench-") as tmp:
                results[args.only] = (edge_pair(Path(tmp), moto, settings, default_loop) if args.only == "edge"
                                      else signing(Path(tmp), moto, settings, args.quick))
        finally:
            moto.stop()
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"latest-{args.only}.json").write_text(json.dumps(results, indent=1))
        report.write(args.out, results)
        log(f"done; wrote the {args.only} section of {args.out}")
        return 0
    log("documents: 2 RSA-2048 keys to serve; 100 RSA-4096 keys to validate (generated once, cached)")
    rsa_document(2, 2048)
    rsa_document(100, 4096)
    results["validation"] = {label: scenarios.validation_speed(rsa_document(count, bits), seconds=settings.validate_s)
                             for label, count, bits in (("1 RSA-2048 key", 1, 2048), ("100 RSA-4096 keys", 100, 4096))}
    moto = Moto()
    try:
        with tempfile.TemporaryDirectory(prefix="jwksd-bench-") as tmp:
            work = Path(tmp)
            ready_proxy = Proxy(moto.endpoint).start()
            try:
                log(f"ready: {settings.ready_starts} starts")
                previous, current = split_stages(rsa_document(2, 2048))
                ready = scenarios.time_to_ready(work, endpoint=ready_proxy.endpoint,
                                                secret_id=moto.create(previous, current), starts=settings.ready_starts)
                results["ready_s"] = list(ready.samples_s)
            finally:
                ready_proxy.stop()
            results["chain"] = handler_chain(work, settings, args.before)
            results["throughput"] = throughput(work, moto, settings, loops, args.before)
            results["edge"] = edge_pair(work, moto, settings, default_loop)
            results["degraded"] = degraded(work, moto, settings, default_loop)
            results["soak"] = memory_and_calls(work, moto, settings, default_loop)
            results["signer"] = signing(work, moto, settings, args.quick)
    finally:
        moto.stop()
    results["elapsed_s"] = round(time.monotonic() - started)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / ("latest-quick.json" if args.quick else "latest.json")).write_text(json.dumps(results, indent=1))
    report.write(args.out, results)
    log(f"done in {results['elapsed_s']} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
