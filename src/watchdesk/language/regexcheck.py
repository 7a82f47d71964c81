"""What a /regex/ of a watchlist query may be: valid, small, and free of catastrophic backtracking.

Everything here works on the standard library's parse of the pattern (re._parser, what
re.compile reads), before anything compiles it: the `regex` module writes counted
repetitions out, so /a{1000000000}/ would take tens of gigabytes to compile, and a time
limit cannot stop that. query.py turns a RegexProblem into a QuerySyntaxError at the
pattern's column; the matcher (match.py) runs the patterns under a time budget.
"""

from __future__ import annotations

import re
import re._constants as _rc  # the standard library's regex parser (what re.compile reads)
import re._parser as _sre
from collections.abc import Iterator
from typing import Any, NamedTuple

import regex

MAX_REGEX_LENGTH = 1000  # characters of one /regex/
MAX_REGEX_REPEAT = 1000  # the largest count of a counted repetition: {m}, {m,} or {m,n}
MAX_REGEX_SIZE = 10_000  # items of a regex with its counted repetitions written out
MAX_REGEX_GROUPS = 20  # groups inside one another in a regex


class RegexProblem(Exception):
    """Why a pattern is refused: `offset` is into the pattern (None: the whole regex) and
    `hint` a hint key of query._HINTS or the hint itself."""

    def __init__(self, message: str, offset: int | None, hint: str) -> None:
        super().__init__(message)
        self.message, self.offset, self.hint = message, offset, hint


def check_regex(pattern: str, check_backtracking: bool = True) -> int:
    """The size of a valid, small and (when asked) safe pattern; RegexProblem otherwise.

    Its size is checked on the standard library's parse of it, before anything compiles
    it: the `regex` module writes counted repetitions out, so /a{1000000000}/ would take
    tens of gigabytes (a time limit cannot stop that: it is compiling, not matching)."""
    if not pattern:
        raise RegexProblem("empty regex", None, "write a pattern between the slashes")
    if len(pattern) > MAX_REGEX_LENGTH:
        message = f"regex is longer than {MAX_REGEX_LENGTH} characters"
        raise RegexProblem(message, None, "regexes are for short patterns; list words and phrases as terms")
    marks = _regex_marks(pattern)
    if marks.too_deep is not None:  # before parsing: the parser recurses once per group
        message = f"regex has groups more than {MAX_REGEX_GROUPS} deep"
        raise RegexProblem(message, marks.too_deep, "simplify it")
    try:
        tree = _sre.parse(pattern)
    except re.error as e:  # the parser re.compile uses: it points at the mistake
        raise RegexProblem(f"invalid regex: {e.msg}", e.pos or 0, "regex") from None
    repeats = _RegexTree(tree, marks)
    for op_av, offset in repeats.positions():
        low, high = op_av[1][0], op_av[1][1]
        count = low if high == _rc.MAXREPEAT else high
        if count > MAX_REGEX_REPEAT:
            message = f"regex repeats something {count:,} times: at most {MAX_REGEX_REPEAT:,}"
            raise RegexProblem(message, offset[1], "for 'any number of times' write + or *")
    size = _regex_size(tree)
    if size > MAX_REGEX_SIZE:
        message = f"regex is too large once its repetitions are counted out (over {MAX_REGEX_SIZE:,} items)"
        raise RegexProblem(message, None, "use smaller counts: (?:(?:ab){100}){100} counts as 20,000")
    try:
        compiled = re.compile(pattern)  # the matcher runs it with the regex module (match.py),
        regex.compile(pattern)  # which must take it too
    except (re.error, regex.error) as e:
        raise RegexProblem(f"invalid regex: {e.msg}", e.pos or 0, "regex") from None
    if compiled.search("") is not None:
        raise RegexProblem("regex matches empty text", None, "make it require at least a character")
    if check_backtracking:
        problem = repeats.backtracking()
        if problem is not None:
            kind, where = problem
            message = (
                "nested repetition in regex" if kind == "nested" else "repeated alternatives overlap in regex"
            )
            raise RegexProblem(message, where, kind)
    return size


def regex_backtracking(pattern: str) -> tuple[str, int] | None:
    """Why a valid pattern can backtrack catastrophically ("nested" or "alternatives") and
    the offset of the repeated part at fault, or None. See _RegexTree.backtracking."""
    return _RegexTree(_sre.parse(pattern), _regex_marks(pattern)).backtracking()


