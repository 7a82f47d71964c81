"""The watchlist language and the text analysis beneath it.

In: query strings and text. Out: query trees (query, querytree) and normalised tokens
(textnorm, textfold, analyzed, codepages). Shared by config (checking queries), matching
(running them) and store (the search index holds these same tokens)."""

from .query import parse_query
from .querytree import FIELDS, And, Field, Near, Node, Not, Or, Regex, Term, walk
from .textnorm import Analyzed, analyze, fold_exact, fts_tokens

__all__ = [
    "FIELDS",
    "Analyzed",
    "And",
    "Field",
    "Near",
    "Node",
    "Not",
    "Or",
    "Regex",
    "Term",
    "analyze",
    "fold_exact",
    "fts_tokens",
    "parse_query",
    "walk",
]
