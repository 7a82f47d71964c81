"""Matching: an Article against every watchlist.

In: Watchlists (compiled once into a Matcher) and an Article. Out: Hits with the terms,
their offsets and a snippet (match, literals, snippet); `Matcher.match_result` adds the
regexes that counted as no match for want of time (MatchResult.skipped); narrow turns a
query into the search index's necessary condition for the archive tools."""

from .match import Matcher, MatchResult, SkippedRegex, compile_matcher
from .narrow import any_of

__all__ = ["MatchResult", "Matcher", "SkippedRegex", "any_of", "compile_matcher"]