def nested_quantifier(pattern: str) -> int | None:
    """Offset of a part repeated without bound that itself holds a repetition without bound,
    like `(a+)+` or `(\\w*x)*`: the shape only (regex_backtracking decides, and lets
    `(\\d+,)*` through: the `,` ends each repetition)."""
    t = _RegexTree(_sre.parse(pattern), _regex_marks(pattern))
    for (_, (_, high, body)), (offset, _) in t.positions():
        if high == _rc.MAXREPEAT and any(r[1][1] == _rc.MAXREPEAT for r in _repeats_in(body)):
            return offset
    return None


class _Marks(NamedTuple):
    quantifiers: list[tuple[int, int]]  # (offset of what it repeats, of itself), in written order
    too_deep: int | None  # offset of the first ( nested over MAX_REGEX_GROUPS deep


_COUNT = re.compile(r"\{(?:\d+(?:,\d*)?|,\d*)\}")  # what re reads as {m}, {m,}, {,n}, {m,n}
_GROUP_PREFIX = re.compile(r"\(\?(?:P<\w+>|<[=!]|[:=!>]|[aiLmsux-]*:)?")
_FLAGS_GROUP = re.compile(r"\(\?[aiLmsux-]+\)")  # (?i): flags for the whole pattern, no group


def _regex_marks(p: str) -> _Marks:
    """Where the quantifiers of a pattern are (for error columns) and how deep its groups go:
    a scan that skips escapes and character classes, as re's parser does."""
    quantifiers: list[tuple[int, int]] = []
    opens: list[int] = []
    too_deep = None
    atom, i, n = 0, 0, len(p)
    while i < n:
        c, start = p[i], i
        if c == "\\":
            nxt = p[i + 1 : i + 2]
            i += {"x": 4, "u": 6, "U": 10}.get(nxt, 2)
            if nxt == "N" and p[i : i + 1] == "{":
                i = p.find("}", i) + 1 or n
            elif nxt.isdigit():
                while i < n and i - start < 4 and p[i].isdigit():
                    i += 1
        elif c == "[":
            i += 1
            i += p[i : i + 1] == "^"
            i += p[i : i + 1] == "]"
            while i < n and p[i] != "]":
                i += 2 if p[i] == "\\" else 1
            i += 1
        elif c == "(":
            if p.startswith("(?#", i) or p.startswith("(?P=", i) or _FLAGS_GROUP.match(p, i):
                i = p.find(")", i) + 1 or n  # a comment, a back reference, global flags
                atom = start
                continue
            opens.append(i)
            if len(opens) > MAX_REGEX_GROUPS and too_deep is None:
                too_deep = i
            m = _GROUP_PREFIX.match(p, i)
            i = m.end() if m else i + 1
            continue
        elif c == ")":
            start = opens.pop() if opens else i
            i += 1
        elif c in "*+?" or (c == "{" and _COUNT.match(p, i)):
            m = _COUNT.match(p, i)
            i = m.end() if m else i + 1
            i += p[i : i + 1] in ("?", "+")  # lazy or possessive
            quantifiers.append((atom, start))
            continue
        else:
            i += 1
        if c != "|":
            atom = start
    return _Marks(quantifiers, too_deep)


# ---- the parsed pattern: size and the backtracking rule ---------------------------------

_REPEATS = (_rc.MAX_REPEAT, _rc.MIN_REPEAT, _rc.POSSESSIVE_REPEAT)
_SETS = (_rc.LITERAL, _rc.NOT_LITERAL, _rc.ANY, _rc.IN)
_CATEGORIES = {
    getattr(_rc, f"CATEGORY_{name}"): re.compile(pattern).fullmatch
    for name, pattern in [
        ("DIGIT", r"\d"),
        ("NOT_DIGIT", r"\D"),
        ("SPACE", r"\s"),
        ("NOT_SPACE", r"\S"),
        ("WORD", r"\w"),
        ("NOT_WORD", r"\W"),
        ("LINEBREAK", r"\n"),
        ("NOT_LINEBREAK", r"[^\n]"),
    ]
}
# Characters every set is tried on (with those the pattern itself names): ASCII, and
# letters, digits and spaces of other scripts
_PROBES = frozenset(map(chr, range(128))) | frozenset(
    "\u00a0\u00e9\u00df\u0131\u0416\u0436\u03a9\u05d0\u0627\u0661\u0966\u4e2d\u3042\ud55c\u2003\u2028\u200b\U0001f48a"
)
Item = tuple[Any, Any]


