"""The code in README.md and docs/*.md, checked against the repository for tests/test_docs.py: make targets and
variables, jwksd command lines (the real argparse parser), python -m modules, repository paths, json and yaml
blocks. Settings are tests/docs_settings.py's. Each check returns problems in words."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import re
import shlex
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import yaml

from jwksd.__main__ import _parser as jwksd_parser
from tests.markdown import ROOT, SHELLS, Document

# Paths made by a make target, and AWS resource names that look like paths: neither is in the repository.
NOT_IN_REPOSITORY = ("fuzz/crashes", "build/", ".venv/", "jwksd/private-keys", "jwksd/demo/")
_PATH_SPAN = re.compile(r"^[\w.-]+(?:/[\w.*#-]*)+(?:::\S+)?$|^[\w.-]+\.\w+(?:::\S+)?$")
CODE_DIRS = ("jwksd", "tests", "bench", "fuzz")


@cache
def make_targets() -> frozenset[str]:
    """Every target make knows from the Makefile (its database, variables expanded)."""
    out = subprocess.run(["make", "-pRrq", "-f", "Makefile", ":"], cwd=ROOT, capture_output=True, text=True,
                         timeout=30, check=False).stdout
    targets: set[str] = set()
    for line in out.splitlines():
        match = re.match(r"^([^:=\t #][^:=]*?):(?!=)", line)
        if match and not re.search(r"\s(:?=|\?=|\+=)\s", line):
            targets.update(match.group(1).split())
    return frozenset(targets)


@cache
def _sources_text() -> str:
    """The Makefile and the code make runs, where a make variable or an environment variable is read."""
    code = [path for top in ("jwksd", "bench", "tests", "fuzz") for path in (ROOT / top).rglob("*.py")
            if not path.name.startswith("test_")]  # a test naming a variable does not read it
    files = [ROOT / "Makefile", *ROOT.glob("scripts/*"), *code]
    return "\n".join(path.read_text(errors="replace") for path in files if path.is_file())


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def jwksd_problems(argv: list[str], *, synopsis: bool) -> list[str]:
    """Subcommands and --flags must exist; a complete command line (not a synopsis) must also parse."""
    node, words, index = jwksd_parser(), ["jwksd"], 0
    while index < len(argv) and argv[index] in _subparsers(node):
        node = _subparsers(node)[argv[index]]
        words.append(argv[index])
        index += 1
    if index < len(argv) and _subparsers(node) and not argv[index].startswith(("-", "[")):
        return [f"{' '.join(words)} has no subcommand {argv[index]!r}"]
    flags = {option for action in node._actions for option in action.option_strings}
    problems = [f"{' '.join(words)} has no option {name}" for word in argv[index:]
                if (name := word.strip("[]").split("=")[0]).startswith("-") and name != "-" and name not in flags]
    if not synopsis and not problems:
        with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.redirect_stdout(io.StringIO()):
            try:
                jwksd_parser().parse_args(argv)
            except SystemExit as exc:
                if exc.code:
                    problems.append(f"jwksd {' '.join(argv)}: {err.getvalue().strip().splitlines()[-1]}")
    return problems


def make_problems(argv: list[str], assignments: list[str]) -> list[str]:
    """Each target named must exist; each VAR=value must be a variable the Makefile or its code reads."""
    problems = [f"make has no target {word!r}" for word in argv if "=" not in word and not word.startswith("-")
                and word not in make_targets()]
    for variable in [word.split("=")[0] for word in (*assignments, *argv) if "=" in word]:
        if not re.search(rf"\b{re.escape(variable)}\b", _sources_text()):
            problems.append(f"make variable {variable} is read by nothing")
    return problems


def _commands(text: str) -> Iterator[tuple[int, list[str]]]:
    """Simple commands of a shell text (after variable assignments made in it), with their line offsets."""
    variables: dict[str, str] = {}
    for offset, line in enumerate(text.replace("\\\n", " ").splitlines()):
        expanded = line
        for name, value in variables.items():
            expanded = re.sub(rf"\${{?{name}\b}}?", value, expanded)
        lexer = shlex.shlex(expanded, posix=True, punctuation_chars=True)
        lexer.whitespace_split, lexer.commenters = True, "#"
        try:
            tokens = list(lexer)
        except ValueError:
            continue  # not a shell line (prose in a span); a broken shell line shows in its own check
        command: list[str] = []
        for token in [*tokens, ";"]:
            if token and set(token) <= set("();<>|&"):
                if command:
                    yield offset, list(command)  # the caller may take words off its copy
                    if len(command) == 1 and re.match(r"^[A-Za-z_]\w*=", command[0]):
                        name, _, value = command[0].partition("=")
                        variables[name] = shlex.quote(value) if " " not in value else value
                command = []
            else:
                command.append(token)


def commands(doc: Document) -> Iterator[tuple[str, str, list[str], str, list[str]]]:
    """(where, snippet kind, VAR=value prefixes, program, arguments) of each command in shell code and spans."""
    for snippet in doc.snippets:
        if snippet.kind not in SHELLS and snippet.kind != "span":
            continue
        for offset, words in _commands(snippet.text):
            assignments = []
            while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
                assignments.append(words.pop(0))
            if words and not (snippet.kind == "span" and offset == 0 and snippet.text.split()[0] != words[0]):
                yield doc.where(snippet.line + offset), snippet.kind, assignments, words[0], words[1:]


def is_jwksd(program: str) -> bool:
    return program == "jwksd" or program.endswith("/jwksd")


def command_problems(doc: Document) -> list[str]:
    """Every make, jwksd and python -m command in shell blocks and inline code."""
    problems = []
    for where, kind, assignments, program, argv in commands(doc):
        found: list[str] = []
        if is_jwksd(program):
            synopsis = kind == "span" or any(mark in " ".join(argv) for mark in ("[", "|", "..."))
            found = jwksd_problems(argv, synopsis=synopsis)
        elif program == "make":
            found = make_problems(argv, assignments)
        elif re.match(r"^(.*/)?python3?(\.\d+)?$", program) and argv[:1] == ["-m"] and len(argv) > 1:
            module = argv[1]
            if module.split(".")[0] in {"jwksd", "bench", "tests", "fuzz"} and not _module_exists(module):
                found = [f"python -m {module}: no such module"]
        problems += [f"{where}: {problem}" for problem in found]
        problems += [f"{where}: {problem}" for word in argv for problem in path_problems(word)]
    return problems


def offline_commands(doc: Document) -> Iterator[tuple[str, dict[str, str], list[str]]]:
    """``jwksd check-config`` and ``jwksd validate`` lines whose files are all in the repository: runnable here."""
    for where, kind, assignments, program, argv in commands(doc):
        if kind == "span" or not is_jwksd(program) or argv[:1] not in (["check-config"], ["validate"]):
            continue
        files = [word for word in argv[1:] if not word.startswith("-")]
        if files and all((ROOT / word).is_file() for word in files):
            yield where, dict(word.split("=", 1) for word in assignments), argv


def _module_exists(module: str) -> bool:
    parts = module.split(".")
    return (ROOT.joinpath(*parts).with_suffix(".py").is_file()
            or ROOT.joinpath(*parts, "__main__.py").is_file()
            or importlib.util.find_spec(module) is not None)


def path_problems(word: str, last_test_file: list[Path] | None = None) -> list[str]:
    """A word naming a repository path must exist; ``file.py::test_name`` must name a test in it."""
    word = word.removeprefix("file://")
    if word.startswith("::") and last_test_file:
        return _test_name_problems(last_test_file[0], word[2:])
    if not _PATH_SPAN.match(word):
        return []
    path_part, _, test_name = word.partition("::")
    top = path_part.split("/")[0]
    if re.fullmatch(r"[\w*]+\.py|[a-z_]+/", path_part) and top not in {p.name for p in ROOT.iterdir()}:
        # a module or package named alone (``publish.py``, ``jwk*.py``, ``sources/``): somewhere in the code
        if not any(any((ROOT / code).rglob(path_part.rstrip("/"))) for code in CODE_DIRS):
            return [f"{path_part}: no such module in {', '.join(CODE_DIRS)}"]
        return []
    if top not in {p.name for p in ROOT.iterdir()} - {".git"} and top != ".venv":
        return []
    matches = list(ROOT.glob(path_part.rstrip("/"))) if "*" in path_part else [ROOT / path_part]
    if not any(path.exists() for path in matches):
        elsewhere = any(path_part.startswith(prefix) for prefix in NOT_IN_REPOSITORY)
        return [] if elsewhere else [f"{path_part}: no such file in the repository"]
    if last_test_file is not None and path_part.endswith(".py"):
        last_test_file[:] = [ROOT / path_part]
    return _test_name_problems(ROOT / path_part, test_name) if test_name else []


def _test_name_problems(path: Path, name: str) -> list[str]:
    function = re.split(r"[\[(]", name)[0]
    if re.search(rf"^(async )?def {re.escape(function)}\(", path.read_text(), re.MULTILINE):
        return []
    return [f"{path.relative_to(ROOT)} has no test {function}"]


def span_path_problems(doc: Document) -> list[str]:
    """Paths in inline code, ``::test_name`` referring to the file last named before it."""
    last: list[Path] = []
    return [f"{doc.where(snippet.line)}: {problem}" for snippet in doc.snippets if snippet.kind == "span"
            for problem in path_problems(snippet.text, last)]


def data_problems(doc: Document) -> list[str]:
    """json blocks must be JSON, yaml blocks YAML."""
    problems = []
    for snippet in doc.snippets:
        try:
            if snippet.kind == "json":
                json.loads(snippet.text)
            elif snippet.kind in ("yaml", "yml"):
                list(yaml.safe_load_all(snippet.text))
        except (ValueError, yaml.YAMLError) as exc:
            problems.append(f"{doc.where(snippet.line)}: not {snippet.kind}: {str(exc).splitlines()[0]}")
    return problems
