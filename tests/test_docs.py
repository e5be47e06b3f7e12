"""README.md and docs/*.md: every link resolves, every command and setting shown is real, every path exists."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jwksd.config.settings import env_keys
from tests.docs_check import command_problems, data_problems, offline_commands, span_path_problems
from tests.docs_settings import config_problems, is_unknown_setting, reference_problems, toml_problems
from tests.markdown import ROOT, Document, link_problems, slug

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NAMES = [str(path.relative_to(ROOT)) for path in DOCS]

SYNTHETIC = """# Synthetic page

## A heading, with `code`: and punctuation

[good](#a-heading-with-code-and-punctuation) [good file](../README.md#the-two-commands)
[missing file](nowhere.md) [missing anchor](#no-such-heading) [other file's anchor](fleet.md#no-such-heading)
[external](https://example.com/x) `[not a link](inside-code.md)`

```sh
make test
make no-such-target
make soak NO_SUCH_VARIABLE=1
jwksd check-config --config /etc/jwksd/jwksd.toml
jwksd serve --no-such-flag
jwksd no-such-command
jwksd keys sign --ttl-s 60
J=.venv/bin/jwksd; C="--config x.toml"
$J keys rotate $C --now 2027-01-01T00:00:00Z --no-such-flag
python -m bench.no_such_module
install -m 0644 systemd/no-such.service /etc/systemd/system/
```

`jwksd keys rotate [--config FILE] [--frobnicate]` and `jwksd keys sign` are named here.

```toml
[refresh]
interval_s = 30
no_such_setting = 1
# also_no_such_setting = 2, max_age_s = 600
```

`refresh.interval_s`, `[validation] max_keys`, `source.url`, `refresh.no_such_s`, `[no_such_table]`,
`JWKSD_LISTEN`, `JWKSD_NO_SUCH_VARIABLE`, `tests/test_docs.py::test_checker_finds_each_kind_of_mistake`,
`::test_no_such_test`, `config/no-such.toml`, `fuzz/crashes/`, `publish.py`, `jwk*.py`, `sources/`,
`no_such_module.py`, `no_such_package/`.

```json
{"keys": [],}
```

```yaml
services: [app
```

```sh
jwksd check-config --config tests/test_docs.py
jwksd validate --json /etc/not-in-the-repository.json
```
"""


def run_offline(doc: Document) -> list[str]:
    """Run the page's offline commands with only PATH, HOME and their own VAR=value; those that fail."""
    failures = []
    for where, assignments, argv in offline_commands(doc):
        env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/"), **assignments}
        result = subprocess.run([sys.executable, "-m", "jwksd", *argv], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=60, check=False)
        if result.returncode != 0:
            failures.append(f"{where}: exit {result.returncode}")
    return failures


def synthetic() -> Document:
    return Document.read(ROOT / "docs" / "synthetic.md", SYNTHETIC)


@pytest.mark.parametrize("path", DOCS, ids=NAMES)
def test_links_resolve(path: Path) -> None:
    """Every relative link names a file in the repository, and its anchor a heading there."""
    assert link_problems(Document.read(path)) == []


@pytest.mark.parametrize("path", DOCS, ids=NAMES)
def test_commands_are_real(path: Path) -> None:
    """Every make target and variable, jwksd command line and python -m module shown exists and parses."""
    assert command_problems(Document.read(path)) == []


@pytest.mark.parametrize("path", DOCS, ids=NAMES)
def test_toml_snippets_load(path: Path) -> None:
    """Every TOML snippet, commented-out settings included, loads with the real config reader."""
    assert toml_problems(Document.read(path)) == []


@pytest.mark.parametrize("path", DOCS, ids=NAMES)
def test_settings_variables_and_paths_are_real(path: Path) -> None:
    """Settings and JWKSD_* variables named in the text exist, and so does every repository path."""
    doc = Document.read(path)
    assert reference_problems(doc) + span_path_problems(doc) == []


@pytest.mark.parametrize("path", DOCS, ids=NAMES)
def test_offline_commands_succeed(path: Path) -> None:
    """Each check-config or validate line whose files are in the repository runs here and exits 0."""
    assert run_offline(Document.read(path)) == []


@pytest.mark.parametrize("path", DOCS, ids=NAMES)
def test_json_and_yaml_blocks_parse(path: Path) -> None:
    """Every json block is JSON and every yaml block is YAML: what a reader pastes must load."""
    assert data_problems(Document.read(path)) == []


def test_readme_is_a_newcomers_page() -> None:
    """README.md names the two commands and links the index, and stays a few hundred lines."""
    text = (ROOT / "README.md").read_text()
    assert "make run" in text and "make test" in text
    assert "](docs/README.md)" in text
    assert len(text.splitlines()) <= 300


def test_index_links_every_page() -> None:
    """docs/README.md links every page in docs/, so a new page cannot be left out of it."""
    linked = {target.partition("#")[0] for _, target in Document.read(ROOT / "docs" / "README.md").links()}
    pages = {path.name for path in (ROOT / "docs").glob("*.md")} - {"README.md"}
    assert pages - linked == set()


def test_environment_table_matches_the_declarations() -> None:
    """docs/configuration.md's table names every JWKSD_* variable the config declares, beside its key."""
    documented = {}
    for line in (ROOT / "docs" / "configuration.md").read_text().splitlines():
        cells = line.split(" | ")
        if line.startswith("| `JWKSD_") and cells[0] != "| `JWKSD_CONFIG`":
            variables, keys = re.findall(r"`(JWKSD_\w+)`", cells[0]), re.findall(r"`([a-z_]+\.[a-z_]+)`", cells[1])
            assert len(variables) == len(keys), line
            documented.update(zip(variables, keys, strict=True))
    assert documented == {env: f"{section}.{key}" for env, (section, key) in env_keys().items()}


def test_slug_is_githubs() -> None:
    """Anchors are made as GitHub makes them: lower case, punctuation dropped, spaces to hyphens."""
    assert slug("IAM: least privilege") == "iam-least-privilege"
    assert slug("Running it: the timer") == "running-it-the-timer"
    assert slug("A `make test` run, 2x") == "a-make-test-run-2x"


def test_unknown_setting_is_recognised() -> None:
    """The config reader's verdict on a key or table that is not a setting is what the checks look for."""
    assert [p for p in config_problems("[refresh]\nno_such = 1\n") if is_unknown_setting(p)]
    assert [p for p in config_problems("[no_such]\n") if is_unknown_setting(p)]
    assert not [p for p in config_problems("[refresh]\ninterval_s = 30\n") if is_unknown_setting(p)]


def test_checker_finds_each_kind_of_mistake() -> None:
    """A synthetic page with one of each mistake gets exactly those problems, and nothing for what is right."""
    doc = synthetic()
    assert link_problems(doc) == [
        "docs/synthetic.md:6: link 'nowhere.md': no such file",
        "docs/synthetic.md:6: link '#no-such-heading': no heading #no-such-heading in synthetic.md",
        "docs/synthetic.md:6: link 'fleet.md#no-such-heading': no heading #no-such-heading in fleet.md",
    ]
    assert command_problems(doc) == [
        "docs/synthetic.md:11: make has no target 'no-such-target'",
        "docs/synthetic.md:12: make variable NO_SUCH_VARIABLE is read by nothing",
        "docs/synthetic.md:14: jwksd serve has no option --no-such-flag",
        "docs/synthetic.md:15: jwksd has no subcommand 'no-such-command'",
        "docs/synthetic.md:16: jwksd keys sign --ttl-s 60: jwksd keys sign: error: the following arguments are "
        "required: --claims",
        "docs/synthetic.md:18: jwksd keys rotate has no option --no-such-flag",
        "docs/synthetic.md:19: python -m bench.no_such_module: no such module",
        "docs/synthetic.md:20: systemd/no-such.service: no such file in the repository",
        "docs/synthetic.md:23: jwksd keys rotate has no option --frobnicate",
    ]
    assert toml_problems(doc) == [
        "docs/synthetic.md:26: refresh.no_such_setting: unknown key",
        "docs/synthetic.md:26: refresh.also_no_such_setting: unknown key",
    ]
    assert reference_problems(doc) == [
        "docs/synthetic.md:32: refresh.no_such_s is not a setting",
        "docs/synthetic.md:32: no_such_table: unknown section",
        "docs/synthetic.md: JWKSD_NO_SUCH_VARIABLE is read by nothing",
    ]
    assert span_path_problems(doc) == [
        "docs/synthetic.md:34: tests/test_docs.py has no test test_no_such_test",
        "docs/synthetic.md:34: config/no-such.toml: no such file in the repository",
        "docs/synthetic.md:35: no_such_module.py: no such module in jwksd, tests, bench, fuzz",
        "docs/synthetic.md:35: no_such_package/: no such module in jwksd, tests, bench, fuzz",
    ]
    assert run_offline(doc) == ["docs/synthetic.md:46: exit 2"]  # the second names a file outside the repository
    assert data_problems(doc) == [
        "docs/synthetic.md:38: not json: Expecting property name enclosed in double quotes: line 1 column 13 (char 12)",
        "docs/synthetic.md:42: not yaml: while parsing a flow sequence",
    ]


def test_every_metric_is_documented() -> None:
    """Each metric a daemon exports is named in docs/ (operations.md's table, or the page of its feature)."""
    from jwksd.metrics import Metrics

    text = "".join(path.read_text() for path in DOCS)
    missing = [family.name for family in Metrics().registry.collect()
               if not re.search(rf"\b{family.name}(_total|_info)?\b", text)]
    assert missing == []
