"""The watchlist query language: parse a query string into an immutable tree.

    query    := or
    or       := and ("OR" and)*              AND and OR never mix without parentheses
    and      := unary (["AND"] unary)*       adjacent terms mean AND
    unary    := ("NOT" | "-") unary | near
    near     := primary ("NEAR/" n primary)*
    primary  := "(" or ")" | ("title:" | "text:") primary | word | "phrase" | /regex/

A regex's closing / is followed by a space, ")" or the end (so `/x/i` and `/a://b/` are
errors, not `/x/ AND i`); a leading typographic dash (– — −) excludes like "-"; 'a b' in
single quotes, near/5 and NEAR5 are errors rather than words.

Words and phrases become `Term`s: normalised tokens (see textnorm) that must be adjacent
in the text. A hyphen or apostrophe between two words of a term may be a separator or
nothing at all: `dark-net` matches "dark-net", "dark net" and "darknet". A trailing `*`
makes the last word a prefix. docs/watchlists.md is the user-facing reference.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple, TypeVar

from ..errors import QuerySyntaxError
from .querytree import And, Field, Near, Node, Not, Or, Regex, Term, walk
from .regexcheck import RegexProblem, check_regex
from .regexcheck import nested_quantifier as nested_quantifier
from .regexcheck import regex_backtracking as regex_backtracking
from .textnorm import Token as Token
from .textnorm import analyze, exact_forms
from .textnorm import normalize as normalize
from .textnorm import tokenize as tokenize

MAX_NEAR = 1000  # NEAR/n accepts 1..MAX_NEAR
MIN_PREFIX = 3  # a one-word prefix needs this many characters before the *
MAX_DEPTH = 50  # parentheses, NOT, fields and chained NEARs inside one another
MAX_QUERY_LENGTH = 10_000  # characters of one query
MAX_TERMS = 500  # words, phrases, prefixes and regexes in one query
_JOINERS = frozenset("-\u2010\u2011'\u2019\u02bc")  # hyphens and apostrophes
_QUOTES = '"“”„'
_SIGNIFICANT_SYMBOLS = re.compile(r"(?<=\w)[+#]+(?!\w)|(?<![\w.])\.(?=\w)")  # C++ C# F#, .NET
_DASHES = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2212\ufe63\uff0d")  # leading: exclude
_OPEN_SINGLE, _CLOSE_SINGLE = "'‘‚", "'’‘"
_FLAGS_RE = re.compile(r"[adgimsuvxyL]+(?=[\s)]|\Z)")  # JavaScript / Perl style /x/gi
_NEAR_TYPO_RE = re.compile(r"near(\W?)(\d+)", re.IGNORECASE)  # near/5, NEAR5, NEAR-5
_STARTS = frozenset({"WORD", "PHRASE", "REGEX", "(", "FIELD", "NOT", "-"})
_PRIMARY = frozenset({"WORD", "PHRASE", "REGEX", "(", "FIELD"})
_NEAR_RE = re.compile(r"NEAR/(\d+)")
_FIELD_RE = re.compile(r"(title|text):", re.IGNORECASE)


N = TypeVar("N", bound=Node)


class _Tok(NamedTuple):
    kind: str  # WORD PHRASE REGEX FIELD NEAR AND OR NOT - ( ) EOF
    value: str
    column: int
    number: int = 0


_HINTS = {
    "mixed": "add parentheses: (a b) OR c, or a (b OR c)",
    "operator": 'operators are uppercase: {up}; to match the word, quote it: "{word}"',
    "star": "use a /regex/ for other patterns",
    "symbols": "symbols and emoji are ignored when matching; use a /regex/ for them",
    "prefix": f"write at least {MIN_PREFIX} letters before *",
    "field": "use one field per group",
    "regex": "regexes use Python syntax; flags go inline, e.g. /(?i)pattern/",
    "nested": (
        "a repeated group whose parts can match the same text in more than one way, like (a+)+, "
        "(\\w+\\s?)* or (.*a){20}, can take exponential time; repeat only once, or end the group "
        "with a character its repeated part cannot match, like (\\d+,)*"
    ),
    "alternatives": (
        "repeated alternatives that can start with the same character, like (a|aa)+, can take "
        "exponential time; make them start differently, or use a character class: [ab]+"
    ),
    "deep": "split it into several queries of match = [...] (any of them raises the alert)",
    "anchor": "NOT and - only narrow a query; combine them with a term: fentanyl -patch",
    "AND": "AND needs a term on both sides: a AND b",
    "OR": "OR needs a term on both sides: a OR b",
    "NOT": "write NOT word, or -word",
    "-": "write -word, with no space, to exclude it",
    "NEAR": "NEAR/n needs a word, phrase or group on both sides: a NEAR/5 b",
    "FIELD": 'write title:word, title:"a phrase" or title:(a OR b)',
    "And": "NEAR operands are words, phrases, prefixes or (x OR y) groups",
    "Not": "put the exclusion outside the NEAR: (a NEAR/5 b) -c",
    "Regex": "a /regex/ cannot be used with NEAR",
    "Field": "put the field before the whole NEAR: title:(a NEAR/5 b)",
}


def _error(message: str, column: int, hint: str = "", **fmt: str) -> QuerySyntaxError:
    hint = _HINTS.get(hint, hint)  # may quote the query: formatted only when asked
    return QuerySyntaxError(message, column, hint.format(**fmt) if fmt else hint)


def _lex(q: str) -> list[_Tok]:
    out: list[_Tok] = []
    i, n = 0, len(q)
    while i < n:
        c, col = q[i], i + 1
        if c.isspace():
            i += 1
        elif c in "()":
            out.append(_Tok(c, c, col))
            i += 1
        elif c in _QUOTES:
            j = next((k for k in range(i + 1, n) if q[k] in _QUOTES), -1)
            if j < 0:
                raise _error("unclosed quote", col, 'close the phrase with "')
            out.append(_Tok("PHRASE", q[i + 1 : j], col))
            i = j + 1
            if i < n and q[i] == "*":
                raise _error("* after a phrase", i + 1, 'put it inside the quotes: "dark web*"')
        elif c == "/":
            j = i + 1
            while j < n and q[j] != "/":
                j += 2 if q[j] == "\\" else 1
            if j >= n:
                raise _error("unclosed regex", col, "end it with / (write \\/ for a slash)")
            _check_regex_end(q, i, j)
            out.append(_Tok("REGEX", q[i + 1 : j], col))
            i = j + 1
        elif c in _DASHES:  # – — − too: a typographic dash must not turn into a required term
            if i + 1 >= n or q[i + 1].isspace() or q[i + 1] == ")":
                raise _error(f"nothing after {c}", col, "write -word, with no space, to exclude it")
            out.append(_Tok("-", "-", col))
            i += 1
        elif m := _FIELD_RE.match(q, i):
            i = m.end()
            if i >= n or q[i].isspace() or q[i] == ")":
                raise _error(f"nothing after {m.group()}", col, f"write {m.group()}word")
            out.append(_Tok("FIELD", m.group(1).lower(), col))
        else:
            j = i
            while j < n and not q[j].isspace() and q[j] not in "()" + _QUOTES:
                j += 1
            out.append(_word_token(q[i:j], col))
            i = j
    out.append(_Tok("EOF", "", n + 1))
    _check_single_quotes(q, out)
    return out


def _check_regex_end(q: str, start: int, end: int) -> None:
    """The / at `end` closes the regex only before a space, ")" or the end of the query."""
    after = q[end + 1 : end + 2]
    if not after or after.isspace() or after == ")":
        return
    if m := _FLAGS_RE.match(q, end + 1):
        inline, pattern = "".join(dict.fromkeys(f for f in m.group() if f in "aimsx")), q[start + 1 : end]
        hint = f"write flags inline at the start of the pattern: /(?{inline}){pattern}/"
        if not inline:
            hint = f"remove them: /{pattern}/ finds every match; flags like (?i) go inline at its start"
        raise _error(f"regex flags {m.group()!r} after the closing /", end + 2, hint)
    hint = "a regex ends with a / followed by a space, ) or the end of the query"
    if not (after.isalnum() or "/" in q[end + 1 :]):  # /x/, or /x/-y: no slash was meant inside
        raise _error(f"{after!r} right after a regex", end + 2, hint)
    raise _error("a / inside a regex must be written \\/", end + 1, hint)


def _check_single_quotes(q: str, tokens: list[_Tok]) -> None:
    """'dark web' is an error (it would silently be 'dark AND web'); o'neill, 'til are
    words, and 'Ndrangheta OR camorra' is two terms: only a run of adjacent words counts."""
    closing: list[_Tok | None] = [None] * len(tokens)  # the first closing word from here on in a run
    for k in range(len(tokens) - 2, -1, -1):  # tokens end with EOF
        tok = tokens[k]
        if tok.kind == "WORD":
            closing[k] = tok if tok.value[-1] in _CLOSE_SINGLE else closing[k + 1]
    for k, tok in enumerate(tokens):
        v = tok.value
        if tok.kind != "WORD" or v[0] not in _OPEN_SINGLE or (len(v) > 1 and v[-1] in _CLOSE_SINGLE):
            continue
        close = closing[k + 1]
        if close is not None:
            inner = q[tok.column : close.column + len(close.value) - 2]
            hint = f'use double quotes for a phrase: "{inner}"'
            raise _error("single quotes around several words", tok.column, hint)


def _word_token(word: str, col: int) -> _Tok:
    if word in ("AND", "OR", "NOT"):
        return _Tok(word, word, col)
    if m := _NEAR_RE.fullmatch(word):
        distance = int(m.group(1))
        if not 1 <= distance <= MAX_NEAR:
            raise _error(f"NEAR/{distance} is out of range", col, f"use 1 to {MAX_NEAR} words")
        return _Tok("NEAR", word, col, distance)
    if m := _NEAR_TYPO_RE.fullmatch(word):
        fix = f"NEAR/{m.group(2)}"
        if m.group(1) == "/":
            raise _error(f"{word!r} looks like an operator", col, f"operators are uppercase: write {fix}")
        raise _error(f"{word!r}: NEAR needs a / before its distance", col, f"write {fix}")
    if re.fullmatch(r"near(/\S*)?", word, re.IGNORECASE) and (word.isupper() or "/" in word):
        raise _error(f"{word} needs a distance", col, "write NEAR/10 for within 10 words")
    if word.lower() in ("and", "or", "not"):
        raise _error(f"{word!r} looks like an operator", col, "operator", up=word.upper(), word=word)
    return _Tok("WORD", word, col)


class _Parser:
    def __init__(self, query: str, case_sensitive: tuple[str, ...], check_backtracking: bool):
        if len(query) > MAX_QUERY_LENGTH:
            hint = "deep"
            raise _error(f"query is longer than {MAX_QUERY_LENGTH:,} characters", MAX_QUERY_LENGTH + 1, hint)
        self.toks = _lex(query)
        self.pos = 0
        self.depth = 0
        self.heights: dict[int, int] = {}  # id(node) -> its height; terms are 0
        self.terms = 0
        self.case_sensitive = case_sensitive
        self.check_backtracking = check_backtracking

    def peek(self) -> _Tok:
        return self.toks[self.pos]

    def take(self) -> _Tok:
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def nest(self, tok: _Tok) -> None:
        """One level deeper in the parser (a parenthesis, NOT, a field)."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _error(f"query nested too deeply (over {MAX_DEPTH} levels)", tok.column, "simplify it")

    def built(self, node: N, children: Iterable[Node], column: int) -> N:
        """`node`, once its height (operators above a term) is known to be at most MAX_DEPTH:
        a NEAR b NEAR c ... is (a NEAR b) NEAR c, one level higher per NEAR. So nothing
        that walks a tree recursively (checking, compiling, matching) runs out of stack."""
        height = 1 + max(self.heights.get(id(c), 0) for c in children)
        if height > MAX_DEPTH:
            raise _error(f"query nested too deeply (over {MAX_DEPTH} levels)", column, "simplify it")
        self.heights[id(node)] = height
        return node

    def count_term(self, tok: _Tok) -> None:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise _error(f"query has more than {MAX_TERMS} terms", tok.column, "deep")

    def expect_operand(self, op: _Tok, kinds: frozenset[str]) -> None:
        if self.peek().kind not in kinds:
            name = {"-": "-", "FIELD": op.value + ":"}.get(op.kind, op.value)
            raise _error(f"{name} needs a term after it", op.column, op.kind)

    def parse(self) -> Node:
        if self.peek().kind == "EOF":
            raise _error("empty query", 1, "write at least one word")
        node = self.or_()
        tok = self.peek()
        if tok.kind == ")":
            raise _error("unmatched )", tok.column, "remove it or add ( before it")
        if tok.kind != "EOF":  # pragma: no cover - every other token is consumed above
            raise _error(f"unexpected {tok.value}", tok.column)
        return node

    def or_(self) -> Node:
        first, bare = self.and_()
        items, ors = [first], []
        while self.peek().kind == "OR":
            op = self.take()
            ors.append(op)
            self.expect_operand(op, _STARTS)
            item, more = self.and_()
            items.append(item)
            bare = bare or more
        if bare and ors:
            raise _error("AND and OR mixed without parentheses", ors[0].column, "mixed")
        return (
            items[0] if len(items) == 1 else self.built(Or(tuple(items), first.column), items, ors[-1].column)
        )

    def and_(self) -> tuple[Node, bool]:
        items = [self.unary()]
        while True:
            tok = self.peek()
            if tok.kind == "AND":
                self.take()
                self.expect_operand(tok, _STARTS)
            elif tok.kind not in _STARTS:
                break
            items.append(self.unary())
        if len(items) == 1:
            return items[0], False
        return self.built(And(tuple(items), items[0].column), items, items[0].column), True

    def unary(self) -> Node:
        tok = self.peek()
        if tok.kind not in ("NOT", "-"):
            return self.near()
        self.take()
        self.expect_operand(tok, _STARTS)
        self.nest(tok)
        child = self.unary()
        self.depth -= 1
        return self.built(Not(child, tok.column), (child,), tok.column)

    def near(self) -> Node:
        node = self.primary()
        while self.peek().kind == "NEAR":
            op = self.take()
            self.expect_operand(op, _PRIMARY)
            right = self.primary()
            for operand in (node, right):
                _check_near_operand(operand)
            node = self.built(Near(node, right, op.number, node.column), (node, right), op.column)
        return node

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind == "(":
            if self.peek().kind == ")":
                raise _error("empty parentheses", tok.column, "put a term inside or remove them")
            self.nest(tok)
            node = self.or_()
            self.depth -= 1
            if self.peek().kind != ")":
                raise _error("unclosed (", tok.column, "add ) to close it")
            self.take()
            return node
        if tok.kind == "FIELD":
            self.expect_operand(tok, _PRIMARY)
            self.nest(tok)
            child = self.primary()
            self.depth -= 1
            for sub in walk(child):
                if isinstance(sub, Field) and sub.name != tok.value:
                    msg = f"{sub.name}: inside {tok.value}: can never match"
                    raise _error(msg, sub.column, "field")
            return self.built(Field(tok.value, child, tok.column), (child,), tok.column)
        if tok.kind in ("WORD", "PHRASE"):
            return self.term(tok)
        if tok.kind == "REGEX":
            self.count_term(tok)
            return _regex(tok.value, tok.column, self.check_backtracking)
        if tok.kind == "EOF":
            raise _error("query ends too early", tok.column, "add a term")
        if tok.kind == ")":
            raise _error("unmatched )", tok.column, "remove it or add ( before it")
        raise _error(f"{tok.value} needs a term before it", tok.column, tok.kind)

    def term(self, tok: _Tok) -> Term:
        self.count_term(tok)
        raw, col = tok.value, tok.column + (tok.kind == "PHRASE")
        prefix = raw.endswith("*")
        body = raw[:-1] if prefix else raw
        if "*" in body:
            raise _error("* is only allowed at the end of a term", col + body.index("*"), "star")
        a = analyze(body)
        if not a.words:
            raise _error(f"no letters or digits in {raw!r}", tok.column, "symbols")
        if m := _SIGNIFICANT_SYMBOLS.search(body):  # C++, C#, .NET: not the bare word
            pattern = re.escape(body).replace("\\ ", " ").replace("/", "\\/")
            message = f"{raw!r} would match {' '.join(a.words)!r}: symbols are not matched"
            raise _error(message, col + m.start(), f"for the symbols too, use a regex: /{pattern}/")
        if prefix and len(a.words) == 1 and len(a.words[0]) < MIN_PREFIX:
            raise _error(f"prefix {raw!r} is too short", col, "prefix")
        joins = tuple(body[a.ends[i] : a.starts[i + 1]] in _JOINERS for i in range(len(a.words) - 1))
        exact = exact_forms(body, self.case_sensitive)
        return Term(raw, tuple(a.words), joins, prefix, exact, tok.kind == "PHRASE", col)


