"""Compile all watchlists into one matcher; Article -> list[Hit].

Compilation parses every query (query.py), interns identical terms, expands each term
into its spellings (hyphen variants) and puts them all, as normalised token strings, into
one set of literal patterns (literals.py). Matching an article then:

1. normalises and tokenises the title and the text once (textnorm.analyze);
2. scans each field's joined tokens once for all the patterns, which finds every
   occurrence of every literal term, whole tokens only (the patterns are framed by spaces);
3. evaluates only the queries whose trigger terms occurred (plus the few that consist of
   regexes only): boolean logic, NEAR, case-sensitive checks and regexes;
4. for the first `match` query of a watchlist that fires (and no `exclude` query does),
   records every matched term with its offsets in the original field and a snippet.

The cost of steps 1-2 follows the article, not the number of terms. Regexes run on the
original text of a field, cut to REGEX_TEXT_LIMIT characters, with the `regex` module,
which lets go of the GIL while it matches (so matching in a worker thread does not hold
up the event loop), and with time limits: REGEX_TIME_LIMIT for one regex on one field,
REGEX_BUDGET for all of them on one article. A regex that runs out of either counts as
not matching that article instead of stalling the daemon: the log says `regex_timeout`
for a regex that took its REGEX_TIME_LIMIT and `regex_budget_exhausted` once for an
article whose budget ran out, and `MatchResult.skipped` lists them all. A NEAR keeps at most
MAX_NEAR_SPANS of its pairings per field, so NEARs of NEARs over a text that repeats
their words cannot multiply them without end.

A Matcher is not changed after it is built, and all the state of one call lives in
that call's _Run: `match` may be called from several threads at once.
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

import regex

from ..language import (
    FIELDS,
    Analyzed,
    And,
    Field,
    Near,
    Node,
    Not,
    Or,
    Regex,
    Term,
    analyze,
    fold_exact,
    parse_query,
    walk,
)
from ..models import Article, Hit, TermMatch, Watchlist
from .literals import LiteralSet
from .snippet import SNIPPET_MAX_MATCH, Window, cut_window, place_marks

log = logging.getLogger(__name__)

REGEX_TEXT_LIMIT = 100_000  # characters of a field a /regex/ is applied to
REGEX_TIME_LIMIT = 0.05  # seconds one /regex/ may take on one field of one article
REGEX_BUDGET = 0.2  # seconds all the regexes together may take on one article
MAX_MATCHES_PER_TERM = 20  # occurrences of one term recorded in a Hit
MAX_NEAR_SPANS = 2000  # pairings one NEAR keeps per field (the first, in text order)

Span = tuple[int, int, tuple[tuple[int, int, str], ...]]  # tokens i..j and the terms in it (i, j, text)
# field index, start, end, term, and whether start and end are token indices (first, last)
# rather than character offsets: token spans are looked up for all hits at once, in order
Evidence = tuple[int, int, int, str, bool]


@dataclass(frozen=True, slots=True)
class _Variant:
    anchor: int  # index of its pattern in the LiteralSet
    length: int  # bytes of the pattern: the first token starts at end - length + 1
    tokens: int
    exact: tuple[str | None, ...] | None  # case-sensitive forms to verify, if any
    prefix: bool


@dataclass(frozen=True, slots=True)
class SkippedRegex:
    """A regex that counted as not matching an article because time ran out."""

    watchlist: str
    query: str
    pattern: str
    field: str  # "title" | "text"
    reason: str  # "timeout": it took over REGEX_TIME_LIMIT; "budget": REGEX_BUDGET was used up


@dataclass(frozen=True, slots=True)
class MatchResult:
    """What Matcher.match_result found: the hits, and the regexes time ran out for."""

    hits: list[Hit]
    skipped: tuple[SkippedRegex, ...] = ()
    regex_seconds: float = 0.0  # time spent in regexes on this article

    @property
    def complete(self) -> bool:
        """Every regex that was needed ran to its end (no hit can be missing for lack of time)."""
        return not self.skipped


@dataclass(frozen=True, slots=True)
class _Query:
    source: str
    node: Node
    triggers: tuple[int, ...] | None  # anchors: the query can be true only if one of these occurred


@dataclass(frozen=True, slots=True)
class _List:
    watchlist: Watchlist
    match: tuple[_Query, ...]
    exclude: tuple[_Query, ...]
    feeds: frozenset[str]


class Matcher:
    """All watchlists compiled once; `match` is safe to call from any thread."""

    def __init__(self, watchlists: Sequence[Watchlist]):
        self._tid: dict[int, int] = {}  # id(Term node) -> interned term id
        self._keys: dict[tuple[object, ...], int] = {}  # while compiling
        self._variants: list[tuple[_Variant, ...]] = []
        self._simple: list[bool] = []  # no case-sensitive check: an occurrence is a match
        self._term_anchors: list[tuple[int, ...]] = []
        self._anchors: dict[str, int] = {}  # while compiling
        self._regex: dict[str, regex.Pattern[str]] = {}
        self._lists = tuple(self._compile_list(w) for w in watchlists)
        by_anchor: list[set[int]] = [set() for _ in self._anchors]
        self._always: list[int] = []
        for index, wl in enumerate(self._lists):
            for q in wl.match:
                if q.triggers is None:
                    self._always.append(index)
                for aid in q.triggers or ():
                    by_anchor[aid].add(index)
        shared: dict[frozenset[int], frozenset[int]] = {}  # most anchors fire the same few lists
        self._lists_by_anchor = tuple(shared.setdefault(frozenset(s), frozenset(s)) for s in by_anchor)
        del by_anchor, shared
        # dicts keep insertion order, which is anchor id order
        patterns = [p.encode() for p in self._anchors]
        self._anchors, self._keys = {}, {}  # only compiling needs them: less memory for big lists
        self._literals = LiteralSet(patterns) if patterns else None
        self._anchor_bytes = tuple(map(len, patterns))

    @property
    def stats(self) -> dict[str, int]:
        return {"terms": len(self._variants), "patterns": len(self._anchor_bytes)}

    def _compile_list(self, w: Watchlist) -> _List:
        def compile_query(source: str) -> _Query:
            try:  # size and depth limits apply; the backtracking rule is check's (its queries come
                # checked, and every regex runs under time limits here)
                node = parse_query(
                    source, case_sensitive_terms=w.case_sensitive_terms, check_backtracking=False
                )
            except Exception as e:
                e.add_note(f"watchlist {w.name!r}, query {source!r}")
                raise
            for sub in walk(node):
                if isinstance(sub, Term):
                    self._tid[id(sub)] = self._intern(sub)
                elif isinstance(sub, Regex) and sub.pattern not in self._regex:
                    self._regex[sub.pattern] = regex.compile(sub.pattern)
            triggers = self._triggers(node)
            if triggers is None:
                return _Query(source, node, None)
            anchors = tuple(sorted({aid for tid in triggers for aid in self._term_anchors[tid]}))
            return _Query(source, node, anchors)

        feeds = frozenset(f.casefold() for f in w.feeds)
        match = tuple(compile_query(q) for q in w.match)
        return _List(w, match, tuple(compile_query(q) for q in w.exclude), feeds)

    def _intern(self, term: Term) -> int:
        tid = self._keys.get(term.key)
        if tid is not None:
            return tid
        tid = self._keys[term.key] = len(self._variants)
        variants = []
        for spelling in term.variants():
            pattern = " " + " ".join(w for w, _ in spelling) + ("" if term.prefix else " ")
            aid = self._anchors.setdefault(pattern, len(self._anchors))
            exact = tuple(cs for _, cs in spelling)
            has_exact = any(cs is not None for cs in exact)
            v = _Variant(aid, len(pattern.encode()), len(spelling), exact if has_exact else None, term.prefix)
            variants.append(v)
        self._variants.append(tuple(variants))
        self._simple.append(all(v.exact is None for v in variants))
        self._term_anchors.append(tuple(v.anchor for v in variants))
        return tid

    def _triggers(self, node: Node) -> set[int] | None:
        """Terms one of which must occur for `node` to be true; None: evaluate always."""
        if isinstance(node, Term):
            return {self._tid[id(node)]}
        if isinstance(node, Near):
            return self._triggers(node.left)
        if isinstance(node, Field):
            return self._triggers(node.child)
        if isinstance(node, And):
            options = [t for t in map(self._triggers, node.children) if t is not None]
            return min(options, key=len) if options else None
        if isinstance(node, Or):
            union: set[int] = set()
            for child in node.children:
                t = self._triggers(child)
                if t is None:
                    return None
                union |= t
            return union
        return None  # Regex, Not

    def match(self, article: Article, *, feed_name: str = "", feed_tags: Iterable[str] = ()) -> list[Hit]:
        """At most one Hit per watchlist, in watchlist order."""
        return self.match_result(article, feed_name=feed_name, feed_tags=feed_tags).hits

    def match_result(
        self, article: Article, *, feed_name: str = "", feed_tags: Iterable[str] = ()
    ) -> MatchResult:
        """`match`'s hits, with the regexes that counted as no match for want of time."""
        run = _Run(self, article)
        hits = run.hits([(wl.watchlist.name, q) for wl, q in self._fired(run, feed_name, feed_tags)])
        return run.result(hits)

    def matching(self, article: Article, *, feed_name: str = "", feed_tags: Iterable[str] = ()) -> list[str]:
        """The names of the watchlists `match` would return a Hit for, without building the hits
        (no offsets, no snippets): for counting, e.g. a dry run over stored articles."""
        run = _Run(self, article)
        names = [wl.watchlist.name for wl, _ in self._fired(run, feed_name, feed_tags)]
        run.result([])
        return names

    def _fired(self, run: _Run, feed_name: str, feed_tags: Iterable[str]) -> Iterator[tuple[_List, _Query]]:
        present = run.present_anchors()
        candidates = set(self._always).union(*map(self._lists_by_anchor.__getitem__, present))
        scopes = {feed_name.casefold(), *(t.casefold() for t in feed_tags)}
        fires = run.fires
        for index in sorted(candidates):
            wl = self._lists[index]
            if wl.feeds and wl.feeds.isdisjoint(scopes):
                continue
            name = wl.watchlist.name
            for q in wl.match:
                if fires(name, q, present):
                    if not any(fires(name, x, present) for x in wl.exclude):
                        yield wl, q
                    break


