"""BENCHMARKS.md: the machine, the targets and the tables, written between markers so prose around them stays."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BEGIN = "<!-- bench:begin: written by `make bench`; edit outside these markers -->"
END = "<!-- bench:end -->"
MIB = 1024


def _version(command: list[str]) -> str:
    if shutil.which(command[0]) is None and not Path(command[0]).exists():
        return "not installed"
    result = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    text = (result.stdout + result.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def _package(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, str]:
    """What the numbers were measured on: cores, CPU, memory, versions, and how busy the machine was."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    meminfo = Path("/proc/meminfo").read_text()
    total = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.MULTILINE)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nproc": str(os.cpu_count()),
        "cpu": model.group(1).strip() if model else "unknown",
        "memory": f"{int(total.group(1)) / 1024 / 1024:.1f} GiB" if total else "unknown",
        "kernel": platform.release(),
        "load_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "aiohttp": _package("aiohttp"),
        "uvloop": _package("uvloop"),
        "prometheus-client": _package("prometheus-client"),
        "nginx": _version([nginx, "-v"]).replace("nginx version: ", ""),
        "node": _version(["node", "--version"]),
        "wrk": _version(["wrk", "-v"]).split(" Copyright")[0],
    }


def cells_json(cells: Mapping[tuple[str, str, int], Any]) -> list[dict[str, Any]]:
    """The medians of every cell, and each round's req/s, as plain data for latest.json and the tables."""
    rows = []
    for cell in cells.values():
        summary = cell.summary()
        rows.append({"contender": cell.contender, "status": cell.status, "connections": cell.connections,
                     "rps": summary.rps, "p50_ms": summary.p50_ms, "p99_ms": summary.p99_ms,
                     "p999_ms": summary.p999_ms, "requests": summary.requests, "errors": summary.errors,
                     "rounds_rps": [round(run.rps) for run in cell.runs]})
    return rows


def ratios_json(ratios: Mapping[tuple[str, str, str, int], Any]) -> list[dict[str, Any]]:
    """The median of each pair's per-round ratios (a / b), and the ratios themselves."""
    return [{"a": r.a, "b": r.b, "status": r.status, "connections": r.connections,
             "rps": statistics.median(r.rps), "p99": statistics.median(r.p99), "p999": statistics.median(r.p999),
             "rounds_rps": [round(x, 3) for x in r.rps], "rounds_p99": [round(x, 3) for x in r.p99]}
            for r in ratios.values()]


def _pairs(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str, int], dict[str, Any]]:
    return {(row["a"], row["b"], row["status"], row["connections"]): row for row in rows}


