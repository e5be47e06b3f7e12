"""The start-time checks of a loaded config: what ``load_config`` cannot see and would stop ``serve``.

One function, :func:`preflight`, used by ``check-config``, by ``serve`` before it starts and by a
SIGHUP reload before it applies anything, so the three agree: a config ``check-config`` passes is
one ``serve`` starts with, and a reload refuses what a restart would stop on. It reads files
(the fallback key set, the shared cache's HMAC key, the state directory) and never the network.
Every problem is raised at once as a ConfigError; what only degrades the daemon is returned as a
warning. Files named by a setting must be regular files: a FIFO would block the read, a
directory is a mistake. The TLS pair is checked by ``tls.check_tls_files``, which serve's
listener set-up shares.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import stat
import tempfile
from pathlib import Path

from jwksd.config import Config, SharedCacheConfig
from jwksd.errors import ConfigError, StateError
from jwksd.http.tls import check_tls_files
from jwksd.local_file import FileTooLarge, NotRegularFile, read_regular_file
from jwksd.state import load_fallback

MIN_HMAC_KEY_BYTES = 32
MAX_HMAC_KEY_FILE_BYTES = 4096  # a key, not a document: anything larger is the wrong file
UNAUTHENTICATED = ("shared_cache.hmac_key_file = None: expected the path of a key file (32 bytes or more, the same "
                   "on every replica), or shared_cache.allow_unauthenticated = true to let whoever can write to "
                   "Redis choose the keys every replica serves")
UVLOOP_MISSING = ("server.event_loop = 'uvloop': expected uvloop to be installed (pip install 'jwksd[uvloop]'), "
                  "or 'auto' or 'asyncio'")


def preflight(config: Config) -> list[str]:
    """Check everything ``serve`` needs besides the config's own values; raise ConfigError naming every problem.

    Returns the warnings: what the daemon survives but an operator should fix.
    """
    problems: list[str] = []
    warnings: list[str] = []
    if config.state.fallback_file is not None:
        problems.extend(_fallback_problems(config))
    if config.state.state_dir is not None:
        _check_state_dir(config.state.state_dir, problems, warnings)
    if config.shared_cache.enabled:
        _check_shared_cache(config.shared_cache, problems, warnings)
    try:
        check_tls_files(config.server)
    except ConfigError as exc:
        problems.extend(exc.problems)
    if config.server.event_loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        problems.append(UVLOOP_MISSING)
    if problems:
        raise ConfigError(problems)
    return warnings


async def open_sources(config: Config) -> None:
    """Open the shared cache and every source as ``serve`` does at start, then close them (``check-config``).

    No request is made, but making an AWS client resolves the region and may ask the credential
    chain (the instance metadata service among others): that is why this is not part of :func:`preflight`.
    A source that cannot be opened raises what ``serve`` would stop on (SourceError: NoRegion, ...).
    """
    from jwksd.metrics import Metrics
    from jwksd.source_set import SourceSet
    from jwksd.store import SystemClock

    source_set = await SourceSet.open(config, Metrics(), SystemClock())
    await source_set.close()


def check_connection_budget(config: Config) -> None:
    """What serve's listeners check at start (check-config): the connection cap fits this process's open-file limit.

    ConfigError naming the figures when it does not. The count of descriptors open at start is this
    process's, so a cap within a few descriptors of the limit may pass here and not in ``serve``.
    """
    from jwksd.http.server import open_fd_count, open_file_limit, plan_budget

    plan_budget(config.server.max_connections, nofile=open_file_limit(), open_fds=open_fd_count(),
                metrics_listener=config.server.metrics_listen is not None)


def _not_regular(path: Path) -> bool:
    """True when ``path`` exists and is not a regular file (a missing file is reported by the read)."""
    try:
        return not stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def _fallback_problems(config: Config) -> list[str]:
    path = config.state.fallback_file
    assert path is not None
    if _not_regular(path):
        return [f"fallback_file {str(path)!r} is not a regular file"]
    try:
        load_fallback(path, config.validation)
    except StateError as exc:
        return [str(exc)]
    return []


def _check_state_dir(path: Path, problems: list[str], warnings: list[str]) -> None:
    """A missing state_dir is a mistake; a read-only or full one only stops the last-known-good writes."""
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        problems.append(f"state.state_dir = {str(path)!r}: expected a directory, but it {what}")
        return
    try:
        fd, probe = tempfile.mkstemp(prefix=".preflight-", dir=path)
    except OSError as exc:
        warnings.append(f"state.state_dir = {str(path)!r}: not writable ({exc.strerror or exc}): the last-known-good "
                        f"set will not be saved until it is")
        return
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def _check_shared_cache(config: SharedCacheConfig, problems: list[str], warnings: list[str]) -> None:
    """A shared cache needs a usable HMAC key, unless allow_unauthenticated says so (warned at every start)."""
    if config.hmac_key_file is None:
        if not config.allow_unauthenticated:
            problems.append(UNAUTHENTICATED)
        else:
            warnings.append(f"shared_cache.allow_unauthenticated = true: whoever can write to {config.safe_url} "
                            "chooses the keys every replica serves")
        return
    try:
        read_hmac_key(config)
    except ConfigError as exc:
        problems.extend(exc.problems)


def read_hmac_key(config: SharedCacheConfig) -> bytes | None:
    """The shared cache's HMAC key (None when no key file is set); ConfigError when it cannot be used.

    Read by ``local_file.read_regular_file``: at most 4096 bytes, and a FIFO or a device is refused, never read.
    """
    path = config.hmac_key_file
    if path is None:
        return None
    # Opened non-blocking and checked with fstat on the descriptor read: a FIFO swapped in cannot block.
    try:
        key = read_regular_file(path, MAX_HMAC_KEY_FILE_BYTES)[0].strip()
    except NotRegularFile as exc:
        raise ConfigError([f"shared_cache.hmac_key_file = {str(path)!r}: expected a regular file"]) from exc
    except FileTooLarge as exc:
        raise ConfigError([f"shared_cache.hmac_key_file = {str(path)!r}: expected a key file of at most "
                           f"{MAX_HMAC_KEY_FILE_BYTES} bytes ({exc.strerror})"]) from exc
    except OSError as exc:
        raise ConfigError([f"shared_cache.hmac_key_file = {str(path)!r}: cannot be read "
                           f"({exc.strerror or exc})"]) from exc
    if len(key) < MIN_HMAC_KEY_BYTES:
        raise ConfigError([f"shared_cache.hmac_key_file = {str(path)!r}: expected at least "
                           f"{MIN_HMAC_KEY_BYTES} bytes of key, found {len(key)}"])
    return key
