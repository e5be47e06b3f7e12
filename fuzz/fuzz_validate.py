"""Coverage-guided fuzzing of the key document validator with atheris (libFuzzer): ``make fuzz``.

Any input must give a KeySet or a DocumentRejected; an ``internal_error`` rejection is the catch-all
hiding a bug, so it counts as a crash, as does served output that holds private material or does not
validate again to the same bytes. A crash is saved under fuzz/crashes/ and belongs in
tests/test_validate_properties.py as a regression test.

    python fuzz/fuzz_validate.py -max_total_time=60 -artifact_prefix=fuzz/crashes/ fuzz/corpus
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["jwksd"]):
    from jwksd.config import ValidationConfig
    from jwksd.errors import DocumentRejected
    from jwksd.validate import PRIVATE_MEMBERS, serialize_keys, validate_document

CONFIG = ValidationConfig()


def test_one_input(data: bytes) -> None:
    """One document through the validator; raise on anything that breaks the validator's contract."""
    try:
        keyset = validate_document(data, CONFIG)
    except DocumentRejected as exc:
        if exc.reason == "internal_error":
            raise AssertionError(f"internal_error: {exc.detail}") from exc.__cause__
        return
    body = serialize_keys(keyset.keys)
    for key in keyset.keys:
        if PRIVATE_MEMBERS.intersection(key) or key.get("kty") == "oct":
            raise AssertionError("private material in the served output")
    again = validate_document(body, CONFIG)
    if again.dropped or serialize_keys(again.keys) != body:
        raise AssertionError("served output does not validate again to the same bytes")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