def _index(rows: list[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    return {(row["contender"], row["status"], row["connections"]): row for row in rows}


def _ms(value: float) -> str:
    return f"{value:.2f}"


def _mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def targets(results: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """(target, what was measured, met) for each target of issue 6."""
    rows: list[tuple[str, str, bool]] = []
    pairs = _pairs(results["throughput"]["ratios"])
    conns = results["settings"]["connections"]
    for loop in results["loops"]:
        for status in ("200", "304"):
            ratios = {c: pairs[(f"jwksd-{loop}", f"bare-{loop}", status, c)]["rps"] for c in conns}
            shown = ", ".join(f"{r:.2f}x at {c}" for c, r in ratios.items())
            rows.append((f"jwksd {status} req/s ≥ 0.9 x bare aiohttp, both on {loop}", shown,
                         all(r >= 0.9 for r in ratios.values())))
    degraded = _index(results["degraded"]["cells"])
    degraded_pairs = _pairs(results["degraded"]["ratios"])
    for condition in ("slow", "down"):
        worst = max((degraded_pairs[(condition, "healthy", s, c)]["p99"], s, c) for s in ("200", "304") for c in conns)
        rows.append((f"p99 with the source {condition} ≤ 1.2 x healthy",
                     f"worst {worst[0]:.2f}x ({worst[1]} at {worst[2]} connections)", worst[0] <= 1.2))
    bad = _not_ok(results)
    rows.append(("no response other than 200/304", f"{bad} in {_served(results):,} requests", bad == 0))
    p999 = [degraded[("refresh-100", s, 16)]["p999_ms"] for s in ("200", "304")]
    rows.append(("p99.9 during a 100-key RSA-4096 refresh < 5 ms at 16 connections",
                 f"{_ms(p999[0])} ms (200), {_ms(p999[1])} ms (304)", max(p999) < 5))
    ready = results["ready_s"]
    rows.append(("ready (start to /readyz 200) < 1.5 s",
                 f"median {statistics.median(ready):.2f} s, max {max(ready):.2f} s", max(ready) < 1.5))
    soak = results["soak"]
    at_million = _rss_at(soak, 1_000_000)
    if at_million is not None:
        rows.append(("RSS < 80 MiB after a million requests", f"{at_million / MIB:.1f} MiB", at_million < 80 * MIB))
    growth = _growth_kib(soak)
    rows.append((f"RSS flat over the {soak['duration_s']:.0f} s run",
                 f"{growth / MIB:+.1f} MiB from {_growth_from(soak)} to the end", growth <= 2 * MIB))
    return rows


def _rss_at(soak: Mapping[str, Any], requests: int) -> int | None:
    return next((rss for _, count, rss in soak["rss_samples"] if count >= requests), None)


def _growth_from(soak: Mapping[str, Any]) -> str:
    return "the millionth request" if _rss_at(soak, 1_000_000) is not None else "the first sample after the window"


def _growth_kib(soak: Mapping[str, Any]) -> int:
    """RSS at the end minus RSS at the millionth request (or after the first window when fewer were served)."""
    samples = soak["rss_samples"]
    if not samples:
        return 0
    start = _rss_at(soak, 1_000_000)
    if start is None:
        start = next((rss for at, _, rss in samples if at >= soak["window_s"]), samples[0][2])
    return int(samples[-1][2] - start)


def _not_ok(results: Mapping[str, Any]) -> int:
    """Responses other than 200/304 by jwksd's own counters, plus every error wrk saw against jwksd."""
    counts = [*results["throughput"]["jwksd_statuses"].values(), *results["degraded"]["statuses"].values(),
              results["soak"]["statuses"]]
    bad = sum(int(n) for c in counts for status, n in c.items() if status not in ("200", "304"))
    wrk_errors = sum(row["errors"] for row in results["throughput"]["cells"] if row["contender"].startswith("jwksd"))
    wrk_errors += sum(row["errors"] for row in results["degraded"]["cells"]) + results["soak"]["errors"]
    return bad + wrk_errors


def _served(results: Mapping[str, Any]) -> int:
    counts = [*results["throughput"]["jwksd_statuses"].values(), *results["degraded"]["statuses"].values(),
              results["soak"]["statuses"]]
    return int(sum(n for c in counts for n in c.values()))


def _command(results: Mapping[str, Any]) -> str:
    before = results["throughput"].get("before")
    return f"make bench BENCH_ARGS='--before {before}'" if before else "make bench"


def render(results: Mapping[str, Any]) -> str:
    """The generated part of BENCHMARKS.md."""
    m = results["machine"]
    settings = results["settings"]
    mode = "quick (`BENCH_QUICK=1`)" if results["quick"] else "full"
    out = [BEGIN, "", "## Machine and command", "",
           f"Measured {m['date']} by `make bench` ({mode} run, {results['elapsed_s'] / 60:.1f} min): "
           f"{settings['rounds']} round(s) of {settings['duration_s']:g} s per cell, contenders alternated, "
           "medians reported. Everything on 127.0.0.1; wrk with one thread, so the server has the other core.",
           "", "| nproc | CPU | memory | kernel | load at start | Python | aiohttp | uvloop | nginx | Node.js | wrk |",
           "|---|---|---|---|---|---|---|---|---|---|---|",
           f"| {m['nproc']} | {m['cpu']} | {m['memory']} | {m['kernel']} | {m['load_at_start']} | {m['python']} | "
           f"{m['aiohttp']} | {m['uvloop']} | {m['nginx']} | {m['node']} | {m['wrk']} |", "",
           f"Reproduce: `{_command(results)}` (about 20 minutes; `BENCH_QUICK=1 make bench` for a 3-minute look). "
           "Raw numbers: `bench/results/latest.json`.", "",
           "## Targets", "", "| target | measured | |", "|---|---|---|"]
    out += [f"| {name} | {measured} | {_mark(ok)} |" for name, measured, ok in targets(results)]
    out += ["", *_chain_table(results), "",
            *_throughput_table(results), "", *_degraded_table(results), "", *_calls_table(results), "",
            *_memory_table(results), "", "## Validation speed", "",
            "jwksd's validator in one process (the daemon runs it in a worker thread), every rule applied.", "",
            "| document | documents/s | ms each |", "|---|---|---|"]
    out += [f"| {label} | {per_s:,.0f} | {ms:.2f} |" for label, (per_s, ms) in results["validation"].items()]
    out += ["", END]
    return "\n".join(out)


def _chain_table(results: Mapping[str, Any]) -> list[str]:
    chain = results.get("chain")
    if not chain:
        return []
    bare = chain["bare"]
    out = ["## The request path alone", "",
           "Microseconds per request through routing, accounting, the handler and the Response, without sockets "
           "(`bench/chain.py`: aiohttp's `Application._handle` on a prepared request, each tree in its own "
           "process, medians). The rest of a request (parsing, the socket write, the event loop) is the same "
           "aiohttp code for every Python contender.", "",
           "| request path | 200 µs | 304 µs | over bare: 200 | over bare: 304 |", "|---|---|---|---|---|"]
    names = {"bare": "bare aiohttp handler", "jwksd": "jwksd"}
    if "jwksd-before" in chain:
        names["jwksd-before"] = f"jwksd before (`{results['throughput'].get('before')}`)"
    for key, label in names.items():
        row = chain[key]
        out.append(f"| {label} | {row['200']:.1f} | {row['304']:.1f} | {row['200'] - bare['200']:+.1f} | "
                   f"{row['304'] - bare['304']:+.1f} |")
    return out


def _throughput_table(results: Mapping[str, Any]) -> list[str]:
    cells = _index(results["throughput"]["cells"])
    pairs = _pairs(results["throughput"]["ratios"])
    default = f"jwksd-{results['loops'][-1]}"
    names = sorted({row["contender"] for row in results["throughput"]["cells"]},
                   key=lambda n: (not n.startswith("jwksd"), not n.startswith("bare"), n))
    before = results["throughput"].get("before")
    out = ["## Throughput and latency, source healthy", "",
           f"The same {results['throughput']['body_bytes']}-byte JWKS (two RSA-2048 keys) and the same headers from "
           "every contender; req/s and latency are medians over the rounds. *jwksd ÷ this* is the median, over "
           "the rounds, of jwksd's req/s divided by this contender's measured just before or after it (pairs run "
           "back to back, order alternating), with jwksd on the same event loop for the bare handler, "
           f"and with `{default}` for nginx and Node"
           + (f" and for `jwksd-before`, jwksd as of commit `{before}`, the request path before it was "
              "optimised." if before else "."), ""]
    for status in ("200", "304"):
        out += [f"**{status}**{' (If-None-Match)' if status == '304' else ''}", "",
                "| contender | connections | req/s | p50 ms | p99 ms | p99.9 ms | jwksd ÷ this |",
                "|---|---|---|---|---|---|---|"]
        for conns in results["settings"]["connections"]:
            for name in names:
                row = cells[(name, status, conns)]
                if name.startswith("jwksd") and name != "jwksd-before":
                    ratio = "—"
                else:
                    ref = f"jwksd-{name.removeprefix('bare-')}" if name.startswith("bare-") else default
                    ratio = f"{pairs[(ref, name, status, conns)]['rps']:.2f}x"
                out.append(f"| {name} | {conns} | {row['rps']:,.0f} | {_ms(row['p50_ms'])} | {_ms(row['p99_ms'])} | "
                           f"{_ms(row['p999_ms'])} | {ratio} |")
        out.append("")
    return out


def _degraded_table(results: Mapping[str, Any]) -> list[str]:
    d = results["degraded"]
    cells = _index(d["cells"])
    pairs = _pairs(d["ratios"])
    out = ["## While the source is slow, down, or a 100-key document is validated", "",
           f"One jwksd ({d['loop']}) per condition; while each is measured a refresh is forced every "
           f"{results['settings']['pulse_s']:g} s (SIGUSR1). *slow*: every Secrets Manager call takes 3 s. "
           "*down*: every call gets 503 (retried with backoff). *refresh-100*: AWSCURRENT and AWSPREVIOUS each hold "
           f"100 RSA-4096 keys ({d['big_document_bytes']:,} bytes) and the served set changes on every refresh, so "
           "each one validates 200 keys, merges, re-serialises and gzips. Each condition runs back to back with "
           "the healthy one; *÷ healthy* is the median of those pairs' ratios.", "",
           "| condition | status | connections | req/s | p50 ms | p99 ms | p99.9 ms | p99 ÷ healthy | p99.9 ÷ healthy "
           "| not 200/304 |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for status in ("200", "304"):
        for conns in results["settings"]["connections"]:
            for condition in ("healthy", "slow", "down", "refresh-100"):
                row = cells[(condition, status, conns)]
                pair = pairs.get((condition, "healthy", status, conns))
                p99 = f"{pair['p99']:.2f}x" if pair else "—"
                p999 = f"{pair['p999']:.2f}x" if pair else "—"
                bad = sum(int(n) for s, n in d["statuses"][condition].items() if s not in ("200", "304"))
                out.append(f"| {condition} | {status} | {conns} | {row['rps']:,.0f} | {_ms(row['p50_ms'])} | "
                           f"{_ms(row['p99_ms'])} | {_ms(row['p999_ms'])} | {p99} | {p999} | {bad + row['errors']} |")
    calls = d["aws_calls"]
    out += ["", "GetSecretValue calls seen at each proxy during those runs: "
            + ", ".join(f"{name} {count}" for name, count in calls.items()) + "."]
    return out


def _calls_table(results: Mapping[str, Any]) -> list[str]:
    s = results["soak"]
    per_refresh = s["aws_calls_window"] / s["refreshes_window"] if s["refreshes_window"] else 0
    per_million = s["aws_calls_window"] / s["requests_window"] * 1e6 if s["requests_window"] else 0
    return ["## AWS calls under load", "",
            f"jwksd ({s['loop']}) refreshing every {s['interval_s']} s (±10%) under wrk at full speed; calls counted "
            "at the proxy in front of moto, so every call that left jwksd is seen. Each refresh reads two stages "
            "(AWSCURRENT and AWSPREVIOUS): two calls.", "",
            "| window | requests served | refreshes | GetSecretValue calls | calls per refresh "
            "| calls per million requests |",
            "|---|---|---|---|---|---|",
            f"| first {s['window_s']:g} s | {s['requests_window']:,} | {s['refreshes_window']} | "
            f"{s['aws_calls_window']} | "
            f"{per_refresh:.1f} | {per_million:.1f} |"]


def _memory_table(results: Mapping[str, Any]) -> list[str]:
    s = results["soak"]
    ready = results["ready_s"]
    at_million = _rss_at(s, 1_000_000)
    samples = s["rss_samples"]
    step = max(1, len(samples) // 10)
    trace = ", ".join(f"{at:.0f} s {rss / MIB:.1f}" for at, _, rss in samples[::step])
    return ["## Start-up and memory", "",
            "| ready: median (range) | RSS idle | peak RSS | RSS after 1M requests | RSS at the end | requests "
            "| req/s |",
            "|---|---|---|---|---|---|---|",
            f"| {statistics.median(ready):.2f} s ({min(ready):.2f}-{max(ready):.2f}, {len(ready)} starts) | "
            f"{s['start_kib'] / MIB:.1f} MiB | {s['peak_kib'] / MIB:.1f} MiB | "
            f"{f'{at_million / MIB:.1f} MiB' if at_million else 'fewer than 1M served'} | "
            f"{samples[-1][2] / MIB if samples else 0:.1f} MiB | {s['requests']:,} | {s['rps']:,.0f} |", "",
            f"RSS over the run (MiB): {trace}."]


def write(path: Path, results: Mapping[str, Any]) -> None:
    """Replace the generated parts of ``path`` that ``results`` has (or create the file with a title around them).

    A full run writes every block; ``--only edge`` only the nginx one, ``--only signer`` only the signer's.
    """
    from bench import edge, signer

    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if "throughput" in results:
        text = _replace(text, BEGIN, END, render(results))
    if "edge" in results:
        text = _replace(text, edge.BEGIN, edge.END, edge.render_section(results))
    if "signer" in results:
        text = _replace(text, signer.BEGIN, signer.END, signer.render_section(results))
    path.write_text(text)


def _replace(text: str, begin: str, end: str, generated: str) -> str:
    """``text`` with what lies between ``begin`` and ``end`` (both included) replaced; appended when absent."""
    if begin not in text or end not in text:
        text = text.rstrip("\n") + "\n\n" + begin + "\n" + end + "\n"
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    return head + generated + tail
