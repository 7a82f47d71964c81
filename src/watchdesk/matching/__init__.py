"""Matching: an Article against every watchlist.

In: Watchlists (compiled once into a Matcher) and an Article. Out: Hits with the terms,
their offsets and a snippet (match, literals, snippet); narrow turns a query into the
search index's necessary condition for the archive tools."""

from .match import Matcher, compile_matcher
from .narrow import any_of

__all__ = ["Matcher", "any_of", "compile_matcher"]