def _children(op: Any, av: Any) -> list[Any]:
    """The sub-sequences of one item of a parsed pattern."""
    if op in _REPEATS:
        return [av[2]]
    if op is _rc.SUBPATTERN:
        return [av[3]]
    if op is _rc.BRANCH:
        return list(av[1])
    if op is _rc.ATOMIC_GROUP:
        return [av]
    if op in (_rc.ASSERT, _rc.ASSERT_NOT):
        return [av[1]]
    if op is _rc.GROUPREF_EXISTS:
        return [x for x in av[1:] if x is not None]
    return []


def _repeats_in(seq: Any) -> list[Item]:
    """Every repetition in a sequence, inner ones first: the order their quantifiers are written."""
    out: list[Item] = []
    for op, av in seq:
        for child in _children(op, av):
            out += _repeats_in(child)
        if op in _REPEATS:
            out.append((op, av))
    return out


def _regex_size(seq: Any) -> int:
    """Items in the pattern with each counted repetition written out: (?:ab){3} is 6."""
    total = 0
    for op, av in seq:
        if op in _REPEATS:
            low, high, body = av
            total += max(1, low if high == _rc.MAXREPEAT else high) * _regex_size(body)
        else:
            kids = _children(op, av)
            total += sum(map(_regex_size, kids)) if kids else 1
        if total > MAX_REGEX_SIZE:
            break  # the rest need not be counted (and counts multiply)
    return total