def compile_matcher(watchlists: Sequence[Watchlist]) -> Matcher:
    return Matcher(watchlists)


class _Run:
    """One article being matched: its analysed fields and what was found in them."""

    def __init__(self, matcher: Matcher, article: Article):
        self.m = matcher
        self.texts = {"title": article.title, "text": article.text}
        self.fields: dict[str, Analyzed] = {}
        self.found: dict[str, dict[int, list[int]]] = {}
        for name, text in self.texts.items():
            a = self.fields[name] = analyze(text)
            literals = matcher._literals
            self.found[name] = literals.find(a.encoded) if literals and len(a.joined) > 2 else {}
        self._occ: dict[tuple[int, str], list[tuple[int, int]]] = {}
        self._spans: dict[tuple[int, str], list[Span]] = {}
        self._windows: dict[tuple[int, int, int], Window] = {}
        self._regex_found: dict[tuple[str, str], list[regex.Match[str]]] = {}
        self.regex_left = REGEX_BUDGET  # seconds the regexes may still take on this article
        self.skipped: list[SkippedRegex] = []
        self.context = ("", "")  # the watchlist and query being evaluated, for the log

    def result(self, hits: list[Hit]) -> MatchResult:
        """The outcome, once the article is done; the log says once if the budget ran out."""
        out_of_budget = [s for s in self.skipped if s.reason == "budget"]
        if out_of_budget:
            first = out_of_budget[0]
            log.warning(
                "regex_budget_exhausted watchlist=%s query=%r budget_ms=%d skipped=%d: the regexes "
                "left count as no match for this article (first: /%s/ in %s)",
                first.watchlist,
                first.query,
                round(REGEX_BUDGET * 1000),
                len(out_of_budget),
                first.pattern,
                first.field,
            )
        return MatchResult(hits, tuple(self.skipped), REGEX_BUDGET - self.regex_left)

    def present_anchors(self) -> set[int]:
        """Patterns found in some field (before case-sensitive checks)."""
        return set().union(*self.found.values())

    def fires(self, watchlist: str, q: _Query, present: set[int]) -> bool:
        if q.triggers is not None and present.isdisjoint(q.triggers):
            return False
        self.context = (watchlist, q.source)
        return self.true(q.node, FIELDS)

    def occurrences(self, tid: int, field: str) -> list[tuple[int, int]]:
        """Token spans (first, last) where term `tid` occurs in `field`, verified."""
        key = (tid, field)
        if key in self._occ:
            return self._occ[key]
        a, found, text = self.fields[field], self.found[field], self.texts[field]
        out = []
        for v in self.m._variants[tid]:
            for end in found.get(v.anchor, ()):
                i = a.token_at(end - v.length + 1)
                if v.exact is None or _verify(text, a, i, v):
                    out.append((i, i + v.tokens - 1))
        self._occ[key] = out = sorted(set(out))
        return out

    def true(self, node: Node, scope: tuple[str, ...]) -> bool:
        if isinstance(node, Term):
            tid = self.m._tid[id(node)]
            if not self.m._simple[tid]:
                return any(self.occurrences(tid, f) for f in scope)
            anchors = self.m._term_anchors[tid]
            for f in scope:
                found = self.found[f]
                for aid in anchors:
                    if aid in found:
                        return True
            return False
        if isinstance(node, And):
            return all(self.true(c, scope) for c in node.children)
        if isinstance(node, Or):
            return any(self.true(c, scope) for c in node.children)
        if isinstance(node, Not):
            return not self.true(node.child, scope)
        if isinstance(node, Field):
            return self.true(node.child, (node.name,))
        if isinstance(node, Near):  # both operands occur (cheap to know) and near each other
            return any(
                self.true(node.left, (f,)) and self.true(node.right, (f,)) and self.spans(node, f)
                for f in scope
            )
        return any(self.regex(node, f) for f in scope)

    def regex(self, node: Regex, field: str) -> list[regex.Match[str]]:
        """The first MAX_MATCHES_PER_TERM non-empty matches of a regex in the first
        REGEX_TEXT_LIMIT characters of `field`; none if it takes over REGEX_TIME_LIMIT, or
        over what is left of the article's REGEX_BUDGET."""
        key = (node.pattern, field)
        if key in self._regex_found:
            return self._regex_found[key]
        pattern, text = self.m._regex[node.pattern], self.texts[field][:REGEX_TEXT_LIMIT]
        limit = min(REGEX_TIME_LIMIT, self.regex_left)
        matches: list[regex.Match[str]] = []
        if not text:
            pass
        elif limit <= 0:
            self.skip(node, field, "budget")
        else:
            started = time.perf_counter()
            try:  # concurrent: the GIL is released while it matches (text is an immutable str)
                found = pattern.finditer(text, timeout=limit, concurrent=True)
                matches = list(islice((m for m in found if m.end() > m.start()), MAX_MATCHES_PER_TERM))
            except TimeoutError:
                matches = []
                self.skip(node, field, "timeout" if limit >= REGEX_TIME_LIMIT else "budget", len(text))
            finally:
                self.regex_left -= time.perf_counter() - started
        self._regex_found[key] = matches
        return matches

    def skip(self, node: Regex, field: str, reason: str, chars: int = 0) -> None:
        watchlist, query = self.context
        self.skipped.append(SkippedRegex(watchlist, query, node.pattern, field, reason))
        if reason == "timeout":  # the budget's end is logged once per article, by result()
            log.warning(
                "regex_timeout pattern=/%s/ field=%s chars=%d watchlist=%s query=%r: taken as no match "
                "(it backtracks too much on this text; see the watchlist docs on regexes)",
                node.pattern,
                field,
                chars,
                watchlist,
                query,
            )

    def spans(self, node: Node, field: str) -> list[Span]:
        """Token spans of a NEAR operand (a term, an OR of operands or a NEAR) in `field`."""
        key = (id(node), field)
        if isinstance(node, Term):  # a term written several times has its spans found once
            key = (-1 - self.m._tid[id(node)], field)
        if key in self._spans:
            return self._spans[key]
        out: list[Span]
        if isinstance(node, Term):
            occ = self.occurrences(self.m._tid[id(node)], field)
            out = [(i, j, ((i, j, node.text),)) for i, j in occ]
        elif isinstance(node, Or):
            out = sorted({s for c in node.children for s in self.spans(c, field)}, key=_order)
        else:
            assert isinstance(node, Near)
            out = _near(self.spans(node.left, field), self.spans(node.right, field), node)
        self._spans[key] = out
        return out

    def evidence(self, node: Node, scope: tuple[str, ...]) -> list[Evidence]:
        """The matches that make a true `node` true: (field index, start, end, term)."""
        out: list[Evidence] = []
        if isinstance(node, Term):
            for f in scope:
                occ = self.occurrences(self.m._tid[id(node)], f)
                if occ:  # in order: the first MAX_MATCHES_PER_TERM are the ones a Hit keeps
                    k = FIELDS.index(f)
                    out += [(k, i, j, node.text, True) for i, j in occ[:MAX_MATCHES_PER_TERM]]
        elif isinstance(node, And | Or):
            for child in node.children:
                if isinstance(node, And) or self.true(child, scope):
                    out += self.evidence(child, scope)
        elif isinstance(node, Field):
            out += self.evidence(node.child, (node.name,))
        elif isinstance(node, Near):
            for f in scope:
                k = FIELDS.index(f)
                parts = sorted({part for span in self.spans(node, f) for part in span[2]})
                per_term: dict[str, int] = {}
                for i, j, label in parts:
                    per_term[label] = n = per_term.get(label, 0) + 1
                    if n <= MAX_MATCHES_PER_TERM:
                        out.append((k, i, j, label, True))
        elif isinstance(node, Regex):
            for f in scope:
                k, label = FIELDS.index(f), f"/{node.pattern}/"
                found = self.regex(node, f)
                out += [(k, m.start(), m.end(), label, False) for m in found]
        return out

    def hits(self, fired: list[tuple[str, _Query]]) -> list[Hit]:
        """A Hit per (watchlist, query). Token positions and spans are found for all of them
        at once, in text order: one pass over a long text instead of one jump per hit."""
        if not fired:
            return []
        for name, found in self.found.items():
            a, lengths = self.fields[name], self.m._anchor_bytes
            a.prime_tokens(sorted({end - lengths[aid] + 1 for aid, ends in found.items() for end in ends}))
        evidence = []
        for name, q in fired:
            self.context = (name, q.source)
            evidence.append(self.evidence(q.node, FIELDS))
        needed: dict[int, set[int]] = {}
        for items in evidence:
            for k, first, last, _, tokens in items:
                if tokens:
                    needed.setdefault(k, set()).update((first, last))
        for k, indices in needed.items():
            self.fields[FIELDS[k]].prime_spans(sorted(indices))
        return [self.hit(name, q, items) for (name, q), items in zip(fired, evidence, strict=True)]

    def hit(self, watchlist: str, q: _Query, evidence: list[Evidence]) -> Hit:
        per_term: dict[str, int] = {}
        kept = []
        located = {
            (k, *_offsets(self.fields[FIELDS[k]], a, b), t) if tokens else (k, a, b, t)
            for k, a, b, t, tokens in evidence
        }
        for e in sorted(located):
            per_term[e[3]] = n = per_term.get(e[3], 0) + 1
            if n <= MAX_MATCHES_PER_TERM:
                kept.append(e)
        k, start, end, _ = next((e for e in kept if e[0] == 1), kept[0])  # text before title
        text = self.texts[FIELDS[k]]
        end = min(end, start + SNIPPET_MAX_MATCH)
        window = self._windows.get((k, start, end))
        if window is None:
            window = self._windows[(k, start, end)] = cut_window(text, start, end)
        marks = {(start, end), *((s, e) for f, s, e, _ in kept if f == k)}
        snippet_marks = place_marks(text, window, marks)
        terms = tuple(TermMatch(term, FIELDS[f], s, e) for f, s, e, term in kept)
        return Hit(watchlist, q.source, terms, window[3], snippet_marks)


