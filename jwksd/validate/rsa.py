"""The small-factor test of RSA moduli: one gcd with the product of the primes below 10,000.

A real modulus is the product of two primes of 1024 bits or more, so any prime factor below
10,000 means the value was made up, truncated or corrupted (a modulus divisible by 3 is the
classic). The ROCA fingerprint, the other structural test, is in roca.py.
"""

from __future__ import annotations

from math import gcd, isqrt, prod

SMALL_PRIME_BOUND = 10000


def primes_below(bound: int) -> tuple[int, ...]:
    """The primes below ``bound`` (a sieve of Eratosthenes)."""
    sieve = bytearray([1]) * bound
    sieve[:2] = b"\x00\x00"
    for number in range(2, isqrt(bound - 1) + 1):
        if sieve[number]:
            sieve[number * number::number] = bytes(len(range(number * number, bound, number)))
    return tuple(number for number, is_prime in enumerate(sieve) if is_prime)


SMALL_PRIMES = primes_below(SMALL_PRIME_BOUND)
_PRODUCT = prod(SMALL_PRIMES)  # about 14,000 bits, computed once at import


def small_factors(modulus: int) -> tuple[int, ...]:
    """The primes below 10,000 that divide ``modulus``, smallest first (none for a real modulus)."""
    common = gcd(modulus, _PRODUCT)
    if common == 1:
        return ()
    return tuple(prime for prime in SMALL_PRIMES if common % prime == 0)
