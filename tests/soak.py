"""The soak: a real jwksd under full load while its secret rotates and AWS misbehaves at random.

``make soak DURATION=300`` (tests/test_soak.py runs 30 s of it). One process drives everything:

- a moto server, and the fault proxy (tests/fault_proxy.py) between it and jwksd, injecting a
  random fault for a moment every few seconds;
- a rotator putting a new ES256 key as AWSCURRENT every ``rotate_s`` (the old one becomes AWSPREVIOUS);
- a verifier signing tokens with every key that has been published (seen served) and is still in
  the secret, verifying each with PyJWT's PyJWKClient (no cache) against the served set; a token
  whose key rotated out while it was being checked is not counted either way;
- a second process (``--load``) sending GETs at full speed, half of them conditional.

Pass: no failed verification, only 200 and 304, no error log line but the injected faults', and
VmRSS at the end within a small slack of VmRSS after warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt as pyjwt
from moto.server import ThreadedMotoServer

from tests.conftest import Secrets
from tests.daemon_process import JWKS, Daemon
from tests.fault_proxy import FaultProxy, start_proxy
from tests.keys import jwk_set
from tests.signing import SigningKey, signing_key

# ResourceNotFound is left out: injected on AWSPREVIOUS alone it would truthfully tell jwksd that
# the previous key is gone (a missing AWSPREVIOUS is normal), so its tokens would rightly fail.
SOAK_FAULTS = ("http_500", "http_503", "throttling", "access_denied", "latency", "reset", "truncated", "endless")
LOUD_CODES = {"access_denied": "AccessDeniedException"}  # injected faults jwksd rightly logs as errors
RSS_SLACK_KB = 8 * 1024
LOAD_CONNECTIONS = 8


@dataclass
class Keys:
    """The keys in the secret (AWSCURRENT, AWSPREVIOUS) and a generation bumped by each rotation."""

    live: dict[str, SigningKey]
    generation: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> tuple[int, dict[str, SigningKey]]:
        with self.lock:
            return self.generation, dict(self.live)


@dataclass
class Tally:
    """What the verifier saw."""

    verified: int = 0
    failed: list[str] = field(default_factory=list)
    indeterminate: int = 0
    rotations: int = 0


def rotate_forever(secrets: Secrets, secret: str, keys: Keys, tally: Tally, *, rotate_s: float,
                   stop: threading.Event) -> None:
    while not stop.wait(rotate_s):
        tally.rotations += 1
        new = signing_key("ES256", f"soak-{tally.rotations}")
        with keys.lock:
            current = max(keys.live.values(), key=lambda k: int(k.kid.split("-")[1]))
            secrets.put(secret, jwk_set(new.jwk))
            keys.live = {new.kid: new, current.kid: current}
            keys.generation += 1


def verify_forever(url: str, keys: Keys, tally: Tally, stop: threading.Event) -> None:
    published: set[str] = set()
    while not stop.is_set():
        generation, live = keys.snapshot()
        try:
            served = {key.key_id for key in
                      pyjwt.PyJWKClient(url, cache_jwk_set=False, cache_keys=False, timeout=5).get_signing_keys()}
        except pyjwt.PyJWTError as exc:  # jwksd did not answer with a usable set: always a failure
            tally.failed.append(f"fetch: {type(exc).__name__}: {exc}")
            continue
        published |= served & set(live)
        for kid in sorted(published & set(live)):
            token = live[kid].sign()
            client = pyjwt.PyJWKClient(url, cache_jwk_set=False, cache_keys=False, timeout=5)
            try:
                pyjwt.decode(token, client.get_signing_key_from_jwt(token).key, algorithms=["ES256"])
                error = ""
            except pyjwt.PyJWTError as exc:
                error = f"{kid}: {type(exc).__name__}: {exc}"
            if keys.snapshot()[0] != generation:
                tally.indeterminate += 1  # rotated while checking: the key may rightly have left
            elif error:
                tally.failed.append(error)
            else:
                tally.verified += 1


async def inject_faults(proxy: FaultProxy, rng: random.Random, injected: set[str], deadline: float) -> None:
    while time.monotonic() < deadline - 3:
        await asyncio.sleep(rng.uniform(1.0, 3.0))
        fault = rng.choice(SOAK_FAULTS)
        injected.add(fault)
        proxy.fault = fault
        await asyncio.sleep(rng.uniform(0.3, 1.5))
        proxy.fault = None


def unexpected_errors(daemon: Daemon, injected: set[str]) -> list[str]:
    """Error log lines (JSON or not) that no injected fault explains."""
    allowed = {LOUD_CODES[f] for f in injected if f in LOUD_CODES}
    problems = []
    for line in daemon.log_path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            if "Traceback" in line or "ERROR" in line:
                problems.append(line)
            continue
        event = json.loads(line)
        if event.get("level") == "error" and not (event.get("event") == "aws_error" and event.get("code") in allowed):
            problems.append(line)
    return problems


async def soak(duration_s: float, workdir: Path, *, rotate_s: float = 3.0, seed: int = 1) -> dict[str, Any]:
    """Run the soak for ``duration_s`` seconds; the measurements, and ``problems`` (empty when it passed)."""
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    secrets = Secrets(f"http://{host}:{port}")
    first = signing_key("ES256", "soak-0")
    secret = secrets.create(jwk_set(first.jwk))
    proxy = await start_proxy(secrets.endpoint, latency_s=1.0, endless_s=3.0)
    keys, tally, injected, stop = Keys({first.kid: first}), Tally(), set[str](), threading.Event()
    sections = {
        "source": {"secret_id": secret, "max_retries": 2, "connect_timeout_s": 0.5, "read_timeout_s": 0.5,
                   "retry_base_s": 0.05, "retry_cap_s": 0.2},
        "refresh": {"interval_s": 1.0, "max_age_s": 30, "retry_base_s": 0.1, "retry_cap_s": 1.0},
        "log": {"level": "info"},
    }
    # The proxy runs on this loop: start (and wait for) the daemon on a thread.
    daemon = await asyncio.to_thread(Daemon.from_toml, workdir, sections, endpoint=proxy.url)
    try:
        url = daemon.url(JWKS)
        deadline = time.monotonic() + duration_s
        load = subprocess.Popen([sys.executable, "-m", "tests.soak", "--load", url, "--duration", str(duration_s)],
                                stdout=subprocess.PIPE, text=True)
        threads = [threading.Thread(target=rotate_forever, args=(secrets, secret, keys, tally),
                                    kwargs={"rotate_s": rotate_s, "stop": stop}),
                   threading.Thread(target=verify_forever, args=(url, keys, tally, stop))]
        for thread in threads:
            thread.start()
        faults = asyncio.create_task(inject_faults(proxy, random.Random(seed), injected, deadline))
        await asyncio.sleep(min(5.0, duration_s / 5))  # warm-up: caches, pools, the first rotations
        rss_start = daemon.rss_kb()
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        rss_end = daemon.rss_kb()
        stop.set()
        await faults
        for thread in threads:
            await asyncio.to_thread(thread.join, 30)
        out, _ = await asyncio.to_thread(load.communicate, timeout=60)
        statuses: dict[str, int] = json.loads(out)
        exit_code = await asyncio.to_thread(daemon.stop)
    finally:
        stop.set()
        await asyncio.to_thread(daemon.stop)
        await proxy.close()
        moto.stop()
    problems = [f"verification failed: {failure}" for failure in tally.failed[:10]]
    if tally.verified == 0:
        problems.append("no token was verified")
    problems += [f"{count} responses {status}" for status, count in statuses.items() if status not in ("200", "304")]
    problems += [f"error log line: {line[:300]}" for line in unexpected_errors(daemon, injected)[:10]]
    if rss_end - rss_start > max(RSS_SLACK_KB, rss_start // 10):
        problems.append(f"VmRSS grew from {rss_start} kB to {rss_end} kB")
    if exit_code != 0:
        problems.append(f"jwksd exited {exit_code} on SIGTERM")
    return {"duration_s": duration_s, "requests": statuses, "verified": tally.verified,
            "indeterminate": tally.indeterminate, "failed_verifications": len(tally.failed),
            "rotations": tally.rotations, "faults_injected": sorted(injected),
            "aws_attempts": len(proxy.attempts), "faulted_attempts": len(proxy.faulted()),
            "rss_kb": [rss_start, rss_end], "problems": problems}


async def load(url: str, duration_s: float) -> dict[str, int]:
    """GETs at full speed over a few keep-alive connections, every other one conditional; counts by status."""
    import aiohttp

    counts: dict[str, int] = {}
    deadline = time.monotonic() + duration_s
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=LOAD_CONNECTIONS),
                                     timeout=aiohttp.ClientTimeout(total=10)) as session:
        async def worker() -> None:
            etag, n = "", 0
            while time.monotonic() < deadline:
                n += 1
                headers = {"If-None-Match": etag} if etag and n % 2 else {}
                try:
                    async with session.get(url, headers=headers) as response:
                        await response.read()
                        etag = response.headers.get("ETag", etag)
                        status = str(response.status)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    status = type(exc).__name__
                counts[status] = counts.get(status, 0) + 1

        await asyncio.gather(*(worker() for _ in range(LOAD_CONNECTIONS)))
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load (default 300)")
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)  # the load process itself
    args = parser.parse_args()
    if args.load:
        print(json.dumps(asyncio.run(load(args.load, args.duration))))
        return 0
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's access log, one line per AWS call
    with tempfile.TemporaryDirectory(prefix="jwksd-soak-") as workdir:
        result = asyncio.run(soak(args.duration, Path(workdir)))
    print(json.dumps(result, indent=2))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
