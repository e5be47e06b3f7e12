"""``jwksd signer --config F``: config -> sockets -> parts -> listen -> read the registry -> serve until SIGTERM.

The sockets are opened first, so a socket that cannot be had stops the start before AWS is asked.
The API listens at once and answers 503 until the first read of the registry gives an active key;
READY=1 goes to systemd then. A first read that finds the registry's policy disagreeing with the
local [rotation] stops the signer (exit 2). On SIGTERM: stop accepting, let in-flight requests end
(``shutdown_timeout_s``), stop the registry reads, close the AWS clients, remove the socket file.
"""

from __future__ import annotations

import asyncio
import gc
import random
import signal
import sys
from collections.abc import Callable

import structlog
from aiohttp import web

from jwksd.aws.registry import RegistryHead
from jwksd.config import Config, SignerConfig, load_config
from jwksd.errors import ConfigError, JwksdError, SignerError
from jwksd.log import configure_logging
from jwksd.notify import Notifier
from jwksd.rotation.head import check_policy
from jwksd.shutdown import stop_tasks
from jwksd.signer import audit
from jwksd.signer.app import Signer, metrics_app, open_signer
from jwksd.signer.listen import Sockets, open_sockets
from jwksd.signer.metrics import SignerMetrics

log = structlog.get_logger("jwksd.signer")
EXIT_OK, EXIT_USAGE = 0, 2


LoopChoice = Callable[[str], tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]]


def main(path: str | None, event_loop: LoopChoice) -> int:
    """Entry point of ``jwksd signer``: exit 2 on a configuration the signer cannot run with.

    ``event_loop`` picks the loop for ``server.event_loop`` as ``jwksd serve`` does (uvloop when installed).
    """
    try:
        config = load_config(path, need_source=False)
        if config.rotation is None:
            raise ConfigError(["rotation: missing: expected a [rotation] table naming the registry and backend the "
                               "signer uses"])
    except ConfigError as exc:
        print(f"jwksd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(config.log.level, config.log.format)
    try:
        loop_factory, loop_name = event_loop(config.server.event_loop)
        log.info("event_loop", loop=loop_name, setting=config.server.event_loop)
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve_signer(config))
    except JwksdError as exc:
        print(f"jwksd signer: cannot start: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def policy_check(config: Config) -> Callable[[RegistryHead], list[str]]:
    """The values this signer's [rotation] sets that the registry's stored policy disagrees with, each named."""
    rotation = config.rotation
    assert rotation is not None
    origin = str(config.path) if config.path else "the environment"

    def problems(head: RegistryHead) -> list[str]:
        try:
            check_policy(rotation, head, origin=origin)
        except ConfigError as exc:
            return exc.problems
        return []

    return problems


async def serve_signer(config: Config, *, stop: asyncio.Event | None = None, metrics: SignerMetrics | None = None,
                       started: Callable[[Signer], None] | None = None) -> None:
    """Serve until SIGTERM or SIGINT (or ``stop`` is set); ConfigError (exit 2) when the sockets or the
    registry's policy forbid it. ``started`` is handed the running parts once they listen (tests)."""
    rotation = config.rotation
    assert rotation is not None
    settings = config.signer or SignerConfig()
    sockets = open_sockets(settings, config.systemd.listen_fds)
    try:
        async with open_signer(rotation, settings, token=sockets.token, policy_problems=policy_check(config),
                               metrics=metrics) as signer:
            await _serve(signer, sockets, settings, Notifier(config.systemd.notify_socket), stop=stop,
                         started=started)
    finally:
        sockets.close()
    log.info("stopped")


async def _serve(signer: Signer, sockets: Sockets, settings: SignerConfig, notifier: Notifier, *,
                 stop: asyncio.Event | None, started: Callable[[Signer], None] | None) -> None:
    runner = web.AppRunner(signer.app, access_log=None, handle_signals=False,
                           shutdown_timeout=settings.shutdown_timeout_s)
    metrics_runner = web.AppRunner(metrics_app(signer.metrics), access_log=None, handle_signals=False,
                                   shutdown_timeout=1.0) if settings.metrics_listen is not None else None
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT) if stop is None else ()
    stop = stop or asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        await runner.setup()
        for sock in sockets.listening:
            await web.SockSite(runner, sock).start()
        if metrics_runner is not None and settings.metrics_listen is not None:
            await metrics_runner.setup()
            await web.TCPSite(metrics_runner, settings.metrics_listen.host, settings.metrics_listen.port).start()
        for signum in signals:
            loop.add_signal_handler(signum, stop.set)
        if signals:  # SIGHUP would end the process: the signer has nothing to reload, it reads its config at start
            loop.add_signal_handler(signal.SIGHUP, lambda: log.warning(
                "reload_unsupported", detail="the signer reads its config at start: restart it to apply a change"))
        if started is not None:
            started(signer)
        log.info("listening", api=sockets.describe(), bearer_token=sockets.token is not None,
                 metrics=f"http://{settings.metrics_listen}/metrics" if settings.metrics_listen else None,
                 table=signer.view.reader.table, backend=signer.view.keys.name, refresh_s=settings.refresh_s)
        _warn_about_namespaces()
        view = signer.view
        await view.read()
        if view.view is not None and view.view.problem and view.view.problem.startswith("policy_mismatch"):
            raise ConfigError([view.view.problem.partition(": ")[2]])
        # As serve does: what start-up imported and opened (botocore's models above all) lives as long as the
        # process, out of the collector's sight, so a full collection under load does not stall every caller.
        gc.freeze()
        tasks.append(asyncio.create_task(_poll(signer), name="jwksd-signer-registry"))
        tasks.append(asyncio.create_task(_announce(signer, notifier), name="jwksd-signer-announce"))
        await stop.wait()
        log.info("stopping")
    finally:
        notifier.stopping()
        for signum in (*signals, signal.SIGHUP) if signals else ():
            loop.remove_signal_handler(signum)
        await runner.cleanup()  # stops accepting, lets in-flight requests end
        await stop_tasks(tasks)
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        notifier.close()


def _warn_about_namespaces() -> None:
    """A warning when the audit line's uids cannot be trusted to name the callers (see audit.uid_map_problem)."""
    try:
        with open("/proc/self/uid_map", encoding="ascii") as handle:
            problem = audit.uid_map_problem(handle.read())
    except OSError:
        return
    if problem is not None:
        log.warning("audit_uids_limited", detail=problem)


async def _poll(signer: Signer) -> None:
    """The registry reads after the first one, every refresh_s +- 10% (a fleet of signers does not read in step)."""
    view = signer.view
    while True:
        await asyncio.sleep(view.refresh_s * random.uniform(0.9, 1.1))  # noqa: S311 - jitter
        await view.read()


async def _announce(signer: Signer, notifier: Notifier) -> None:
    """READY=1 once an active key can sign; STATUS= and the ready gauge after each change of the view."""
    ready_sent = False
    while True:
        status = _status(signer)
        ready = status.startswith("signing")
        signer.metrics.ready.set(1 if ready else 0)
        if ready and not ready_sent:
            notifier.ready(status)
            ready_sent = True
            log.info("ready", status=status)
        else:
            notifier.status(status)
        changed = signer.view.changed
        try:
            async with asyncio.timeout(signer.view.refresh_s):
                await changed.wait()
        except TimeoutError:
            pass


def _status(signer: Signer) -> str:
    """One line for `systemctl status`."""
    try:
        key = signer.view.signing_key()
    except SignerError as exc:
        return f"not signing: {exc.code}: {exc.message}"
    return f"signing with kid={key.kid} ({key.alg})"
