"""`jwksd signer` in the bench: tokens per second and p99 over its socket, against signing in-process and
against ``jwksd keys sign`` (a process per token), for the local backend (ES256, RS256) and KMS on moto.

Each registry is made the way an operator makes one (``jwksd keys init-table``, ``keys rotate``, and a
second ``rotate --clock-override`` a day ahead to activate the key), the signer is the real command on a
socket of its own, and every load runs in its own process (``bench/signer_load.py``). Pairs run back to
back, order alternating by round; ratios are medians of the pairs'. Written to its own block of
BENCHMARKS.md (``render_section``); ``BENCH_ARGS='--only signer' make bench`` runs only this.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench.source import CREDENTIALS, REGION

ROOT = Path(__file__).resolve().parent.parent
CALLERS = 16

TARGET_LABEL, TARGET_TOKENS_S, TARGET_P99_MS = "local-ES256", 2000, 5.0  # at 16 callers (issue 14)


@dataclass(frozen=True)
class Spec:
    """One signer measured: its registry's backend, key spec and algorithm."""

    label: str
    backend: str
    key_spec: str
    alg: str


SIGNERS = (Spec("local-ES256", "local", "ECC_NIST_P256", "ES256"), Spec("local-RS256", "local", "RSA_2048", "RS256"),
           Spec("kms-ES256", "kms", "ECC_NIST_P256", "ES256"))


@dataclass(frozen=True)
class Signer:
    """A running ``jwksd signer`` and the config it was started with."""

    label: str
    alg: str
    config: Path
    socket: Path
    process: subprocess.Popen[bytes]


def env() -> dict[str, str]:
    """The environment of every jwksd command here: dummy credentials, no metadata service, JSON logs."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/"), **CREDENTIALS,
            "AWS_EC2_METADATA_DISABLED": "true", "JWKSD_LOG_FORMAT": "json"}


def jwksd(*argv: str, timeout_s: float = 120) -> str:
    """Run ``jwksd ARGV`` to completion; its stdout (a failure raises with its stderr)."""
    result = subprocess.run([sys.executable, "-m", "jwksd", *argv], env=env(), cwd=ROOT, capture_output=True,
                            text=True, timeout=timeout_s, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"jwksd {' '.join(argv)}: exit {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result.stdout


def write_config(work: Path, spec: Spec, endpoint: str) -> Path:
    """The signer's TOML: [rotation] on moto with a table of its own, [signer] on a socket in ``work``."""
    name = f"bench-{spec.label.lower()}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    home = work / spec.label
    home.mkdir(parents=True, exist_ok=True)
    config = home / "signer.toml"
    config.write_text(f"""[rotation]
table = "{name}"
backend = "{spec.backend}"
private_secret_prefix = "jwksd-bench/{name}"
key_spec = "{spec.key_spec}"
alg = "{spec.alg}"
region = "{REGION}"
endpoint_url = "{endpoint}"

[signer]
socket = "{home / 'signer.sock'}"
metrics_listen = "off"
""")
    return config


def make_registry(config: Path) -> None:
    """Table, a first key, and that key activated by a rotation a day ahead (``--clock-override``, as in a drill)."""
    jwksd("keys", "init-table", "--config", str(config))
    jwksd("keys", "rotate", "--config", str(config))
    ahead = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))
    jwksd("keys", "rotate", "--config", str(config), "--clock-override", "--now", ahead)


def active_key_ref(config: Path) -> str:
    """The active key's ``key_ref`` (its KMS ARN), from ``jwksd keys list --json``."""
    records = json.loads(jwksd("keys", "list", "--json", "--config", str(config)))
    (ref,) = [record["key_ref"] for record in records if record["status"] == "active"]
    return str(ref)


