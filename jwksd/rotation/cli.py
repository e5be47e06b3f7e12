"""``jwksd keys ...``: init-table, rotate, promote, revoke, gc, list, publish, sign, policy. Parsing here.

Each command reads only the [rotation] section (and [refresh], which its policy is checked
against), so a rotator host needs no [source]. Every command that acts or signs runs on the policy
stored in the registry's head and refuses a file that sets a different value (exit 2); those that
write the registry store the head first when it has none. Change lines go to stdout, logs to stderr.
Exit codes: 0 done, 1 failed (an expiry that failed, the rest of the step done, counts) or held back
by --verify-url, 2 bad usage or configuration. Changing commands first check the clock against AWS's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from jwksd.config import Config, RotationConfig, load_config
from jwksd.errors import AwsError, ConfigError, RotationError
from jwksd.rotation.external import REFUSE, Migration

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# Commands that write the registry (and so store the head when it has none), and those that only read it.
WRITING = ("init-table", "rotate", "promote", "revoke", "publish")
ON_POLICY = (*WRITING, "gc", "sign")


def add_keys_parser(commands: Any) -> None:
    """Register ``keys`` and its subcommands on the top-level subparsers."""
    keys = commands.add_parser("keys", help="rotate, list, publish and sign with the keys of the [rotation] registry")
    sub = keys.add_subparsers(dest="keys_command", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(name, help=text)
        parser.add_argument("--config", help="TOML config file with a [rotation] section (default: $JWKSD_CONFIG)")
        return parser

    command("init-table", "create the DynamoDB registry table (config/jwksd-keys-table.json), store the policy")
    policy = command("policy", "the policy stored in the registry beside this file's")
    policy.add_argument("--apply", action="store_true", help="store the values this file sets (checked first)")
    rotate = command("rotate", "one idempotent step of the key lifecycle")
    rotate.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    rotate.add_argument("--verify-url", action="append", default=[], metavar="URL",
                        help="promote only once this JWKS URL serves the pending kid (repeatable)")
    promote = command("promote", "promote the next key now (refused before it was published publish_ahead_s)")
    promote.add_argument("--emergency", action="store_true",
                         help="promote even so: verifiers may reject its tokens for up to refresh.max_age_s")
    revoke = command("revoke", "unpublish a key now, disable it, schedule its deletion; promote the next if active")
    revoke.add_argument("kid", help="the kid of the key to revoke (jwksd keys list)")
    revoke.add_argument("--emergency", action="store_true",
                        help="an active key: promote the next one even if not yet published publish_ahead_s")
    gc = command("gc", "list the keys jwksd made that no registry item names (older than 1 h); --apply deletes them")
    gc.add_argument("--apply", action="store_true", help="schedule their deletion (default: only list them)")
    for changing in (rotate, promote, revoke, gc):
        changing.add_argument("--now", help="act as if it were this ISO 8601 time (with --dry-run, or "
                                            "--clock-override for tests and drills; default: the clock)")
        changing.add_argument("--clock-override", action="store_true",
                              help="allow --now outside --dry-run (tests and drills only)")
    listing = command("list", "the keys, their states and times")
    listing.add_argument("--json", action="store_true", help="one JSON array")
    publish = command("publish", "write the published keys to a Secrets Manager secret when they changed")
    publish.add_argument("--secret-id", help="the secret (default: rotation.publish_secret_id)")
    for publishing in (rotate, publish, promote, revoke):
        migrate = publishing.add_mutually_exclusive_group()
        migrate.add_argument("--adopt", action="store_true",
                             help="keys the secret holds and the registry does not know stay published, as "
                                  "external keys, until --adopt-until (default: now + retire_grace_s)")
        migrate.add_argument("--replace", action="store_true",
                             help="keys the secret holds and the registry does not know are dropped")
        publishing.add_argument("--adopt-until", metavar="WHEN",
                                help="with --adopt (implied): an ISO 8601 time, or a duration from now such as "
                                     "90d, 36h, 45m, 600s")
    sign = command("sign", "print a JWT signed by the active key")
    sign.add_argument("--claims", required=True, help='a JSON object, e.g. \'{"sub": "svc"}\'')
    sign.add_argument("--ttl-s", type=int, help="lifetime (default and maximum: rotation.max_token_lifetime_s)")
    sign.add_argument("--now", help="the iat, as an ISO 8601 time (default: the clock)")


def parse_now(text: str | None) -> int:
    """Unix seconds of an ISO 8601 time with a zone (``Z`` or an offset); the clock when None."""
    if text is None:
        return int(time.time())
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ConfigError([f"--now = {text!r}: expected an ISO 8601 time with a zone, e.g. 2026-01-01T00:00:00Z"])
    return int(moment.timestamp())


DURATION = re.compile(r"(\d+)([smhd])")
UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_until(text: str, now: int) -> int:
    """Unix seconds of ``--adopt-until``: an ISO 8601 time with a zone, or a duration after ``now`` (90d, 36h, ...)."""
    duration = DURATION.fullmatch(text.strip())
    if duration:
        return now + int(duration.group(1)) * UNITS_S[duration.group(2)]
    try:
        return parse_now(text)
    except ConfigError:
        raise ConfigError([f"--adopt-until = {text!r}: expected an ISO 8601 time with a zone "
                           "(2027-06-30T00:00:00Z) or a duration such as 90d, 36h, 45m, 600s"]) from None


def migration_of(args: argparse.Namespace, now: int) -> Migration:
    """What ``--adopt``, ``--adopt-until`` and ``--replace`` ask of a publish."""
    until = getattr(args, "adopt_until", None)
    if until is not None and getattr(args, "replace", False):
        raise ConfigError(["--adopt-until: not allowed with --replace, which drops the keys"])
    return Migration(adopt=getattr(args, "adopt", False) or until is not None,
                     adopt_until=None if until is None else parse_until(until, now),
                     replace=getattr(args, "replace", False))


def load_rotation(path: str | None) -> tuple[Config, RotationConfig]:
    """The config without needing a [source]; ConfigError when it has no [rotation]."""
    config = load_config(path, need_source=False)
    if config.rotation is None:
        raise ConfigError(["rotation: missing: expected a [rotation] table (every key in it has a default)"])
    return config, config.rotation


def run_keys(args: argparse.Namespace) -> int:
    """Run one ``keys`` subcommand; print problems and return an exit code."""
    from jwksd.log import configure_logging

    try:
        config, rotation = load_rotation(args.config)
        now = parse_now(getattr(args, "now", None))
        if args.keys_command in ("rotate", "promote", "revoke", "gc") and args.now is not None and not (
                getattr(args, "dry_run", False) or args.clock_override or not getattr(args, "apply", True)):
            raise ConfigError([f"--now = {args.now!r}: changes keys at a time that is not the clock's; allowed "
                               "with --dry-run, or with --clock-override (tests and drills only)"])
        claims = _claims(args.claims) if args.keys_command == "sign" else {}
        migration = migration_of(args, now)
        if (migration.adopt or migration.replace) and args.keys_command != "publish" and not rotation.publish_secret_id:
            raise ConfigError([f"--{'adopt' if migration.adopt else 'replace'}: rotation.publish_secret_id is not "
                               "set, so this command publishes nothing (jwksd keys publish --secret-id does)"])
    except ConfigError as exc:
        print(f"jwksd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(config.log.level, config.log.format, stream=sys.stderr)
    try:
        return asyncio.run(_run(args, config, rotation, now, claims, migration=migration))
    except ConfigError as exc:  # the file disagrees with the registry's stored policy
        print(f"jwksd keys {args.keys_command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (RotationError, AwsError) as exc:
        print(f"jwksd keys {args.keys_command}: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _claims(text: str) -> dict[str, Any]:
    try:
        claims = json.loads(text)
    except ValueError:
        claims = None
    if not isinstance(claims, dict):
        raise ConfigError(["--claims: expected a JSON object, e.g. '{\"sub\": \"svc\"}'"])
    return claims


async def _run(args: argparse.Namespace, whole: Config, config: RotationConfig, now: int,
               claims: dict[str, Any], *, migration: Migration) -> int:
    from jwksd.rotation.clock import check_clock
    from jwksd.rotation.gc import collect
    from jwksd.rotation.head import adopt_head, policy_lines
    from jwksd.rotation.incident import promote_now, revoke
    from jwksd.rotation.keyring import open_keyring
    from jwksd.rotation.sign import sign_jwt

    command, max_age_s = args.keys_command, whole.refresh.max_age_s
    origin = str(whole.path) if whole.path else "the environment"
    secret_id = getattr(args, "secret_id", None) or config.publish_secret_id
    if command == "publish" and not secret_id:
        print("jwksd keys publish: expected --secret-id or rotation.publish_secret_id", file=sys.stderr)
        return EXIT_USAGE
    async with open_keyring(config, publish=command == "publish") as opened:  # local gc: the backend's client
        ring = opened
        if (command in ("rotate", "promote", "revoke") and not getattr(args, "dry_run", False)) or (
                command == "gc" and args.apply):
            await check_clock(ring)
        if command == "init-table":
            created = await ring.registry.create_table()
            print(f"{'created' if created else 'exists already'}: table {config.table}", flush=True)
        if command in ON_POLICY:
            writes = command in WRITING and not getattr(args, "dry_run", False)
            ring, lines = await adopt_head(ring, origin=origin, refresh=whole.refresh, write=writes)
            if lines:
                print("\n".join(lines), flush=True)
        if command == "policy":
            print("\n".join(await policy_lines(ring, origin=origin, refresh=whole.refresh, apply=args.apply)))
        elif command == "rotate":
            return await _rotate(ring, args, now, migration)
        elif command in ("promote", "revoke"):
            result = await (promote_now(ring, now, emergency=args.emergency, max_age_s=max_age_s)
                            if command == "promote" else
                            revoke(ring, args.kid, now, emergency=args.emergency, max_age_s=max_age_s))
            print("\n".join(result.lines), flush=True)
            if config.publish_secret_id:
                await _publish(ring, config.publish_secret_id, now, config.verify_urls, migration)
        elif command == "gc":
            print("\n".join((await collect(ring, now, apply=args.apply)).lines))
        elif command == "list":
            _print_records(await ring.registry.records(), as_json=args.json)
        elif command == "publish" and secret_id:
            await _publish(ring, secret_id, now, config.verify_urls, migration)
        elif command == "sign":
            print(await sign_jwt(ring, claims, now=now, ttl_s=args.ttl_s))
    return EXIT_OK


async def _rotate(ring: Any, args: argparse.Namespace, now: int, migration: Migration) -> int:
    """One step, then the publish; the outcome written to ``rotation.metrics_file`` whatever happened."""
    from jwksd.rotation.report import write_report
    from jwksd.rotation.rotate import rotate

    config: RotationConfig = ring.config
    verify_urls = [*config.verify_urls, *args.verify_url]
    failed: list[str] = []
    next_due: int | None = None
    try:
        result = await rotate(ring, now, dry_run=args.dry_run, verify_urls=verify_urls)
        next_due = result.next_due
        failed += result.failed
        print("\n".join(result.lines), flush=True)
        if config.publish_secret_id and not args.dry_run:
            try:
                await _publish(ring, config.publish_secret_id, now, verify_urls, migration)
            except (RotationError, AwsError):
                failed.append("publish")
                raise
    except (RotationError, AwsError):
        failed += [] if "publish" in failed else ["step"]
        raise
    finally:
        if config.metrics_file is not None and not args.dry_run:
            try:
                write_report(config.metrics_file, failed, next_due=next_due)
            except OSError as exc:  # reported, never hiding the step's own outcome
                print(f"jwksd keys rotate: rotation.metrics_file {config.metrics_file}: {exc.strerror}",
                      file=sys.stderr)
    return EXIT_FAILED if result.held or result.failed else EXIT_OK


async def _publish(ring: Any, secret_id: str, now: int, verify_urls: Sequence[str],
                   migration: Migration = REFUSE) -> None:
    """Publish, then confirm the pending key published; a failed publish confirms nothing and fails the run."""
    from jwksd.rotation.publish import confirm_published, publish

    try:
        print(await publish(ring, secret_id, now=now, migration=migration), flush=True)
    except AwsError as exc:
        detail = str(exc).rstrip(".")
        raise RotationError("publish_failed", f"{secret_id}: {detail}. No key was confirmed published; the next run "
                                              "retries, and no promotion counts from this one") from exc
    for line in await confirm_published(ring, now, verify_urls=verify_urls):
        print(line)


def _print_records(records: Any, *, as_json: bool) -> None:
    from jwksd.rotation.rotate import iso

    rows = [{"version": r.version, "status": r.status, "kid": r.kid, "alg": r.alg, "backend": r.backend,
             "key_ref": r.key_ref, "created": iso(r.created), "publish_from": iso(r.publish_from),
             "first_published": iso(r.first_published), "revoked": iso(r.revoked),
             "activated": iso(r.activated), "retired": iso(r.retired), "expires": iso(r.expires),
             "expired": iso(r.expired), "creation_id": r.creation_id} for r in records]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    columns = ("version", "status", "kid", "alg", "created", "activated", "retired", "expires")
    widths = {c: max([len(c), *(len(str(row[c])) for row in rows)]) for c in columns}
    for row in [{c: c.upper() for c in columns}, *rows]:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns).rstrip())
