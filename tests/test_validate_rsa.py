"""The small-factor rule for RSA moduli (jwksd/validate/rsa.py): no prime factor below 10,000."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from jwksd.validate.rsa import SMALL_PRIMES, small_factors
from tests.test_validate_jwk import check, dropped, rsa_entry, served
from tests.test_validate_properties import FUZZ

# Independent of jwksd: trial division.
PRIMES_BELOW_10000 = [n for n in range(2, 10000) if all(n % d for d in range(2, int(n**0.5) + 1))]


@pytest.fixture(scope="module")
def primes() -> tuple[int, int]:
    """Two real 1024-bit RSA primes: their product is a real modulus."""
    numbers = rsa.generate_private_key(65537, 2048).private_numbers()
    return numbers.p, numbers.q


def test_small_primes_are_the_primes_below_10000() -> None:
    """The table is every prime below 10,000 (1229 of them, up to 9973) and nothing else."""
    assert list(SMALL_PRIMES) == PRIMES_BELOW_10000
    assert (len(SMALL_PRIMES), SMALL_PRIMES[-1]) == (1229, 9973)


@pytest.mark.parametrize("factor", [3, 5, 7, 9973])
def test_rsa_small_factor_dropped(factor: int, primes: tuple[int, int]) -> None:
    """A 2048-bit-plus odd modulus with a prime factor below 10,000 (3 up to 9973) drops the key."""
    p, q = primes
    assert dropped(rsa_entry(factor * p * q)) == "rsa_small_factor"


def test_rsa_small_factor_accept_edge(primes: tuple[int, int]) -> None:
    """10007, the first prime above 10,000, times a real modulus is served: the bound is exact."""
    p, q = primes
    assert served(rsa_entry(10007 * p * q))


def test_rsa_small_factor_detail(primes: tuple[int, int]) -> None:
    """The detail names the small factors found (at most three), never the modulus."""
    p, q = primes
    keyset, _ = check(rsa_entry(3 * p * q))
    assert keyset.dropped[0].detail == ("the modulus is divisible by 3: a real modulus has no prime factor "
                                        "below 10000")
    keyset, _ = check(rsa_entry(3 * 5 * 7 * 11 * p * q))
    assert keyset.dropped[0].detail == ("the modulus is divisible by 3, 5, 7 and more: a real modulus has no "
                                        "prime factor below 10000")


def test_rsa_small_factor_after_size_and_parity(primes: tuple[int, int]) -> None:
    """Size and parity are checked first: an even modulus says so, whatever else divides it."""
    p, q = primes
    assert dropped(rsa_entry(6 * p * q)) == "rsa_even_modulus"


@FUZZ
@given(st.sampled_from(PRIMES_BELOW_10000[1:]), st.integers(2**2047, 2**2100))
def test_any_small_factor_found(factor: int, cofactor: int) -> None:
    """Any odd modulus with an odd prime factor below 10,000 is reported with that factor among the found."""
    modulus = factor * (cofactor | 1)
    assert factor in small_factors(modulus)
    assert all(modulus % prime == 0 for prime in small_factors(modulus))


@FUZZ
@given(st.integers(2**2047, 2**2100))
def test_small_factors_exact(number: int) -> None:
    """small_factors returns exactly the primes below 10,000 that divide the number (trial division agrees)."""
    assert list(small_factors(number)) == [prime for prime in PRIMES_BELOW_10000 if number % prime == 0]
