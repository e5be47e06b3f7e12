"""The settings in README.md and docs/*.md, checked with the real config reader for tests/test_docs.py: TOML
snippets (commented-out settings included), settings named in inline code, and JWKSD_* variables."""

from __future__ import annotations

import re
import tempfile
import tomllib
from functools import cache
from pathlib import Path

from jwksd.config import load_config
from jwksd.errors import ConfigError
from tests.markdown import ROOT, Document

_ENV = re.compile(r"\bJWKSD_[A-Z0-9_]*[A-Z0-9]\b")
_SETTING_SPAN = re.compile(r"^\[?([a-z_]+)\]?[. ]([a-z_0-9]+)(\s*=.*)?$")
_TABLE_SPAN = re.compile(r"^\[\[?[a-z_.]+\]\]?$")
FILE_SUFFIXES = {"py", "md", "toml", "json", "yml", "yaml", "cfg", "txt"}  # server.py is a module
SOURCE_KINDS = ("secretsmanager", "file", "http", "dynamodb")


def _uncomment(text: str) -> str:
    """Commented-out settings (``# key = value``, ``# [table]``, several per line) as live TOML."""
    lines = []
    for line in text.splitlines():
        body = line.strip().removeprefix("#").strip()
        if line.strip().startswith("#") and (re.match(r"^[a-z_0-9]+\s*=", body) or re.match(r"^\[[\w.]+\]", body)):
            lines.extend(re.split(r",\s*(?=[a-z_0-9]+\s*=)", body))
        else:
            lines.append(line)
    return "\n".join(lines)


def is_unknown_setting(problem: str) -> bool:
    """A config problem that says a key or section is not a setting (test_docs proves this recognises one)."""
    return problem.endswith(("unknown key", "unknown section"))


def config_problems(text: str, *, environ: dict[str, str] | None = None) -> list[str]:
    """What load_config says about a TOML text, as written and with its commented-out settings live."""
    problems = []
    for variant in dict.fromkeys((text, _uncomment(text))):
        try:
            tomllib.loads(variant)
        except tomllib.TOMLDecodeError as exc:
            problems.append(f"not TOML: {exc}")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, "jwksd.toml")
            path.write_text(variant)
            try:
                load_config(path, environ or {}, need_source=False)
            except ConfigError as exc:
                problems += exc.problems
    return list(dict.fromkeys(problems))


def toml_problems(doc: Document) -> list[str]:
    """Every TOML snippet (fenced or a heredoc) loads with no problem, commented-out settings included."""
    return [f"{doc.where(snippet.line)}: {problem}" for snippet in doc.snippets if snippet.kind == "toml"
            for problem in config_problems(snippet.text)]


@cache
def config_sections() -> frozenset[str]:
    """The tables of config/jwksd.example.toml (which a config test holds to the declarations), and [[sources]]."""
    return frozenset({*tomllib.loads((ROOT / "config" / "jwksd.example.toml").read_text()), "source", "sources"})


def setting_problems(section: str, key: str, value: str | None) -> list[str]:
    """``section.key`` must be a setting: the config reader does not call it unknown (for any source kind)."""
    assignment = f"{key} = {value if value else '0'}"
    kinds = SOURCE_KINDS if section == "source" else ("",)
    verdicts = [[p for p in config_problems(f"[{section}]\n" + (f'kind = "{kind}"\n' if kind else "") + assignment)
                 if is_unknown_setting(p)] for kind in kinds]
    return [] if any(not verdict for verdict in verdicts) else [f"{section}.{key} is not a setting"]


@cache
def _environment_names() -> str:
    """Where a JWKSD_* variable is declared: the config package and the example config that mirrors it."""
    files = [ROOT / "config" / "jwksd.example.toml", *(ROOT / "jwksd").rglob("*.py")]
    return "\n".join(path.read_text() for path in files)


def reference_problems(doc: Document) -> list[str]:
    """Settings named in inline code (``refresh.interval_s``, ``[validation] max_keys``) and every JWKSD_* name."""
    problems = []
    for snippet in doc.snippets:
        if snippet.kind == "span" and _TABLE_SPAN.match(snippet.text):
            found = [p for p in config_problems(snippet.text) if is_unknown_setting(p)]
        elif snippet.kind == "span" and (match := _SETTING_SPAN.match(snippet.text)) \
                and match.group(1) in config_sections() and match.group(2) not in FILE_SUFFIXES:
            found = setting_problems(match.group(1), match.group(2), (match.group(3) or "").strip(" =") or None)
        else:
            found = []
        problems += [f"{doc.where(snippet.line)}: {problem}" for problem in found]
    text = doc.prose + "\n".join(snippet.text for snippet in doc.snippets)
    for name in sorted(set(_ENV.findall(text))):
        if not re.search(rf"\b{name}\b", _environment_names()):
            problems.append(f"{doc.name}: {name} is read by nothing")
    return problems
