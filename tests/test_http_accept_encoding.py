"""Accept-Encoding (jwksd/http/accept_encoding.py): q=0 anywhere refuses a coding, bad weights refuse, * and case."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jwksd.http.accept_encoding import accepts_gzip, coding_weights
from tests.conftest import Secrets
from tests.daemon_helpers import JWKS, sm_config, start
from tests.keys import jwk_set, key
from tests.test_validate_properties import FUZZ


@pytest.mark.parametrize("header", [
    "gzip", "GZIP", "x-gzip", "X-Gzip", "*", "gzip;q=1", "gzip;q=1.000", "gzip;Q=0.5", "gzip ; q=0.001",
    "br;q=1, gzip;q=0.5", "gzip;level=1", 'gzip;note="a, b; q=0"', "*;q=0, gzip", "identity;q=0.5, gzip;q=0.5",
    "deflate, gzip, br, zstd", "gzip;q=0.8, identity;q=0.5, *;q=0", ", gzip ,", "gzip," + " " * 507,
])
def test_gzip_accepted(header: str) -> None:
    """gzip, x-gzip or * with a weight above 0 (and not below identity's) gets the gzip copy."""
    assert accepts_gzip(header)


@pytest.mark.parametrize(("header", "why"), [
    ("gzip;level=1;q=0", "q=0 after another parameter"),
    ("gzip;q=0;level=1", "q=0 before another parameter"),
    ("gzip;q=1;q=0", "q given twice, once 0"),
    ("GZIP;Q=0.000", "q=0 with three decimals, in upper case"),
    ("x-gzip;q=0", "x-gzip refused"),
    ("gzip;q=0, x-gzip", "one spelling of gzip refused"),
    ("gzip;q=0, *", "* does not cover a coding listed"),
    ("*;q=0", "everything refused"),
    ("*;q=0, identity", "everything but identity refused"),
    ("gzip;q=x", "q not a number"),
    ("gzip;q=2", "q above 1"),
    ("gzip;q=1.5", "q above 1"),
    ("gzip;q=-1", "q negative"),
    ("gzip;q=0.0001", "q with four decimals"),
    ("gzip;q=nan", "q NaN"),
    ("gzip;q=inf", "q infinite"),
    ('gzip;q="1"', "q quoted"),
    ("gzip;q=", "q empty"),
    ("gzip;level", "a parameter without a value"),
    ("gzip;q=0.5, identity", "identity weighs more"),
    ("gzip;q=0.5, *", "identity weighs more through *"),
    ("br, deflate", "gzip not listed"),
    ("identity", "gzip not listed"),
    ("", "empty header"),
    ("gzipped", "another coding"),
    ("gzip/1", "a malformed gzip element"),
    ("gzip," + " " * 508, "longer than 512 characters"),
])
def test_gzip_refused(header: str, why: str) -> None:
    """A header that refuses gzip in any way, or doubts it, gets the identity body."""
    assert not accepts_gzip(header), why


def test_coding_weights() -> None:
    """gzip, x-gzip, identity and * with their weights; a malformed element weighs 0; a repeat keeps the lower."""
    header = 'GZip;q=0.5, BR, *;q=0.1, identity;q=x, x-gzip;;, x;note="a,b", gzip;q=0.7, gzip/2'
    assert coding_weights(header) == {"gzip": 0.0, "*": 0.1, "identity": 0.0, "x-gzip": 0.0}
    assert coding_weights('gzip;note="a, b; q=0";q=0.25') == {"gzip": 0.25}


parameters = st.lists(st.tuples(st.sampled_from(["level", "foo", "Q", "q", "x"]),
                                st.sampled_from(["1", "0.5", "abc", '"q=0"', "0.25"])), max_size=3)


@FUZZ
@given(parameters, parameters, st.sampled_from(["gzip", "GZIP", "x-gzip", "*"]),
       st.sampled_from(["0", "0.0", "0.00", "0.000", "Q=0"]), st.lists(st.sampled_from(["br", "deflate"]), max_size=2))
def test_q_zero_anywhere_refuses(before: list[tuple[str, str]], after: list[tuple[str, str]], coding: str,
                                 zero: str, others: list[str]) -> None:
    """Whatever parameters surround it, a q of 0 in gzip's element means no gzip (for * when gzip is not listed)."""
    q = zero if zero.startswith("Q=") else f"q={zero}"
    element = ";".join([coding, *(f"{n}={v}" for n, v in before), q, *(f"{n}={v}" for n, v in after)])
    assert not accepts_gzip(", ".join([*others, element]))


@FUZZ
@given(st.text(max_size=60))
def test_any_header_answers(header: str) -> None:
    """Any header text gives an answer, never an exception (a request never fails on its Accept-Encoding)."""
    assert accepts_gzip(header) in (True, False)


async def test_http_q_zero_among_parameters(aiohttp_client: Any, secrets: Secrets) -> None:
    """Over HTTP, gzip;level=1;q=0 gets the identity body with the plain ETag, and gzip;level=1 gets gzip."""
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secrets.create(jwk_set(key(0)))))
    async with client.get(JWKS, headers={"Accept-Encoding": "identity"}, auto_decompress=False) as response:
        plain, plain_etag = await response.read(), response.headers["ETag"]
    async with client.get(JWKS, headers={"Accept-Encoding": "gzip;level=1;q=0"}, auto_decompress=False) as response:
        assert "Content-Encoding" not in response.headers
        assert (await response.read(), response.headers["ETag"]) == (plain, plain_etag)
    async with client.get(JWKS, headers={"Accept-Encoding": "gzip;level=1"}, auto_decompress=False) as response:
        assert response.headers["Content-Encoding"] == "gzip"
