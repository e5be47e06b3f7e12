"""The command line: argv -> config -> logging -> run; serve, check-config, validate, demo, keys, status, signer."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from jwksd import __version__
from jwksd.config import ValidationConfig, load_config, load_validation_config
from jwksd.errors import ConfigError, DocumentRejected, JwksdError
from jwksd.log import configure_logging
from jwksd.preflight import UVLOOP_MISSING, check_connection_budget, open_sources, preflight
from jwksd.rotation.cli import add_keys_parser, run_keys
from jwksd.validate import validate_document

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jwksd", description="Serve the JWT verification keys kept in AWS.")
    parser.add_argument("--version", action="version", version=f"jwksd {__version__}")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the daemon (the default)")
    serve.add_argument("--config", help="TOML config file (default: $JWKSD_CONFIG)")
    check = commands.add_parser("check-config", help="validate the config file and environment")
    check.add_argument("--config", help="TOML config file (default: $JWKSD_CONFIG)")
    validate = commands.add_parser("validate", help="run the daemon's validator on a document, offline")
    validate.add_argument("--config", help="TOML config file whose [validation] section applies")
    validate.add_argument("--json", action="store_true", help="print one JSON object")
    validate.add_argument("document", help="a file, or - for standard input")
    demo = commands.add_parser("demo", help="run against a local Secrets Manager (moto) with a generated key")
    demo.add_argument("--port", type=int, default=8080, help="port for the JWKS listener")
    add_keys_parser(commands)
    status = commands.add_parser("status", help="summarise a running daemon's /status.json (exit 3: from disk, "
                                                "4: not ready, 5: unreadable)")
    status.add_argument("--url", help="the daemon's metrics listener, e.g. http://127.0.0.1:9464 (default: "
                                      "server.metrics_listen of --config or $JWKSD_CONFIG, else that one)")
    status.add_argument("--config", help="TOML config file whose server.metrics_listen is asked")
    signer = commands.add_parser("signer", help="sign JWTs with the registry's active key for local callers")
    signer.add_argument("--config", help="TOML config file with [rotation] and [signer] (default: $JWKSD_CONFIG)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jwksd`` console script."""
    args = _parser().parse_args(argv)
    command = args.command or "serve"
    if command == "check-config":
        return check_config(args.config)
    if command == "validate":
        return validate(args.document, args.config, as_json=args.json)
    if command == "demo":
        from jwksd.demo import run_demo

        return run_demo(port=args.port)
    if command == "keys":
        return run_keys(args)
    if command == "status":
        from jwksd.status_cli import run_status

        return run_status(args.url, args.config)
    if command == "signer":
        from jwksd.signer.run import main as run_signer

        return run_signer(args.config, event_loop)
    return serve(getattr(args, "config", None))


def serve(path: str | None) -> int:
    """Load the config and run the preflight (exit 2 on any problem), configure logging, run until stopped."""
    try:
        config = load_config(path)
        warnings = preflight(config)
    except ConfigError as exc:
        print(f"jwksd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(config.log.level, config.log.format)
    for warning in warnings:
        structlog.get_logger("jwksd").warning("preflight_warning", problem=warning)
    from jwksd.daemon import serve as run

    try:
        loop_factory, loop_name = event_loop(config.server.event_loop)
        structlog.get_logger("jwksd").info("event_loop", loop=loop_name, setting=config.server.event_loop)
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(run(config, load=lambda: load_config(path)))
    except JwksdError as exc:
        print(f"jwksd: cannot start: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def event_loop(setting: str) -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    """The loop factory for ``server.event_loop``: uvloop when installed (auto) or demanded, else asyncio's."""
    if setting == "asyncio":
        return None, "asyncio"
    try:
        import uvloop
    except ImportError as exc:
        if setting == "uvloop":
            raise ConfigError([UVLOOP_MISSING]) from exc
        return None, "asyncio"
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory, "uvloop"


def check_config(path: str | None) -> int:
    """Print every problem, or a one-line summary of what would run (a rotator's file needs no [source]).

    A file with sources gets the preflight ``serve`` runs, its sources are opened as ``serve`` opens
    them and its connection cap is fitted under the open-file limit: exit 0 exactly when ``serve``
    would start, and the same message when it would not.
    """
    try:
        config = load_config(path, need_source=False)
        if not config.sources and config.rotation is None:
            config = load_config(path)  # neither serving nor rotating: report what [source] lacks
        warnings = preflight(config) if config.sources else []
    except ConfigError as exc:
        print(f"jwksd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if config.sources:
            asyncio.run(open_sources(config))
            check_connection_budget(config)
    except JwksdError as exc:
        print(f"jwksd: cannot start: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for warning in warnings:
        print(f"jwksd: warning: {warning}", file=sys.stderr)
    if config.sources:
        sources = ", ".join(s.name for s in config.sources)
        print(f"config ok: listen {config.server.listen}, sources {sources}, "
              f"refresh every {config.refresh.interval_s:g}s")
    if (oidc := config.oidc) is not None:
        print(f"oidc ok: issuer {oidc.issuer}, discovery at {oidc.discovery_path}, jwks_uri {oidc.jwks_uri}")
    if (rotation := config.rotation) is not None:
        print(f"rotation ok: table {rotation.table}, backend {rotation.backend}, {rotation.key_spec} {rotation.alg}, "
              f"rotate every {rotation.rotate_every_s}s, publish ahead {rotation.publish_ahead_s}s, "
              f"retire grace {rotation.retire_grace_s}s")
    if (signer := config.signer) is not None:
        group = f", group {signer.socket_group}" if signer.socket_group else ""
        tcp = f", tcp {signer.tcp_listen} (bearer token)" if signer.tcp_listen else ""
        print(f"signer ok: socket {signer.socket} (mode {signer.socket_mode}{group}){tcp}, registry read every "
              f"{signer.refresh_s:g}s")
    return EXIT_OK


def validate(document: str, config_path: str | None, *, as_json: bool) -> int:
    """Exit 0 when the document would be served, 1 when rejected, 2 on usage errors."""
    validation = ValidationConfig()
    if config_path is not None:
        try:
            validation = load_validation_config(config_path)
        except ConfigError as exc:
            print(f"jwksd: {exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        data = sys.stdin.buffer.read() if document == "-" else Path(document).read_bytes()
    except OSError as exc:
        print(f"jwksd: cannot read {document!r}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        keyset = validate_document(data, validation)
    except DocumentRejected as exc:
        result: dict[str, Any] = {"outcome": "reject_document", "served_kids": [], "dropped": [], "reason": exc.reason,
                  "detail": exc.detail}
        _print_result(result, as_json)
        return EXIT_REJECTED
    result = {
        "outcome": keyset.outcome,
        "served_kids": list(keyset.kids),
        "dropped": [{"kid": d.kid, "reason": d.reason, "detail": d.detail} for d in keyset.dropped],
        "reason": None,
    }
    _print_result(result, as_json)
    return EXIT_OK


def _print_result(result: Mapping[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    print(f"outcome: {result['outcome']}")
    if result["reason"]:
        print(f"reason: {result['reason']}: {result.get('detail', '')}")
    print(f"served kids: {', '.join(map(str, result['served_kids'])) or '(none)'}")
    for dropped in result["dropped"]:
        print(f"dropped: kid={dropped['kid']} reason={dropped['reason']}: {dropped['detail']}")


if __name__ == "__main__":
    sys.exit(main())
