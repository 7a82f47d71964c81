"""docs/watchlists.md and README.md stay true: every `example` block runs through the
real matcher.

An example block is a fenced block whose info string is `example`, made of `key: value`
lines: query (required), title, text, exclude, case_sensitive_terms (comma-separated),
and either `matches: yes|no` or `error: column N`. In title and text, `\\n` is a line
break and `\\uXXXX` a character.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from watchdesk.errors import QuerySyntaxError
from watchdesk.language.query import parse_query
from watchdesk.matching.match import compile_matcher
from watchdesk.models import Article, Watchlist

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "docs" / "watchlists.md", ROOT / "README.md")
BLOCK = re.compile(r"^```example\n(.*?)^```$", re.MULTILINE | re.DOTALL)
KEYS = {"query", "title", "text", "exclude", "case_sensitive_terms", "matches", "error"}


def unescape(value: str) -> str:
    value = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), value)
    return value.replace("\\n", "\n")


def examples(doc: Path) -> list[tuple[str, dict[str, str]]]:
    text = doc.read_text(encoding="utf-8")
    out = []
    for m in BLOCK.finditer(text):
        where = f"{doc.name}:{text.count(chr(10), 0, m.start()) + 1}"
        fields = {}
        for raw in m.group(1).splitlines():
            key, sep, value = raw.partition(": ")
            assert sep and key in KEYS, f"{where}: bad example line {raw!r}"
            fields[key] = value
        assert "query" in fields, f"{where}: example without a query"
        assert ("matches" in fields) != ("error" in fields), where
        out.append((where, fields))
    return out


EXAMPLES = [example for doc in DOCS for example in examples(doc)]


@pytest.mark.parametrize(("where", "ex"), EXAMPLES, ids=[w for w, _ in EXAMPLES])
def test_example(where: str, ex: dict[str, str]) -> None:
    cs = tuple(t.strip() for t in ex.get("case_sensitive_terms", "").split(",") if t.strip())
    if "error" in ex:
        column = int(ex["error"].removeprefix("column "))
        with pytest.raises(QuerySyntaxError) as e:
            parse_query(ex["query"], case_sensitive_terms=cs)
        assert e.value.column == column, f"{where}: {e.value}"
        return
    exclude = (ex["exclude"],) if "exclude" in ex else ()
    watchlist = Watchlist("doc", (ex["query"],), exclude=exclude, case_sensitive_terms=cs)
    article = Article(title=unescape(ex.get("title", "")), text=unescape(ex.get("text", "")))
    hits = compile_matcher([watchlist]).match(article)
    assert ex["matches"] in ("yes", "no"), f"{where}: matches: yes or no"
    assert bool(hits) == (ex["matches"] == "yes"), f"{where}: {ex}"


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_every_construct_has_an_example(doc: Path) -> None:
    found = examples(doc)
    queries = [ex["query"] for _, ex in found]
    constructs = {
        "word": r"^\w+$",
        "prefix": r"\w\*",
        "phrase": r'"[^"]+ [^"]+"',
        "hyphen": r"\w-\w",
        "apostrophe": r"\w'\w",
        "AND": r"\bAND\b",
        "adjacent AND": r"^\w+ \w+$",
        "OR": r"\bOR\b",
        "NOT": r"\bNOT\b",
        "-term": r"(^| )-\w",
        "parentheses": r"\(",
        "NEAR": r"NEAR/\d+",
        "title:": r"title:",
        "text:": r"text:",
        "regex": r"/.+/",
    }
    missing = [name for name, rx in constructs.items() if not any(re.search(rx, q) for q in queries)]
    assert not missing, f"{doc.name} has no example of {missing}"
    assert any("case_sensitive_terms" in ex for _, ex in found)
    assert any("exclude" in ex for _, ex in found)
    assert sum("error" in ex for _, ex in found) >= (5 if doc.name == "watchlists.md" else 1)
    assert len(found) >= (50 if doc.name == "watchlists.md" else 15)
