"""The archive's search index: SQLite's FTS5, or a PostgreSQL tsvector, over the same tokens.

Both index each entry's normalised tokens (language.fts_tokens, the matcher's own
tokeniser) and answer the expression matching/narrow.py writes: quoted phrases of
tokens (`"dark web"`, `"opioid" *` for a prefix) joined by AND and OR. The index only
narrows: an entry it gives is a candidate, and the matcher decides. So on PostgreSQL a
phrase is all of its tokens (adjacency is the matcher's to check), and an entry whose
tokens do not fit a tsvector (1 MB, lexemes of 2 KB) is indexed as UNINDEXED, which
every query includes: never a match missed.
"""

from __future__ import annotations

import re
from typing import Any

from .pg import lexeme
from .sql import is_postgres

UNINDEXED = "watchdesk unindexed"  # a lexeme fts_tokens never makes (it has a space)
MAX_LEXEME_BYTES = 2046
MAX_TSVECTOR_BYTES = 900_000  # PostgreSQL's limit is 1 MB; each lexeme also costs a few bytes


def pg_tokens(tokens: str) -> list[str]:
    """The distinct lexemes of an entry's tokens, or [UNINDEXED] when they do not fit."""
    unique = sorted(set(tokens.lower().split()))
    size = sum(len(t.encode()) + 8 for t in unique)
    if size > MAX_TSVECTOR_BYTES or any(len(t.encode()) > MAX_LEXEME_BYTES for t in unique):
        return [UNINDEXED]
    return unique


def index(db: Any, entry_id: int, tokens: str) -> None:
    """Index a new entry's tokens (in the caller's transaction)."""
    if is_postgres(db):
        db.execute(
            "INSERT INTO entries_search (entry_id, tokens) VALUES (?, array_to_tsvector(?::text[]))",
            [entry_id, pg_tokens(tokens)],
        )
    else:
        db.execute("INSERT INTO entries_fts (rowid, tokens) VALUES (?, ?)", [entry_id, tokens])


def forget(db: Any, rows: list[tuple[int, str]]) -> None:
    """Drop (entry id, the tokens it was indexed with) from the index (retention)."""
    if is_postgres(db):
        db.conn.executemany("DELETE FROM entries_search WHERE entry_id = ?", [(i,) for i, _t in rows])
    else:  # contentless FTS5 (content=''): a row is deleted by giving the tokens it was indexed with
        db.conn.executemany(
            "INSERT INTO entries_fts (entries_fts, rowid, tokens) VALUES ('delete', ?, ?)", rows
        )


def candidates(db: Any, expression: str) -> tuple[str, Any] | None:
    """A subquery of the entry ids that may satisfy `expression`, and its one parameter;
    None when it narrows nothing (every entry is a candidate)."""
    if not is_postgres(db):
        return "SELECT rowid FROM entries_fts WHERE entries_fts MATCH ?", expression
    query = tsquery(expression)
    if query is None:
        return None
    return "SELECT entry_id FROM entries_search WHERE tokens @@ ?::tsquery", query


_TOKEN = re.compile(r'\s*(?:(\()|(\))|(AND|OR)\b|"((?:[^"]|"")*)"(\s*\*)?)')


def tsquery(expression: str) -> str | None:
    """narrow.py's FTS5 expression as a PostgreSQL tsquery (UNINDEXED entries always
    included); None when it has a part a tsquery cannot say (then nothing is narrowed)."""
    out: list[str] = []
    pos = 0
    text = expression.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"not a search expression at {pos}: {expression!r}")
        pos = m.end()
        opened, closed, operator, phrase, prefix = m.groups()
        if opened:
            out.append("(")
        elif closed:
            out.append(")")
        elif operator:
            out.append(" & " if operator == "AND" else " | ")
        else:
            words = phrase.replace('""', '"').lower().split()
            if not words:
                return None
            parts = [lexeme(w) for w in words]
            if prefix:
                parts[-1] += ":*"
            out.append("(" + " & ".join(parts) + ")")
        while pos < len(text) and text[pos].isspace():
            pos += 1
    if not out:
        return None
    return "(" + "".join(out) + ") | " + lexeme(UNINDEXED)
