"""Reading TOML tables into typed values, recording a problem for each bad or unknown key instead of raising."""

from __future__ import annotations

import ipaddress
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from jwksd.config.declare import REQUIRED, Setting
from jwksd.config.model import Listen
from jwksd.config.settings import declared
from jwksd.redact import shown

T = TypeVar("T")


class Section:
    """Reads one table, recording a problem for every bad or unknown key instead of raising."""

    def __init__(self, name: str, table: Mapping[str, Any], problems: list[str]) -> None:
        self.name = name
        self.table = table
        self.problems = problems
        self.used: set[str] = set()

    def _get(self, key: str) -> Any:
        self.used.add(key)
        return self.table.get(key)

    def problem(self, key: str, value: Any, expected: str) -> None:
        self.problems.append(f"{self.name}.{key} = {shown(value)!r}: expected {expected}")

    def number(self, key: str, default: float, *, low: float = 0.0, low_open: bool = True,
               high: float = math.inf) -> float:
        value = self._get(key)
        if value is None:
            return default
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        below = number <= low if low_open else number < low
        if math.isnan(number) or math.isinf(number) or below or number > high:
            bound = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if high < math.inf else "")
            self.problem(key, value, f"a number {bound}")
            return default
        return number

    def integer(self, key: str, default: int, *, low: int = 1, high: int | None = None) -> int:
        value = self._get(key)
        if value is None:
            return default
        try:
            number = int(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else None
        except ValueError:
            number = None
        if number is None or number < low or (high is not None and number > high):
            self.problem(key, value, f"a whole number >= {low}" + (f" and <= {high}" if high else ""))
            return default
        return number

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        self.problem(key, value, "true or false")
        return default

    def string(self, key: str, default: str | None, *, choices: tuple[str, ...] = ()) -> str | None:
        value = self._get(key)
        if value is None or value == "":
            return default
        if not isinstance(value, str) or (choices and value.lower() not in choices):
            self.problem(key, value, " or ".join(choices) if choices else "a string")
            return default
        return value.lower() if choices else value

    def strings(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        # A list whose default is empty may be empty too (revoked_kids cleared again, no verify_urls).
        if not isinstance(value, list) or (not value and default) or not all(isinstance(v, str) and v for v in value):
            self.problem(key, value, "a non-empty list of strings")
            return default
        return tuple(value)

    def path(self, key: str) -> Path | None:
        value = self.string(key, None)
        return Path(value) if value else None

    def listen(self, key: str, default: Listen | None, *, optional: bool = False) -> Listen | None:
        value = self._get(key)
        if value is None:
            return default
        if optional and value in ("", "off"):
            return None
        host, sep, port = str(value).rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            self.problem(key, value, "host:port with a port from 0 to 65535" + (" or 'off'" if optional else ""))
            return default
        return Listen(host, int(port))

    def read(self, setting: Setting, default: Any = REQUIRED) -> Any:
        """One declared setting, by its kind and bounds; its declared default (None if required) when unset."""
        key = setting.name
        if default is REQUIRED:
            default = None if setting.default is REQUIRED else setting.default
        if setting.kind == "number":
            return self.number(key, default, low=0.0 if setting.low is None else setting.low,
                               low_open=setting.low_open, high=math.inf if setting.high is None else setting.high)
        if setting.kind == "integer":
            return self.integer(key, default, low=1 if setting.low is None else int(setting.low),
                                high=None if setting.high is None else int(setting.high))
        if setting.kind == "boolean":
            return self.boolean(key, default)
        if setting.kind == "strings":
            return self.strings(key, default)
        if setting.kind == "path":
            return self.path(key) or default
        if setting.kind == "listen":
            return self.listen(key, default, optional=setting.optional)
        if setting.kind == "url":
            return read_url(self, key) or default
        return self.string(key, default, choices=setting.choices)

    def build(self, cls: type[T], **given: Any) -> T:
        """An instance of a section's dataclass: ``given`` values as they are, every other field read."""
        values = {s.name: self.read(s) for s in declared(cls, self.name) if s.name not in given}
        return cls(**values, **given)

    def given(self) -> frozenset[str]:
        """The keys the table sets (the file's, or the environment's laid over it), as opposed to defaults."""
        return frozenset(key for key in self.table if isinstance(key, str))

    def check_unknown(self) -> None:
        for key in sorted(set(self.table) - self.used):
            self.problems.append(f"{self.name}.{key}: unknown key")


def read_file(path: Path, problems: list[str]) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        problems.append(f"config file {str(path)!r}: cannot be read ({exc.strerror or exc})")
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"config file {str(path)!r}: not valid TOML ({exc})")
    return {}


def table_section(data: Mapping[str, Any], name: str, problems: list[str]) -> Section:
    table = data.get(name, {})
    if not isinstance(table, dict):
        problems.append(f"{name} = {shown(table)!r}: expected a table")
        table = {}
    return Section(name, table, problems)


def read_url(section: Section, key: str) -> str | None:
    value = section.string(key, None)
    if value is not None and not value.startswith(("http://", "https://")):
        section.problem(key, value, "an http:// or https:// URL")
        return None
    return value


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_redis_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    db = parts.path.strip("/") or "0"
    return parts.scheme in ("redis", "rediss") and bool(parts.hostname) and db.isdigit() and not parts.query


