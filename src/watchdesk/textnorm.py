"""Text normalisation and tokenisation shared by queries and the matcher.

A *token* is a maximal run of letters, digits and combining marks in the original text;
everything else (spaces, punctuation, symbols, emoji, ``_``) separates tokens. Inside a
token, soft hyphens and zero-width (non-)joiners are ignored. Scripts written without
spaces (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar) and Hangul syllables give one
token per character, so a term in those scripts matches as a run of adjacent characters.

Each token is normalised character by character: compatibility decomposition (NFKD),
case folding, diacritics removed (the combining-diacritics blocks, Hebrew points, Arabic
harakat, variation selectors), a few letters without a decomposition mapped to their base
(ł ø đ ħ ı ŧ). The result stays decomposed (NFKD), so canonically equivalent spellings
(precomposed or combining accents, Hangul syllables or jamo) give the same token.

``analyze(text)`` returns the normalised tokens joined by single spaces (in UTF-8, what
the matcher's literal patterns are looked for in) and each token's character offsets in
the *original* text.
"""

from __future__ import annotations

import codecs
import re
import sys
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from itertools import accumulate, compress, product
from operator import add, itemgetter

from . import codepages
from .textfold import ASCII_FOLD, FOLD, TOKEN_RE, fold_char, fold_token

__all__ = ["Analyzed", "Token", "analyze", "exact_forms", "fold_exact", "normalize", "spellings", "tokenize"]


def normalize(text: str) -> str:
    """Compatibility decomposition, case folding and diacritics removal of every character.

    Separators are kept as they are; tokens are what `tokenize` finds in the original.
    The result is in NFKD form and `normalize(normalize(t)) == normalize(t)`.
    """
    return unicodedata.normalize("NFD", text.translate(FOLD))  # NFD: canonical mark order


def fold_exact(text: str) -> str:
    """Like `normalize` but keeping case: how case-sensitive terms are compared."""
    return unicodedata.normalize("NFD", "".join(fold_char(c, False) for c in text))


def exact_forms(text: str, case_sensitive: tuple[str, ...]) -> tuple[str | None, ...]:
    """Per token of `text`: its case-kept form (fold_exact) where a run of tokens is spelled
    exactly like an entry of `case_sensitive` (a word or a phrase), else None; () if none."""
    if not case_sensitive:
        return ()
    written = _case_kept(text)
    forms: list[str | None] = [None] * len(written)
    for entry in _exact_entries(case_sensitive):
        for p in range(len(written) - len(entry) + 1):
            if tuple(written[p : p + len(entry)]) == entry:
                forms[p : p + len(entry)] = entry
    return tuple(forms) if any(f is not None for f in forms) else ()


