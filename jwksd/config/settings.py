"""The table of every setting, read from the dataclasses' declarations: by section, by environment variable.

``SECTIONS`` lists the file's tables in the order the example config shows them. ``restart_required``
says which changed settings a SIGHUP reload cannot apply (``reload.py`` logs them).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jwksd.config.declare import REQUIRED, Setting
from jwksd.config.model import (
    OIDC_SETTINGS,
    Config,
    HttpCacheConfig,
    Listen,
    LogConfig,
    OidcConfig,
    RefreshConfig,
    RotationConfig,
    ServerConfig,
    SharedCacheConfig,
    SignerConfig,
    StateConfig,
    ValidationConfig,
)
from jwksd.config.source_model import SOURCE_CLASSES, SOURCE_KIND

# Section name -> its dataclass. "source" is one table per kind (see SOURCE_CLASSES).
SECTIONS: dict[str, type] = {
    "server": ServerConfig, "refresh": RefreshConfig, "http_cache": HttpCacheConfig, "state": StateConfig,
    "shared_cache": SharedCacheConfig, "validation": ValidationConfig, "log": LogConfig, "oidc": OidcConfig,
    "rotation": RotationConfig, "signer": SignerConfig,
}
ROTATION_ENDPOINT = Setting("default of the three *_endpoint_url above", section="rotation", name="endpoint_url",
                            kind="url", default=None, example="http://127.0.0.1:5000")
# Keys of the file that are not a field of their section's dataclass.
UNFIELDED: dict[str, tuple[Setting, ...]] = {"rotation": (ROTATION_ENDPOINT,), "oidc": OIDC_SETTINGS}
_KINDS: dict[Any, str] = {float: "number", int: "integer", bool: "boolean", str: "string", Path: "path",
                          Listen: "listen"}


def _kind(hint: Any) -> str:
    """How a value of this type is read from TOML or the environment."""
    args = set(typing.get_args(hint)) - {type(None)}
    base = next(iter(args)) if typing.get_origin(hint) is not tuple and len(args) == 1 else hint
    if typing.get_origin(base) is tuple:
        return "strings"
    return _KINDS[base]


def declared(cls: type, section: str) -> Iterator[Setting]:
    """The settings of one section's dataclass, in field order, each with its name, kind and default."""
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        setting = item.metadata.get("setting")
        if isinstance(setting, Setting):
            default = item.default_factory() if callable(item.default_factory) else item.default
            default = REQUIRED if default is dataclasses.MISSING else default
            yield dataclasses.replace(setting, section=section, name=item.name,
                                      kind=setting.kind or _kind(hints[item.name]), default=default)


def section_settings(name: str) -> list[Setting]:
    """The keys of one section (not [source]): its dataclass's declared fields, then its other keys."""
    return [*declared(SECTIONS[name], name), *UNFIELDED.get(name, ())]


def setting_of(cls: type, name: str) -> Setting:
    """The declaration of one field of ``cls`` (its section name left empty)."""
    for setting in declared(cls, ""):
        if setting.name == name:
            return setting
    raise KeyError(f"{cls.__name__}.{name} is not a declared setting")


def source_settings(kind: str) -> list[Setting]:
    """The keys of a [source] table of this kind: ``kind`` itself, then the kind's fields."""
    return [SOURCE_KIND, *declared(SOURCE_CLASSES[kind], "source")]


def all_settings() -> list[Setting]:
    """Every setting of the file; [source] ``kind``, then the keys of each kind (``name`` once per kind)."""
    settings: list[Setting] = [*declared(ServerConfig, "server"), SOURCE_KIND]
    for cls in SOURCE_CLASSES.values():
        settings.extend(declared(cls, "source"))
    for name in SECTIONS:
        if name != "server":
            settings.extend(section_settings(name))
    return settings


def env_keys() -> dict[str, tuple[str, str]]:
    """Environment variable -> (section, key). The section "source" means the first source."""
    return {s.env: (s.section, s.name) for s in all_settings() if s.env}


def restart_required(old: Config, new: Config) -> list[str]:
    """The changed settings a reload cannot apply, dotted (``server.listen``; a section's name when added or removed).

    The sources are rebuilt on reload, so none of their settings is here; nor is systemd's
    environment, which a reload does not re-read.
    """
    changed: list[str] = []
    for name in SECTIONS:
        before, after = getattr(old, name), getattr(new, name)
        restart = [s for s in section_settings(name) if s.restart]
        if before == after or not restart:
            continue
        if before is None or after is None:
            changed.append(name)
            continue
        changed.extend(s.key for s in restart if getattr(before, s.name, None) != getattr(after, s.name, None))
    return changed


def keep_restart_only(old: Config, new: Config) -> Config:
    """``new`` with the running value of every setting a reload cannot apply (a whole section when all are)."""
    kept: dict[str, Any] = {}
    for name in SECTIONS:
        before, after = getattr(old, name), getattr(new, name)
        settings = section_settings(name)
        restart = {s.name for s in settings if s.restart}
        if before == after or not restart:
            continue
        if before is None or after is None or len(restart) == len(settings):
            kept[name] = before
        else:
            kept[name] = dataclasses.replace(after, **{key: getattr(before, key) for key in restart})
    return dataclasses.replace(new, **kept)
