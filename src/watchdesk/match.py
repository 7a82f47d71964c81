"""Compile watchlists into one matcher; Article -> list[Hit].

First version: each `match` query is a list of words and "quoted phrases" that must all
occur (case-insensitive, whole words), `OR` between alternatives; `exclude` vetoes.
The interface (compile_matcher, Matcher.match) is what the pipeline relies on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .models import Article, Hit, TermMatch, Watchlist

_TERM = re.compile(r'"([^"]*)"|(\S+)')
SNIPPET_WORDS = 30


def _terms(query: str) -> list[list[str]]:
    """'a "b c" OR d' -> [['a', 'b c'], ['d']]"""
    groups: list[list[str]] = [[]]
    for m in _TERM.finditer(query):
        phrase, word = m.group(1), m.group(2)
        if word == "OR":
            groups.append([])
        elif word == "AND":
            continue
        else:
            text = phrase if phrase is not None else word
            if text.strip():
                groups[-1].append(text)
    return [g for g in groups if g]


def _pattern(term: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in term.split()]
    return re.compile(r"(?<!\w)" + r"\W+".join(words) + r"(?!\w)", re.IGNORECASE)


@dataclass(frozen=True)
class _Query:
    source: str
    alternatives: tuple[tuple[tuple[str, re.Pattern[str]], ...], ...]

    def find(self, fields: dict[str, str]) -> list[TermMatch] | None:
        for terms in self.alternatives:
            found: list[TermMatch] = []
            for term, pattern in terms:
                for name, text in fields.items():
                    m = pattern.search(text)
                    if m:
                        found.append(TermMatch(term, name, m.start(), m.end()))
                        break
                else:
                    break
            else:
                return found
        return None


def _compile(query: str) -> _Query:
    alts = tuple(tuple((t, _pattern(t)) for t in group) for group in _terms(query))
    return _Query(query, alts)


def make_snippet(text: str, start: int, end: int) -> tuple[str, tuple[tuple[int, int], ...]]:
    """About SNIPPET_WORDS words around text[start:end], and where the match sits in it."""
    half = SNIPPET_WORDS // 2
    before = text[:start].split()
    after = text[end:].split()
    head = " ".join(before[-half:])
    tail = " ".join(after[:half])
    middle = " ".join(text[start:end].split())
    prefix = ("… " if len(before) > half else "") + (head + " " if head else "")
    snippet = prefix + middle + (" " + tail if tail else "") + (" …" if len(after) > half else "")
    return snippet, ((len(prefix), len(prefix) + len(middle)),)


class Matcher:
    def __init__(self, watchlists: Sequence[Watchlist]):
        self._lists = [
            (w, [_compile(q) for q in w.match], [_compile(q) for q in w.exclude]) for w in watchlists
        ]

    def match(self, article: Article, *, feed_name: str = "", feed_tags: Iterable[str] = ()) -> list[Hit]:
        fields = {"title": article.title, "text": article.text}
        scopes = {feed_name, *feed_tags}
        hits: list[Hit] = []
        for watchlist, matches, excludes in self._lists:
            if watchlist.feeds and not scopes.intersection(watchlist.feeds):
                continue
            if any(q.find(fields) is not None for q in excludes):
                continue
            for q in matches:
                found = q.find(fields)
                if found:
                    first = next((t for t in found if t.field == "text"), found[0])
                    snippet, marks = make_snippet(fields[first.field], first.start, first.end)
                    hits.append(Hit(watchlist.name, q.source, tuple(found), snippet, marks))
                    break
        return hits


def compile_matcher(watchlists: Sequence[Watchlist]) -> Matcher:
    return Matcher(watchlists)