@lru_cache(maxsize=1024)
def _exact_entries(terms: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    return tuple(words for words in map(_case_kept, terms) if words)


def _case_kept(text: str) -> tuple[str, ...]:
    a = analyze(text)
    return tuple(fold_exact(text[s:e]) for s, e in zip(a.starts, a.ends, strict=True))


@dataclass(frozen=True, slots=True)
class Token:
    text: str  # normalised
    start: int  # offsets in the original text
    end: int


class Analyzed:
    """A field's normalised tokens, joined by spaces, and their spans in the original.

    The spans are computed on first use: many articles never need them, most need a few.
    `source` is the folded text a byte per original character (tokens are the runs
    between spaces), or a function that computes every span. `aligned`: `joined` is
    `source`'s tokens single-spaced, a character per byte but where `unexpanded` says
    (the joined bytes before ß became ss and soft hyphens nothing, and the codes that
    did it), so the letters before a token in `joined` tell where it is in `source`.
    """

    __slots__ = (
        "joined",
        "_encoded",
        "_source",
        "_aligned",
        "_unexpanded",
        "_shifts",
        "_words",
        "_starts",
        "_ends",
        "_jstarts",
        "_bstarts",
        "_lookups",
        "_seeks",
    )

    def __init__(
        self,
        joined: str,
        source: bytes | Callable[[], tuple[list[int], list[int]]],
        aligned: bool = False,
        unexpanded: Unexpanded | None = None,
    ):
        self.joined = joined  # " w1 w2 ... wn " (a leading and a trailing space)
        self._source = source
        self._aligned = aligned and isinstance(source, bytes)
        self._unexpanded = unexpanded
        self._shifts: tuple[list[int], list[int]] | None = None
        self._words: list[str] | None = None
        self._starts: list[int] | None = None
        self._ends: list[int] | None = None
        self._encoded: bytes | None = None
        self._jstarts: list[int] | None = None  # every token's position in joined
        self._bstarts: list[int] | None = None  # every token's position in encoded
        self._lookups: list[tuple[int, int, int]] = []  # (position in encoded, token index, in joined)
        self._seeks: list[tuple[int, int, int]] = []  # (token index, start in source, letters before)

    @property
    def encoded(self) -> bytes:
        """`joined` in UTF-8: what the literal patterns are looked for in."""
        if self._encoded is None:
            self._encoded = self.joined.encode()
        return self._encoded

    @property
    def words(self) -> list[str]:
        if self._words is None:
            self._words = self.joined.split()
        return self._words

    @property
    def starts(self) -> list[int]:
        if self._starts is None:
            self._compute_spans()
        assert self._starts is not None
        return self._starts

    @property
    def ends(self) -> list[int]:
        if self._ends is None:
            self._compute_spans()
        assert self._ends is not None
        return self._ends

    def _compute_spans(self) -> None:
        source = self._source
        self._starts, self._ends = _spans(source) if isinstance(source, bytes) else source()

    def span(self, i: int) -> tuple[int, int]:
        """Offsets of token `i` in the original text. A few lookups need not compute every
        token's: the non-space bytes before token i in `source` are the letters before it
        in `joined` (less what expansions added), and counting spaces (in C) from the
        nearest token already found gets there (_seek)."""
        source = self._source
        if isinstance(source, _Segments) and self._starts is None:
            return source.span(i)
        if self._starts is not None or not isinstance(source, bytes) or not self._aligned:
            return self.starts[i], self.ends[i]
        if len(self._seeks) > max(64, len(source) // 400):  # a seek in order costs about what
            return self.starts[i], self.ends[i]  # computing the spans of 400 bytes does
        position = self._position(i)
        letters = position - 1 - i - self._growth_before(position)  # non-space bytes before token i
        seeks = self._seeks
        k = bisect_right(seeks, (i, len(source), 0)) - 1
        index, start, before = seeks[k] if k >= 0 else (-1, 0, 0)
        if index != i:
            start = _seek(source, start, letters - before)
            seeks.insert(k + 1, (i, start, letters))
        end = source.find(b" ", start)
        return start, len(source) if end < 0 else end

    def prime_tokens(self, positions: list[int]) -> None:
        """Look up the tokens at these positions of `encoded` (ascending) in one pass, so
        that token_at answers them at once and span finds their places nearby."""
        for pos in positions:
            self.token_at(pos)

    def prime_spans(self, indices: list[int]) -> None:
        """Find the spans of these tokens (ascending) in one pass, so that span answers
        them at once: each seek starts where the one before it ended."""
        if self._starts is None and self._aligned:
            for i in indices:
                self.span(i)

    def _growth_before(self, position: int) -> int:
        """How much longer `joined` is than `source`'s letters before `position`."""
        if self._unexpanded is None:
            return 0
        if self._shifts is None:
            self._shifts = _shifts(*self._unexpanded)
        positions, growth = self._shifts
        k = bisect_left(positions, position)
        return growth[k - 1] if k else 0

    def _position(self, i: int) -> int:
        """Where token `i` starts in `joined`."""
        if self._jstarts is None:
            k = bisect_right(self._lookups, i, key=itemgetter(1)) - 1  # by position is by index
            _, index, pos = self._lookups[k] if k >= 0 else (1, 0, 1)
            if i - index <= 16:  # a few tokens on from one looked up (a phrase's last word)
                for _ in range(i - index):
                    pos = self.joined.index(" ", pos) + 1
                return pos
            self._jstarts = list(accumulate(map((1).__add__, map(len, self.words)), initial=1))
        return self._jstarts[i]

    def token_at(self, pos: int) -> int:
        """Index of the token that starts at byte `pos` of `encoded`."""
        if self._bstarts is None:
            marks = self._lookups  # few lookups: count spaces from the nearest known position
            if len(marks) < 64:
                encoded = self.encoded
                k = bisect_right(marks, (pos, sys.maxsize)) - 1  # an entry at pos itself too
                before, index, char = marks[k] if k >= 0 else (0, -1, 0)
                if before != pos:
                    index += encoded.count(b" ", before, pos)
                    if len(encoded) == len(self.joined):  # ASCII: a byte is a character
                        char = pos
                    else:
                        char += len(encoded[before:pos].decode())
                    marks.insert(k + 1, (pos, index, char))
                return index
            lengths = self.encoded[1:-1].split(b" ")
            self._bstarts = list(accumulate(map((1).__add__, map(len, lengths)), initial=1))
        return bisect_left(self._bstarts, pos)


def _spans(source: bytes, base: int = 0) -> tuple[list[int], list[int]]:
    """Start and end offsets of the space-separated runs of `source`, plus `base`."""
    lengths = list(map(len, source.split(b" ")))
    starts = list(compress(accumulate(map((1).__add__, lengths), initial=base), lengths))
    return starts, list(map(add, starts, filter(None, lengths)))


Unexpanded = tuple[bytes, tuple[tuple[bytes, bytes], ...]]


def _shifts(unexpanded: bytes, expansions: tuple[tuple[bytes, bytes], ...]) -> tuple[list[int], list[int]]:
    """Where each expansion code of `unexpanded` ended up in `joined` (after its leading
    space), and by how much `joined` had grown once past it."""
    found = []
    for code, form in expansions:
        p = unexpanded.find(code)
        while p >= 0:
            found.append((p, len(form) - 1))
            p = unexpanded.find(code, p + 1)
    found.sort()
    positions: list[int] = []
    growth: list[int] = []
    total = 0
    for p, delta in found:
        positions.append(1 + p + total)
        total += delta
        growth.append(total)
    return positions, growth


_SPACES = re.compile(b" *")


def _seek(source: bytes, start: int, letters: int) -> int:
    """The start of the token after `letters` non-space bytes from `start` in `source`."""
    while letters > 0:
        end = start + letters
        if end > len(source):
            raise IndexError("token index out of range")
        letters = source.count(b" ", start, end)  # the range held that many fewer letters
        start = end
        if letters:  # a run of separators: one step over it
            start = _SPACES.match(source, start).end()  # type: ignore[union-attr]
    return _SPACES.match(source, start).end()  # type: ignore[union-attr]


def analyze(text: str) -> Analyzed:
    """Tokenise and normalise `text` once; offsets refer to `text` as given.

    The text is folded a byte per character: ASCII directly, anything else in the code
    page that holds most of it (codepages). Tokens the page cannot fold (a character it
    lacks, or one that folds to several tokens) are folded again from the original.
    """
    if text.isascii():
        source = text.encode("ascii").translate(ASCII_FOLD)
        return Analyzed(" " + b" ".join(source.split()).decode("ascii") + " ", source, aligned=True)
    page, encoded = codepages.encode(text)
    source = encoded.translate(page.fold)  # byte offsets are character offsets
    if page.deletion and page.deletion in source:  # a token of soft hyphens alone is no token
        source = page.lone_deletions.sub(_blank, source)
    if codepages.REFOLD not in source:
        joined, unexpanded = _join(page, source)
        expanded = (unexpanded, page.expansions) if unexpanded else None
        return Analyzed(" " + joined + " ", source, aligned=True, unexpanded=expanded)
    if source.count(codepages.REFOLD) * 16 > len(source):  # mostly another script: Korean
        tokens = _analyze_reference(text)
        words, starts, ends = zip(*tokens, strict=True) if tokens else ((), (), ())
        return Analyzed(" " + " ".join(words) + " ", lambda: (list(starts), list(ends)))
    return _analyze_refolding(text, page, source)


def _blank(m: re.Match[bytes]) -> bytes:
    return b" " * len(m.group())


def _join(page: codepages.CodePage, source: bytes) -> tuple[str, bytes]:
    """The normalised tokens of a folded `source` without REFOLD bytes, space-separated,
    and the joined bytes before expansion if any was made (else b"")."""
    joined = unexpanded = b" ".join(source.split())
    for code, form in page.expansions:
        if code in joined:
            joined = joined.replace(code, form)
    decoded = codecs.charmap_decode(joined, "strict", page.decoding)[0]
    return decoded, (b"" if joined is unexpanded else unexpanded)


def _analyze_refolding(text: str, page: codepages.CodePage, source: bytes) -> Analyzed:
    """Like analyze, but the tokens of `source` holding a REFOLD byte are tokenised and
    folded again from the original text (see _analyze_reference).

    Still aligned (see Analyzed) when nothing was expanded and each refolded token stayed
    one token of its own length (a Japanese word in a German text; not ½, which is two).
    """
    pieces: list[str] = []
    segments: list[tuple[int, SpansOf]] = []  # (its first token's index, its tokens' spans)
    tokens = 0
    aligned = True
    prev = 0
    i = source.find(codepages.REFOLD)
    while i >= 0:
        start = source.rfind(b" ", 0, i) + 1
        end = source.find(b" ", i)
        end = len(source) if end < 0 else end
        refolded = [(w, start + a, start + b) for w, a, b in _analyze_reference(text[start:end])]
        joined, gap_expanded = _join(page, source[prev:start])
        aligned = (
            aligned
            and not gap_expanded
            and [(len(w), a, b) for w, a, b in refolded] == [(end - start, start, end)]
        )
        pieces.append(joined)
        pieces.extend(w for w, _, _ in refolded)
        if joined:
            segments.append((tokens, partial(_gap_spans, source, prev, start)))
            tokens += joined.count(" ") + 1
        if refolded:
            segments.append(
                (tokens, partial(_listed, [a for _, a, _ in refolded], [b for _, _, b in refolded]))
            )
            tokens += len(refolded)
        prev = end
        i = source.find(codepages.REFOLD, end)
    joined, gap_expanded = _join(page, source[prev:])
    pieces.append(joined)
    if joined:
        segments.append((tokens, partial(_gap_spans, source, prev, len(source))))
    joined = " " + " ".join(p for p in pieces if p) + " "
    if aligned and not gap_expanded:
        return Analyzed(joined, source, aligned=True)
    return Analyzed(joined, _Segments(segments))


SpansOf = Callable[[], tuple[list[int], list[int]]]


def _gap_spans(source: bytes, lo: int, hi: int) -> tuple[list[int], list[int]]:
    return _spans(source[lo:hi], lo)


def _listed(starts: list[int], ends: list[int]) -> tuple[list[int], list[int]]:
    return starts, ends


class _Segments:
    """Token spans of a text refolded in places, a segment at a time: the stretches between
    refolded tokens are aligned with `source` and spanned on their own when first asked,
    so one hit in a long text does not compute every token's span. Called: all of them."""

    def __init__(self, segments: list[tuple[int, SpansOf]]):
        self._firsts = [first for first, _ in segments]
        self._spans_of = [spans_of for _, spans_of in segments]
        self._done: dict[int, tuple[list[int], list[int]]] = {}

    def span(self, i: int) -> tuple[int, int]:
        k = bisect_right(self._firsts, i) - 1
        if k < 0:
            raise IndexError("token index out of range")
        done = self._done.get(k)
        if done is None:
            done = self._done[k] = self._spans_of[k]()
        starts, ends = done
        return starts[i - self._firsts[k]], ends[i - self._firsts[k]]

    def __call__(self) -> tuple[list[int], list[int]]:
        starts: list[int] = []
        ends: list[int] = []
        for k in range(len(self._spans_of)):
            s, e = self._done.get(k) or self._spans_of[k]()
            starts += s
            ends += e
        return starts, ends


def _analyze_reference(text: str) -> list[tuple[str, int, int]]:
    """The definition analyze() implements faster: every token folded on its own."""
    return [
        (word, m.start() + a, m.start() + b)
        for m in TOKEN_RE.finditer(text)
        for word, a, b in fold_token(m.group())
    ]


def tokenize(text: str) -> list[Token]:
    """Normalised tokens of `text` with their character offsets in `text`."""
    a = analyze(text)
    return [Token(w, s, e) for w, s, e in zip(a.words, a.starts, a.ends, strict=True)]


def spellings(
    words: tuple[str, ...], joins: tuple[bool, ...], exact: tuple[str | None, ...], most: int
) -> tuple[tuple[tuple[str, str | None], ...], ...]:
    """Spellings of a term whose words i and i+1 may be glued where joins[i] is true.

    Each spelling is a tuple of (token, case-sensitive form or None). Up to `most` joins
    are expanded in every combination, more only fully split or fully glued. A spelling
    that would glue a case-sensitive word to a case-insensitive one is left out.
    """
    forms = exact or (None,) * len(words)
    joinable = [i for i, j in enumerate(joins) if j]
    k = len(joinable)
    choices = product((False, True), repeat=k) if k <= most else [(False,) * k, (True,) * k]
    out: dict[tuple[tuple[str, str | None], ...], None] = {}
    for choice in choices:
        glued = {i for i, g in zip(joinable, choice, strict=True) if g}
        groups: list[list[int]] = [[0]]
        for i in range(1, len(words)):
            if i - 1 in glued:
                groups[-1].append(i)
            else:
                groups.append([i])
        spelling = []
        for g in groups:
            cs = [forms[i] for i in g]
            if None in cs and any(cs):
                break  # a case-sensitive word glued to a case-insensitive one
            form = None if None in cs else "".join(c for c in cs if c)
            spelling.append(("".join(words[i] for i in g), form))
        else:
            out[tuple(spelling)] = None
    return tuple(out)


if sys.maxunicode < 0x10FFFF:  # pragma: no cover - every supported CPython is wide
    raise ImportError("watchdesk needs a wide-unicode Python build")