class _RegexTree:
    """A parsed pattern, and where each repetition's repeated part is written."""

    def __init__(self, tree: Any, marks: _Marks):
        self.tree = tree
        self.repeats = _repeats_in(tree)
        known = len(marks.quantifiers) == len(self.repeats) and not tree.state.flags & re.VERBOSE
        where = marks.quantifiers if known else [(0, 0)] * len(self.repeats)  # else: the regex's start
        self.offsets = {id(av): where[k] for k, (_, av) in enumerate(self.repeats)}  # operand, quantifier
        self._masks: dict[str, int] = {}
        self._firsts: dict[int, tuple[int, bool]] = {}

    def positions(self) -> list[tuple[Item, tuple[int, int]]]:
        """Each repetition with the offsets of its operand and of its quantifier."""
        return [((op, av), self.offsets[id(av)]) for op, av in self.repeats]

    def _probe(self) -> None:
        """The characters sets are tried on: _PROBES, those the pattern names, and (when it
        ignores case) their other cases. A set is a bit mask over them."""
        items = list(_walk_items(self.tree))
        named = {av for op, av in items if op in (_rc.LITERAL, _rc.NOT_LITERAL)}
        for op, av in items:
            if op is _rc.IN:
                named |= {a for o, a in av if o is _rc.LITERAL}
                named |= {x for o, a in av if o is _rc.RANGE for x in a}
        self.ignorecase = bool(self.tree.state.flags & re.IGNORECASE) or any(
            op is _rc.SUBPATTERN and av[1] & re.IGNORECASE for op, av in items
        )
        probes = set(_PROBES) | {chr(c) for c in named}
        if self.ignorecase:
            probes |= {v for c in list(probes) for v in (c.lower(), c.upper()) if len(v) == 1}
        self.probes = sorted(probes)
        self.all = (1 << len(self.probes)) - 1
        self._same: dict[str, int] = {}  # a character, or its lower or upper case -> probes like it
        for k, c in enumerate(self.probes):
            for key in {c, c.lower(), c.upper()} if self.ignorecase else {c}:
                self._same[key] = self._same.get(key, 0) | 1 << k

    # -- the rule ----------------------------------------------------------------------

    def backtracking(self) -> tuple[str, int] | None:
        r"""("nested" | "alternatives", offset) if some repetition can match one text in
        many ways, which makes a failing match try them all (exponential time).

        A part repeated more than once must be unambiguous, one character at a time: at
        each choice inside it, the next character decides. So within the repeated part
        (a) a variable repetition (+, *, ?, {m,n}) must not be able to go on with a
        character that could also come after it; after the end of the part comes the
        start of its next repetition: (a+)+, (\w+\s?)* and (.*a){20} fail this, (\d+,)*
        passes (a digit cannot be a `,`); and (b) alternatives must not start with a
        common character: (a|aa)+ fails, (a|b)+ passes. The check is on first characters
        only, so it refuses a few harmless patterns such as ((ab)+a)+; possessive
        repetitions (a++) and lookarounds on their own do not count."""
        self._probe()
        return self._scan(self.tree, 0, None)

    def _scan(self, seq: Any, follow: int, repeated: Any) -> tuple[str, int] | None:
        """`follow`: the characters that may come after `seq`; `repeated`: the repetition
        (its operands) `seq` is inside, if any, whose offset is reported."""
        items = list(seq)
        follows = [0] * len(items)
        f = follow
        for k in range(len(items) - 1, -1, -1):
            follows[k] = f
            first, empty = self._first_item(*items[k])
            f = first | (f if empty else 0)
        for (op, av), after in zip(items, follows, strict=True):
            if op in _REPEATS:
                low, high, body = av
                goes_on, _ = self._first(body)
                if (
                    repeated is not None
                    and op is not _rc.POSSESSIVE_REPEAT
                    and low != high
                    and goes_on & after
                ):
                    return "nested", self.offsets[id(repeated)][0]
                if high > 1:
                    inner = av if op is not _rc.POSSESSIVE_REPEAT else repeated
                    problem = self._scan(body, goes_on | (after if repeated is not None else 0), inner)
                else:
                    problem = self._scan(body, after, repeated)
            elif op is _rc.BRANCH:
                seen, problem = 0, None
                for alt in av[1]:
                    first, empty = self._first(alt)
                    first |= after if empty else 0
                    if repeated is not None and first & seen:
                        return "alternatives", self.offsets[id(repeated)][0]
                    seen |= first
                for alt in av[1]:
                    problem = problem or self._scan(alt, after, repeated)
            elif op in (_rc.ASSERT, _rc.ASSERT_NOT):
                problem = self._scan(av[1], 0, None)
            else:
                problem = None
                for child in _children(op, av):
                    problem = problem or self._scan(child, after, repeated)
            if problem:
                return problem
        return None

    # -- first characters --------------------------------------------------------------

    def _first(self, seq: Any) -> tuple[int, bool]:
        """The characters a match of `seq` can start with, and whether it can be empty."""
        key = id(seq)
        if key not in self._firsts:
            mask, empty = 0, True
            for op, av in seq:
                first, can_be_empty = self._first_item(op, av)
                mask |= first
                if not can_be_empty:
                    empty = False
                    break
            self._firsts[key] = (mask, empty)
        return self._firsts[key]

    def _first_item(self, op: Any, av: Any) -> tuple[int, bool]:
        if op in _SETS:
            return self._mask(op, av), False
        if op in _REPEATS:
            first, empty = self._first(av[2])
            return first, empty or av[0] == 0
        if op is _rc.GROUPREF:
            return self.all, True
        if op in (_rc.BRANCH, _rc.GROUPREF_EXISTS, _rc.SUBPATTERN, _rc.ATOMIC_GROUP):
            parts = [self._first(child) for child in _children(op, av)]
            empty = any(e for _, e in parts) or (op is _rc.GROUPREF_EXISTS and av[2] is None)
            mask = 0
            for m, _ in parts:
                mask |= m
            return mask, empty
        return 0, True  # anchors and lookarounds match no character

    def _mask(self, op: Any, av: Any) -> int:
        if op in (_rc.LITERAL, _rc.NOT_LITERAL):  # the common case, without trying every probe
            c = chr(av)
            same = 0
            for key in {c, c.lower(), c.upper()} if self.ignorecase else {c}:
                same |= self._same.get(key, 0)
            return same if op is _rc.LITERAL else self.all & ~same
        key = f"{op} {av}"
        if key not in self._masks:
            mask = 0
            for k, c in enumerate(self.probes):
                forms = {f for f in (c, c.lower(), c.upper()) if len(f) == 1} if self.ignorecase else {c}
                if any(_in_set(op, av, form) for form in forms):
                    mask |= 1 << k
            self._masks[key] = mask
        return self._masks[key]


def _in_set(op: Any, av: Any, c: str) -> bool:
    if op is _rc.LITERAL:
        return ord(c) == av
    if op is _rc.NOT_LITERAL:
        return ord(c) != av
    if op is _rc.ANY:
        return True
    negate = bool(av) and av[0][0] is _rc.NEGATE
    found = False
    for o, a in av:
        if o is _rc.LITERAL:
            found = ord(c) == a
        elif o is _rc.RANGE:
            found = a[0] <= ord(c) <= a[1]
        elif o is _rc.CATEGORY:
            found = a in _CATEGORIES and _CATEGORIES[a](c) is not None
        if found:
            break
    return found != negate


def _walk_items(seq: Any) -> Iterator[Item]:
    for op, av in seq:
        yield op, av
        for child in _children(op, av):
            yield from _walk_items(child)
