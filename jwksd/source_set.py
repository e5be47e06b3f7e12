"""The open sources of one config, behind the shared cache when there is one: opened, re-opened and closed together.

Start-up opens a :class:`SourceSet`; a reload asks the running one for its successor (keeping what
did not change) and, once the refresher uses the successor, closes what the successor dropped.
Order: the shared cache is opened before the sources that use it and closed after them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import structlog

from jwksd.config import Config, FileSourceConfig, HttpSourceConfig, SourceConfig
from jwksd.metrics import Metrics
from jwksd.sources import Source, open_source
from jwksd.store import Clock

if TYPE_CHECKING:
    from jwksd.fleet.cache import SharedCache

log = structlog.get_logger("jwksd.source_set")


class SourceSet:
    """The sources of one config, in its order, and the shared cache they go through."""

    def __init__(self, metrics: Metrics, clock: Clock, cache: SharedCache | None,
                 built: Mapping[tuple[object, ...], Source]) -> None:
        self.metrics = metrics
        self.clock = clock
        self.cache = cache
        self._built = dict(built)  # keyed by built_from, in the order of config.sources

    @property
    def sources(self) -> list[Source]:
        return list(self._built.values())

    @classmethod
    async def open(cls, config: Config, metrics: Metrics, clock: Clock,
                   accepted_at: Mapping[str, float] | None = None) -> SourceSet:
        """Open the shared cache (when configured; Redis being down is not an error), then every source.

        ``accepted_at``: each shared source's newest accepted fetch time, from last-known-good.
        """
        cache = None
        if config.shared_cache.enabled:
            # Imported only when configured: redis and aiocache are a third of the start-up imports.
            from jwksd.fleet.cache import SharedCache

            cache = SharedCache.open(config.shared_cache, metrics, clock)
            cache.accepted.update(accepted_at or {})
        empty = cls(metrics, clock, cache, {})
        try:
            return await empty.reopen(config)
        except BaseException:
            await empty.close()
            raise

    async def reopen(self, config: Config) -> SourceSet:
        """The set for ``config``: sources whose settings did not change are kept, the others opened anew.

        Nothing of this set is closed: see :meth:`close_retired`. If opening fails, what was opened is closed.
        """
        keys = [built_from(config, source_config, shared=self.cache is not None) for source_config in config.sources]
        opened: dict[tuple[object, ...], Source] = {}
        try:
            for key, source_config in zip(keys, config.sources, strict=True):
                if key not in self._built:
                    opened[key] = await self._open_one(config, source_config)
        except BaseException:
            await close_sources(opened.values())
            raise
        built = {key: self._built.get(key) or opened[key] for key in keys}
        return SourceSet(self.metrics, self.clock, self.cache, built)

    async def _open_one(self, config: Config, source_config: SourceConfig) -> Source:
        """Open a source of ``config``; a remote one goes behind the shared cache if any (a local file never does)."""
        source = await open_source(source_config, self.metrics,
                                   max_document_bytes=config.validation.max_document_bytes)
        if self.cache is None or isinstance(source_config, FileSourceConfig):
            return source
        from jwksd.fleet.entry import source_identity
        from jwksd.fleet.source import SharedSource

        interval_s = config.refresh.interval_s
        max_fresh_s = source_config.max_refresh_s if isinstance(source_config, HttpSourceConfig) else interval_s
        return SharedSource(self.cache, source, source_identity(source_config), interval_s=interval_s,
                            max_fresh_s=max_fresh_s, validation=config.validation)

    async def close_retired(self, successor: SourceSet) -> None:
        """Close the sources (and cache) of this set that ``successor`` does not use."""
        kept = {id(source) for source in successor.sources}
        await close_sources(source for source in self.sources if id(source) not in kept)
        if self.cache is not None and self.cache is not successor.cache:
            await self.cache.close()

    async def close(self) -> None:
        """Close every source, then the shared cache."""
        await close_sources(self.sources)
        if self.cache is not None:
            await self.cache.close()


def built_from(config: Config, source_config: SourceConfig, *, shared: bool) -> tuple[object, ...]:
    """Every setting a built source keeps: when one of them changes, a reload builds the source anew.

    The http and file sources cap documents at ``validation.max_document_bytes``; behind the shared cache a
    remote source also keeps ``refresh.interval_s`` and the validation limits it checks entries with.
    """
    kept: list[object] = [source_config]
    if isinstance(source_config, HttpSourceConfig | FileSourceConfig):
        kept.append(config.validation.max_document_bytes)
    if shared and not isinstance(source_config, FileSourceConfig):
        kept.extend([config.refresh.interval_s, config.validation])
    return tuple(kept)


async def close_sources(sources: Iterable[Source]) -> None:
    """Close each source; one that fails to close does not keep the others open."""
    for source in sources:
        try:
            await source.close()
        except Exception:
            log.exception("source_close_failed", source=source.name)
