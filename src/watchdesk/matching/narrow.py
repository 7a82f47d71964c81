"""A query tree -> an SQLite FTS5 expression that every matching article satisfies.

The archive indexes each entry's normalised tokens (textnorm.analyze, the matcher's own
tokeniser), so a term's spellings become FTS5 phrases over exactly the tokens the matcher
compares. The expression is only a necessary condition: the matcher decides. Parts that
FTS cannot narrow (NOT, regexes) impose nothing; a query with nothing to narrow on
returns None and the archive is scanned.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..language import And, Field, Near, Node, Not, Or, Regex, Term, parse_query


def _term(term: Term) -> str:
    phrases = []
    for spelling in term.variants():
        tokens = " ".join(token for token, _exact in spelling)
        phrases.append(f'"{tokens}"' + (" *" if term.prefix else ""))
    unique = list(dict.fromkeys(phrases))
    return unique[0] if len(unique) == 1 else "(" + " OR ".join(unique) + ")"


def fts_expression(node: Node) -> str | None:
    if isinstance(node, Term):
        return _term(node)
    if isinstance(node, Field):
        return fts_expression(node.child)
    if isinstance(node, Not | Regex):
        return None
    if isinstance(node, Near):
        return _all([fts_expression(node.left), fts_expression(node.right)])
    if isinstance(node, And):
        return _all([fts_expression(child) for child in node.children])
    if isinstance(node, Or):
        parts = [fts_expression(child) for child in node.children]
        if any(p is None for p in parts):
            return None
        return "(" + " OR ".join(p for p in parts if p) + ")"
    raise TypeError(f"unknown query node {node!r}")


def _all(parts: list[str | None]) -> str | None:
    known = [p for p in parts if p]
    if not known:
        return None
    return known[0] if len(known) == 1 else "(" + " AND ".join(known) + ")"


def any_of(queries: Iterable[str], case_sensitive_terms: Iterable[str] = ()) -> str | None:
    """An expression for 'any of these queries could match' (a watchlist's match list)."""
    parts = [fts_expression(parse_query(q, case_sensitive_terms=case_sensitive_terms)) for q in queries]
    if not parts or any(p is None for p in parts):
        return None
    return " OR ".join(f"({p})" for p in parts if p)