def _order(span: Span) -> tuple[int, int]:
    return span[0], span[1]


def _offsets(a: Analyzed, i: int, j: int) -> tuple[int, int]:
    """Where tokens i..j are in the original text."""
    start, end = a.span(i)
    return (start, a.span(j)[1] if j != i else end)


def _verify(text: str, a: Analyzed, i: int, v: _Variant) -> bool:
    """Check the case-sensitive tokens of an occurrence against the original text."""
    assert v.exact is not None
    last = len(v.exact) - 1
    for k, form in enumerate(v.exact):
        if form is None:
            continue
        written = fold_exact(text[slice(*a.span(i + k))])
        if not (written.startswith(form) if v.prefix and k == last else written == form):
            return False
    return True


def _near(left: list[Span], right: list[Span], node: Near) -> list[Span]:
    """Pairs of non-overlapping spans at most `distance` tokens apart, either order: the
    first MAX_NEAR_SPANS, by the left one's place in the text. That many decide the NEAR
    itself (it is true), and more than an alert records; only a NEAR of this NEAR could
    miss a pairing past them, where otherwise their number multiplies at each level."""
    n = node.distance
    starts = [r[0] for r in right]
    longest = max((r[1] - r[0] for r in right), default=0)
    out = set()
    for a0, a1, a_parts in left:
        lo = bisect_left(starts, a0 - n - longest)
        hi = bisect_right(starts, a1 + n)
        for k in range(lo, hi):
            b0, b1, b_parts = right[k]
            gap = b0 - a1 if b0 > a1 else a0 - b1 if b1 < a0 else 0
            if 1 <= gap <= n:
                out.add((min(a0, b0), max(a1, b1), a_parts + b_parts))
        if len(out) >= MAX_NEAR_SPANS:
            break
    return sorted(out, key=_order)
