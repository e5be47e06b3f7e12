"""The benchmark suite's machinery in a few seconds, so `make bench` cannot rot between full runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import contenders, report, scenarios
from bench.load import parse
from bench.source import Proxy
from tests.conftest import Secrets
from tests.keys import jwk_set, rsa_jwk, rsa_key


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[Proxy]:
    """The bench's counting proxy in front of the session's moto server."""
    proxy = Proxy(moto_endpoint).start()
    yield proxy
    proxy.stop()


def test_wrk_result_parsed() -> None:
    """The report script's line becomes req/s, milliseconds and one error count."""
    line = ('BENCH_RESULT {"requests": 500, "duration_us": 500000, "bytes": 1, "connect_errors": 0, "read_errors": 1, '
            '"write_errors": 0, "status_errors": 2, "timeouts": 0, "p50_us": 100, "p99_us": 900, "p999_us": 2500, '
            '"max_us": 3000}')
    run = parse(f"Running 1s test\n{line}\n")
    assert (run.rps, run.p50_ms, run.p99_ms, run.p999_ms, run.errors) == (1000.0, 0.1, 0.9, 2.5, 3)


def test_one_round_jwksd_and_bare(tmp_path: Path, proxy: Proxy, secrets: Secrets) -> None:
    """One short round against jwksd and the bare handler: same bytes, 200s and 304s, no errors, a table."""
    name = secrets.create(jwk_set(rsa_jwk(rsa_key(0), "previous")))
    secrets.put(name, jwk_set(rsa_jwk(rsa_key(1), "current")))
    jwksd = contenders.start_jwksd(tmp_path, name="jwksd-asyncio", endpoint=proxy.endpoint, secret_id=name,
                                   loop="asyncio")
    try:
        body, headers, etag = contenders.capture(jwksd, tmp_path)
        assert [key["kid"] for key in json.loads(body.read_bytes())["keys"]] == ["current", "previous"]
        bare = contenders.start_bare(tmp_path, body, headers, loop="asyncio")
        try:
            assert contenders.fetch(bare.url)[2] == body.read_bytes()
            cells, ratios = scenarios.matrix([(jwksd, bare)], {"jwksd-asyncio": etag, "bare-asyncio": etag},
                                             connections=(4,), rounds=1, duration_s=1, progress=lambda _: None)
        finally:
            bare.stop()
        served = scenarios.statuses(jwksd)
    finally:
        jwksd.stop()
    assert all(cell.runs[0].requests > 0 and cell.runs[0].errors == 0 for cell in cells.values())
    assert set(served) == {"200", "304"}
    assert proxy.get_secret_calls() == 2  # one refresh at start reads both stages, whatever the load
    assert sorted((r.a, r.b, r.status) for r in ratios.values()) == [("jwksd-asyncio", "bare-asyncio", "200"),
                                                                      ("jwksd-asyncio", "bare-asyncio", "304")]
    results = {"throughput": {"cells": report.cells_json(cells), "ratios": report.ratios_json(ratios),
                              "body_bytes": body.stat().st_size},
               "loops": ["asyncio"], "settings": {"connections": [4]}}
    table = "\n".join(report._throughput_table(results))
    assert "| bare-asyncio | 4 |" in table and "| jwksd-asyncio | 4 |" in table


def test_handler_chain_measured() -> None:
    """The handler-chain measurement runs jwksd's app in its own process and answers microseconds for 200 and 304."""
    from bench import chain

    result = chain.run("jwksd", None, iterations=200, repeats=1)
    assert set(result) == {"200", "304"} and all(value > 0 for value in result.values())


def test_edge_section_written_alone(tmp_path: Path) -> None:
    """`--only edge` results replace only the nginx block of BENCHMARKS.md and keep the rest of the file."""
    from bench import edge

    cells = [{"contender": name, "status": status, "connections": 1, "rps": rps, "p99_ms": 1.5}
             for status in ("200", "304") for name, rps in (("nginx-cache", 800.0), ("nginx", 1000.0))]
    results = {"quick": True, "settings": {"rounds": 1, "duration_s": 1, "connections": [1]},
               "machine": {"date": "today", "nginx": "nginx/1.22.1"},
               "edge": {"loop": "asyncio", "cells": cells, "upstream_requests": {"200": 1},
                        "ratios": [{"status": status, "connections": 1, "rps": 0.8} for status in ("200", "304")]}}
    out = tmp_path / "BENCHMARKS.md"
    out.write_text(f"# Benchmarks\n\nkept\n\n{report.BEGIN}\nmain tables\n{report.END}\n")
    report.write(out, results)
    text = out.read_text()
    assert f"{report.BEGIN}\nmain tables\n{report.END}" in text and "kept" in text
    assert "| 200 | 1 | 800 | 1,000 | 0.80x | 1.50 | 1.50 |" in text and text.rstrip().endswith(edge.END)
    report.write(out, results)
    assert out.read_text() == text


def test_signer_measured(tmp_path: Path, moto_endpoint: str) -> None:
    """One short round of the local ES256 signer: its tokens, the in-process and `keys sign` baselines, a table."""
    from bench import signer

    results = {"signer": signer.measure(tmp_path, moto_endpoint, rounds=1, duration_s=0.3, keys_sign_tokens=1,
                                        progress=lambda _: None, specs=signer.SIGNERS[:1]),
               "machine": {"date": "today"}, "settings": {"rounds": 1, "duration_s": 0.3}, "quick": True}
    (row,) = results["signer"]["rows"]
    runs = [*row["socket"], *row["paced"], *row["client"]]
    assert len(runs) == 3 and all(run["tokens"] > 0 and run["errors"] == 0 for run in runs)
    assert row["baseline"][0]["tokens"] > 0 and row["keys_sign"]["tokens"] == 1 and row["ratio"] > 0
    assert all(run["cpu_us_per_token"] > 0 for run in runs)
    section = signer.render_section(results)
    assert section.startswith(signer.BEGIN) and section.endswith(signer.END)
    assert "| local-ES256 | " in section and "in-process (cryptography)" in section