def readyz(path: Path) -> int:
    """The status of ``GET /readyz`` on the signer's socket (0 when nothing answers)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(2)
        try:
            sock.connect(str(path))
            sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: signer\r\nConnection: close\r\n\r\n")
            return int(sock.recv(64).split(b" ", 2)[1])
        except (OSError, ValueError, IndexError):
            return 0


@contextmanager
def running(work: Path, spec: Spec, endpoint: str) -> Iterator[Signer]:
    """A registry with an active key and a signer on it, ready; stopped on the way out."""
    config = write_config(work, spec, endpoint)
    make_registry(config)
    with (config.parent / "signer.log").open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "jwksd", "signer", "--config", str(config)], env=env(),
                                   cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    signer = Signer(spec.label, spec.alg, config, config.parent / "signer.sock", process)
    try:
        deadline = time.monotonic() + 60
        while readyz(signer.socket) != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                log = (config.parent / "signer.log").read_text()[-2000:]
                raise RuntimeError(f"signer {spec.label} not ready within 60 s: {log}")
            time.sleep(0.05)
        yield signer
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds ``pid`` has used (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def on_signer(signer: Signer, mode: str, *args: str, duration_s: float) -> dict[str, Any]:
    """A load on ``signer``, with the signer's own CPU time per token (the machine's load does not inflate it much,
    unlike tokens/s) and the 1-minute load average when it started."""
    before, loadavg = cpu_s(signer.process.pid), os.getloadavg()[0]
    summary = load(mode, "--socket", str(signer.socket), *args, duration_s=duration_s)
    spent = cpu_s(signer.process.pid) - before
    return {**summary, "cpu_us_per_token": spent / max(1, summary["tokens"]) * 1e6, "loadavg": loadavg}


def load(mode: str, *args: str, duration_s: float) -> dict[str, Any]:
    """One run of ``bench/signer_load.py``; its summary."""
    result = subprocess.run([sys.executable, "-m", "bench.signer_load", mode, *args, "--duration-s", str(duration_s),
                             "--connections", str(CALLERS)], env={**env(), "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                            capture_output=True, text=True, timeout=duration_s + 120, check=False)
    line = next((line for line in result.stdout.splitlines() if line.startswith("SIGNER_LOAD ")), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"signer_load {mode}: exit {result.returncode}: {result.stderr.strip()[-2000:]}")
    summary: dict[str, Any] = json.loads(line.removeprefix("SIGNER_LOAD "))
    return summary


def keys_sign(config: Path, tokens: int) -> dict[str, Any]:
    """``jwksd keys sign`` run ``tokens`` times, one after another: a process, a Scan and a signature each."""
    seconds = []
    for _ in range(tokens):
        started = time.monotonic()
        jwksd("keys", "sign", "--config", str(config), "--claims", '{"sub": "bench"}', "--ttl-s", "300")
        seconds.append(time.monotonic() - started)
    return {"tokens": tokens, "tokens_s": tokens / sum(seconds), "p50_ms": statistics.median(seconds) * 1000,
            "max_ms": max(seconds) * 1000}


def pairs(first: Callable[[], dict[str, Any]], second: Callable[[], dict[str, Any]], rounds: int
          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``rounds`` runs of each, back to back, the order alternating."""
    a, b = [], []
    for index in range(rounds):
        if index % 2:
            b.append(second())
            a.append(first())
        else:
            a.append(first())
            b.append(second())
    return a, b


def measure(work: Path, endpoint: str, *, rounds: int, duration_s: float, keys_sign_tokens: int,
            progress: Callable[[str], None], specs: tuple[Spec, ...] = SIGNERS) -> dict[str, Any]:
    """Each signer's runs, its baseline's and the ``keys sign`` figures (the ``signer`` entry of the results)."""
    rows = []
    for spec in specs:
        progress(f"signer: {spec.label}: registry, signer, {rounds} rounds of {duration_s:g} s at {CALLERS} callers")
        with running(work, spec, endpoint) as signer:
            rows.append(measure_one(signer, spec, endpoint, rounds=rounds, duration_s=duration_s,
                                    keys_sign_tokens=keys_sign_tokens))
        ours, theirs = rows[-1]["socket"], rows[-1]["baseline"]
        progress(f"signer: {spec.label}: {median(ours, 'tokens_s'):,.0f} tokens/s, p99 {median(ours, 'p99_ms'):.2f} "
                 f"ms; {rows[-1]['baseline_name']} {median(theirs, 'tokens_s'):,.0f} tokens/s")
    return {"callers": CALLERS, "rows": rows}


def measure_one(signer: Signer, spec: Spec, endpoint: str, *, rounds: int, duration_s: float,
                keys_sign_tokens: int) -> dict[str, Any]:
    """One signer against its baseline, round by round; the client's and ``keys sign``'s figures for local ones."""
    over_socket = partial(on_signer, signer, "socket", duration_s=duration_s)
    if spec.backend == "local":
        baseline_name = "in-process (cryptography)"
        baseline = partial(load, "inprocess", "--alg", spec.alg, duration_s=duration_s)
    else:
        baseline_name = "KMS Sign called directly (moto)"
        baseline = partial(load, "kms", "--endpoint", endpoint, "--key-id", active_key_ref(signer.config),
                           duration_s=duration_s)
    ours, theirs = pairs(over_socket, baseline, rounds)
    target = spec.label == TARGET_LABEL
    paced = [on_signer(signer, "socket", "--rate", str(TARGET_TOKENS_S), duration_s=duration_s)
             for _ in range(rounds)] if target else []
    client = [on_signer(signer, "client", duration_s=duration_s)] if target else []
    return {"label": spec.label, "alg": spec.alg, "backend": spec.backend, "socket": ours, "baseline": theirs,
            "baseline_name": baseline_name, "client": client, "paced": paced,
            "keys_sign": keys_sign(signer.config, keys_sign_tokens) if spec.backend == "local" else None,
            "ratio": statistics.median(o["tokens_s"] / t["tokens_s"] for o, t in zip(ours, theirs, strict=True))}