def _check_near_operand(node: Node) -> None:
    if isinstance(node, Term | Near):
        return
    if isinstance(node, Or):
        for child in node.children:
            _check_near_operand(child)
        return
    raise _error("not allowed next to NEAR", node.column, type(node).__name__)


def _regex(pattern: str, column: int, check_backtracking: bool) -> Regex:
    """A /regex/ term (column: of its opening slash) once regexcheck accepts the pattern."""
    try:
        size = check_regex(pattern, check_backtracking)
    except RegexProblem as p:
        raise _error(p.message, column if p.offset is None else column + 1 + p.offset, p.hint) from None
    return Regex(pattern, column, size)


def _unanchored(node: Node) -> Node | None:
    """The part of `node` that could be true while none of its terms occurs, if any."""
    if isinstance(node, Not):
        return node
    if isinstance(node, Field):
        return _unanchored(node.child)
    if isinstance(node, And):
        parts = [_unanchored(c) for c in node.children]
        return parts[0] if all(parts) else None
    if isinstance(node, Or):
        return next((p for p in map(_unanchored, node.children) if p), None)
    return None


def parse_query(
    text: str, *, case_sensitive_terms: Iterable[str] = (), check_backtracking: bool = True
) -> Node:
    """Parse one `match` or `exclude` query; QuerySyntaxError (1-based column) if invalid.

    Words of the query written exactly like an entry of `case_sensitive_terms` (a word or
    a phrase) only match text spelled with the same case. The size limits always apply;
    `check_backtracking=False` leaves out the rule against regexes that can backtrack
    catastrophically (regex_backtracking), for a caller that runs them under a time budget
    and was handed queries already checked (the matcher).
    """
    node = _Parser(text, tuple(case_sensitive_terms), check_backtracking).parse()
    part = _unanchored(node)
    if part is not None:
        msg = "this query would match articles that contain none of its terms"
        raise _error(msg, part.column, "anchor")
    return node
