"""Markdown for tests/test_docs.py: a document's prose, its code (fenced blocks, inline spans, heredocs),
its links and its headings' anchors, and the check that every relative link resolves."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHELLS = {"sh", "bash", "shell", "console", "", "text"}  # an unlabelled block is read as shell too
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
_SPAN = re.compile(r"(`+)((?:(?!\1).)+?)\1", re.DOTALL)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEREDOC = re.compile(r"<<-?\s*'?\"?(\w+)'?\"?")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")


@dataclass(frozen=True)
class Snippet:
    """Code from a document: a fenced block, an inline span, or a heredoc inside a shell block."""

    kind: str  # the fence's language, "span", or the heredoc's delimiter in lower case
    text: str
    line: int


@dataclass(frozen=True)
class Document:
    """A Markdown file split into prose (fences blanked, line numbers kept) and snippets."""

    path: Path
    prose: str
    snippets: tuple[Snippet, ...]

    @classmethod
    def read(cls, path: Path, text: str | None = None) -> Document:
        lines = (path.read_text() if text is None else text).splitlines()
        prose, snippets, fence, body, start, kind = [], [], "", [], 0, ""
        for number, line in enumerate(lines, 1):
            match = _FENCE.match(line)
            if not fence and match:
                fence, kind, body, start = match.group(1), match.group(2).lower(), [], number + 1
                prose.append("")
            elif fence and line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                snippets.extend(_split_heredocs(Snippet(kind, "\n".join(body), start)))
                fence = ""
                prose.append("")
            elif fence:
                body.append(line)
                prose.append("")
            else:
                prose.append(line)
        text_of_prose = "\n".join(prose)
        for match in _SPAN.finditer(text_of_prose):
            line = text_of_prose.count("\n", 0, match.start()) + 1
            snippets.append(Snippet("span", " ".join(match.group(2).split()), line))
        return cls(path, text_of_prose, tuple(sorted(snippets, key=lambda snippet: snippet.line)))

    @property
    def name(self) -> str:
        return str(self.path.relative_to(ROOT)) if self.path.is_relative_to(ROOT) else self.path.name

    def where(self, line: int) -> str:
        return f"{self.name}:{line}"

    def anchors(self) -> frozenset[str]:
        """The anchors of the headings, repeated ones numbered as GitHub numbers them."""
        seen: dict[str, int] = {}
        result = set()
        for line in self.prose.splitlines():
            match = _HEADING.match(line)
            if match:
                base = slug(match.group(1))
                result.add(f"{base}-{seen[base]}" if base in seen else base)
                seen[base] = seen.get(base, 0) + 1
        return frozenset(result)

    def links(self) -> Iterator[tuple[int, str]]:
        """Each Markdown link target outside code, with its line."""
        prose = _SPAN.sub(lambda match: " " * len(match.group(0)), self.prose)
        for match in _LINK.finditer(prose):
            yield prose.count("\n", 0, match.start()) + 1, match.group(1)


def _split_heredocs(block: Snippet) -> list[Snippet]:
    """A shell block without its heredoc bodies, and each body as a snippet of its own."""
    if block.kind not in SHELLS:
        return [block]
    shell, found, lines = [], [], block.text.splitlines()
    index = 0
    while index < len(lines):
        shell.append(lines[index])
        match = _HEREDOC.search(lines[index])
        index += 1
        if match:
            end = next((i for i in range(index, len(lines)) if lines[i].strip() == match.group(1)), len(lines))
            found.append(Snippet(match.group(1).lower(), "\n".join(lines[index:end]), block.line + index))
            shell.extend([""] * (end + 1 - index))
            index = end + 1
    return [Snippet(block.kind, "\n".join(shell), block.line), *found]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@cache
def anchors_of_file(path: Path) -> frozenset[str]:
    return Document.read(path).anchors()


def link_problems(doc: Document) -> list[str]:
    """Relative links must name an existing file in the repository, and an anchor one of its headings."""
    problems = []
    for line, target in doc.links():
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # http:, https:, mailto: are not followed: no network in the tests
        file_part, _, anchor = target.partition("#")
        dest = (doc.path.parent / file_part).resolve() if file_part else doc.path
        if file_part and (not dest.is_relative_to(ROOT) or not dest.exists()):
            problems.append(f"{doc.where(line)}: link {target!r}: no such file")
            continue
        found = doc.anchors() if not file_part else anchors_of_file(dest) if dest.suffix == ".md" else frozenset()
        if anchor and anchor not in found:
            problems.append(f"{doc.where(line)}: link {target!r}: no heading #{anchor} in {dest.name}")
    return problems