def median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


BEGIN = "<!-- bench:signer:begin: written by `make bench` (or BENCH_ARGS='--only signer'); edit outside -->"
END = "<!-- bench:signer:end -->"


def targets_met(results: Mapping[str, Any]) -> tuple[bool, bool]:
    """Whether local ES256 reached 2,000 tokens/s back to back, and answered with a p99 under 5 ms when 2,000
    tokens/s were offered (medians of the rounds)."""
    (row,) = [row for row in results["signer"]["rows"] if row["label"] == TARGET_LABEL]
    return median(row["socket"], "tokens_s") >= TARGET_TOKENS_S, median(row["paced"], "p99_ms") < TARGET_P99_MS


def render_section(results: Mapping[str, Any]) -> str:
    """The BENCHMARKS.md block of the signer: one row per backend and algorithm, then the target."""
    s, m, settings = results["signer"], results["machine"], results["settings"]
    loads = [run["loadavg"] for row in s["rows"] for run in row["socket"]]
    out = [BEGIN, "", "## jwksd signer: tokens over its socket", "",
           f"Measured {m['date']} ({'quick' if results['quick'] else 'full'} settings: {settings['rounds']} "
           f"round(s) of {settings['duration_s']:g} s per cell), {s['callers']} callers, each on a keep-alive "
           "connection to the signer's Unix socket posting `/v1/sign` (3 claims, `ttl_s` 300) back to back from a "
           "process of its own. *baseline* is the same token signed with `cryptography` in one process, one after "
           "another (local backend), or KMS `Sign` called directly on the same moto, 16 at a time (KMS backend); "
           "the ratio is the median of the pairs'. `jwksd keys sign` is a process per token. *signer CPU* is the "
           "signer process's user and system time over the tokens it signed: 1,000,000 ÷ it is what one core "
           "could sign with nothing else running. The 1-minute load average of this shared machine was "
           f"{min(loads):.1f}-{max(loads):.1f} during the runs.", "",
           "| signer | tokens/s | p50 ms | p99 ms | errors | signer CPU µs/token | baseline | baseline tokens/s "
           "| signer ÷ baseline | `jwksd keys sign` tokens/s (s each) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for row in s["rows"]:
        ours, theirs, process = row["socket"], row["baseline"], row["keys_sign"]
        out.append(f"| {row['label']} | {median(ours, 'tokens_s'):,.0f} | {median(ours, 'p50_ms'):.2f} | "
                   f"{median(ours, 'p99_ms'):.2f} | {sum(run['errors'] for run in ours)} | "
                   f"{median(ours, 'cpu_us_per_token'):,.0f} | {row['baseline_name']} | "
                   f"{median(theirs, 'tokens_s'):,.0f} | {row['ratio']:.2f}x | "
                   + (f"{process['tokens_s']:.2f} ({process['p50_ms'] / 1000:.1f} s)" if process else "-") + " |")
    for row in s["rows"]:
        for run in row["client"]:
            out += ["", f"Through `jwksd.signer_client.SignerClient` (aiohttp, one client shared by {s['callers']} "
                        f"tasks) the {row['label']} signer gave {run['tokens_s']:,.0f} tokens/s, p99 "
                        f"{run['p99_ms']:.2f} ms: the rest is the Python client's own cost."]
    (target,) = [row for row in s["rows"] if row["label"] == TARGET_LABEL]
    paced = target["paced"]
    out += ["", f"Offered {TARGET_TOKENS_S:,} tokens/s on a fixed schedule ({s['callers']} callers, latency counted "
                f"from each call's scheduled start), the {TARGET_LABEL} signer delivered "
                f"{median(paced, 'tokens_s'):,.0f} tokens/s with p50 {median(paced, 'p50_ms'):.2f} ms and p99 "
                f"{median(paced, 'p99_ms'):.2f} ms (rounds: "
                + ", ".join(f"{run['p99_ms']:.2f}" for run in paced) + " ms)."]
    rate, p99 = targets_met(results)
    out += ["", f"Target ({TARGET_LABEL}, {s['callers']} callers, this 2-core machine): at least "
                f"{TARGET_TOKENS_S:,} tokens/s {'met' if rate else 'NOT met'}; p99 under {TARGET_P99_MS:g} ms at "
                f"{TARGET_TOKENS_S:,} tokens/s {'met' if p99 else 'NOT met'}.", "", END]
    return "\n".join(out)
