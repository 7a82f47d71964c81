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

``analyze(text)`` returns the normalised tokens joined by single spaces (what the
Aho-Corasick automaton scans) and each token's character offsets in the *original* text.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from functools import cache, lru_cache
from itertools import accumulate, compress, product
from operator import add

__all__ = ["Analyzed", "Token", "analyze", "exact_forms", "fold_exact", "normalize", "spellings", "tokenize"]

_IGNORABLE = "\u00ad\u200c\u200d\u2060\ufeff"  # soft hyphen, ZWNJ, ZWJ, word joiner, BOM
_STRIP_RANGES = (
    (0x0300, 0x036F),  # combining diacritical marks
    (0x0591, 0x05BD),  # Hebrew cantillation and points
    (0x05BF, 0x05C7),
    (0x0610, 0x061A),  # Arabic marks
    (0x064B, 0x065F),  # Arabic harakat
    (0x0670, 0x0670),
    (0x06D6, 0x06ED),
    (0x1AB0, 0x1AFF),  # combining diacritical marks extended
    (0x1DC0, 0x1DFF),  # ... supplement
    (0x20D0, 0x20FF),  # ... for symbols
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFE20, 0xFE2F),  # combining half marks
    (0xE0100, 0xE01EF),  # variation selectors supplement
)
_NO_SPACE_SCRIPTS = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1100, 0x11FF),  # Hangul jamo (a decomposed syllable)
    (0x1780, 0x17FF),  # Khmer
    (0x2E80, 0x2FDF),  # CJK radicals
    (0x3005, 0x3007),  # 々 〆 〇
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x31F0, 0x31FF),
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xAC00, 0xD7FF),  # Hangul syllables (particles attach to words: 경찰이, 경찰은)
    (0xF900, 0xFAFF),  # compatibility ideographs
    (0xA960, 0xA97F),  # Hangul jamo extended A
    (0xFF66, 0xFF9F),  # halfwidth Katakana
    (0x20000, 0x3FFFF),  # CJK extensions B and later
)
_EXTRA = str.maketrans({"ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ı": "i", "ŧ": "t", "ŀ": "l"})


def _ranges(pairs: tuple[tuple[int, int], ...]) -> str:
    return "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in pairs)


def _mark_ranges() -> str:
    """Character-class body of every combining mark (category M*), which `\\w` omits."""
    out: list[tuple[int, int]] = []
    for cp in range(0x20000):
        if unicodedata.category(chr(cp))[0] == "M":
            if out and out[-1][1] == cp - 1:
                out[-1] = (out[-1][0], cp)
            else:
                out.append((cp, cp))
    return _ranges((*out, (0xE0100, 0xE01EF)))


_MARKS = _mark_ranges()
_NO_SPACE = _ranges(_NO_SPACE_SCRIPTS)
_STRIP = _ranges(_STRIP_RANGES) + re.escape(_IGNORABLE)
_NO_SPACE_RE = re.compile(f"[{_NO_SPACE}]")
_STRIP_RE = re.compile(f"[{_STRIP}]+")
# Token characters: letters and digits (\w without "_"), marks, in-word ignorables.
_TOKEN_CLASS = f"[^\\W_]|[{_MARKS}{re.escape(_IGNORABLE)}]"
_TOKEN_RE = re.compile(f"(?:{_TOKEN_CLASS})+")
# A Hangul syllable as jamo, a no-space-script character with the marks that follow it,
# or a run of other word characters.
_JAMO = "[\u1100-\u115f\ua960-\ua97f]+[\u1160-\u11a7\ud7b0-\ud7c6]+[\u11a8-\u11ff\ud7cb-\ud7fb]*"
_SUBTOKEN_RE = re.compile(
    f"(?:{_JAMO}|[{_NO_SPACE}])[{_MARKS}{re.escape(_IGNORABLE)}]*|(?:(?![{_NO_SPACE}]){_TOKEN_CLASS})+"
)
_WORDS_RE = re.compile(r"[^\W_]+")  # tokens of fast-path folded text (no marks left in it)
_SPLIT_RE = re.compile(r"([\W_]+)")
_NON_ASCII_RE = re.compile(r"[^\x00-\x7f]+")
# Lowercase ASCII letters and digits, everything else a space; _MARKED keeps \x01 too.
_ASCII = bytes(c + 32 * (65 <= c <= 90) if chr(c).isalnum() and c < 128 else 32 for c in range(256))
_MARKED = _ASCII[:1] + b"\x01" + _ASCII[2:]
# Stands for a character the fast path cannot fold in place; a letter (so token boundaries
# stay put) that folded text never contains otherwise (ª itself folds to "a").
_SENTINEL = "\u00aa"


def _fold_once(s: str, casefold: bool) -> str:
    s = unicodedata.normalize("NFKD", s)
    if casefold:
        s = unicodedata.normalize("NFKD", s.casefold())
    return _STRIP_RE.sub("", s).translate(_EXTRA) if casefold else _STRIP_RE.sub("", s)


@cache
def _fold_char(c: str, casefold: bool = True) -> str:
    """The normal form of one character, iterated to a fixed point (idempotent)."""
    s = c
    for _ in range(4):
        nxt = "".join(_fold_once(ch, casefold) for ch in s)
        if nxt == s:
            break
        s = nxt
    return s


class _FoldTable(dict[int, str]):
    """str.translate table: each character to its normal form, computed on first sight."""

    def __missing__(self, cp: int) -> str:
        value = self[cp] = _fold_char(chr(cp))
        return value


class _FastTable(dict[int, str]):
    """Folds a non-ASCII character in place: a separator to a space, a token character to
    its one-character normal form, or to _SENTINEL when that form is longer or shorter,
    is a mark, is in a no-space script, or would change under str.lower()."""

    def __missing__(self, cp: int) -> str:
        c = chr(cp)
        f = _fold_char(c)
        if not _TOKEN_RE.fullmatch(c):
            value = " "
        elif len(f) == 1 and _WORDS_RE.match(f) and f.lower() == f and c != _SENTINEL:
            value = _SENTINEL if _NO_SPACE_RE.match(c) or _NO_SPACE_RE.match(f) else f
        else:
            value = _SENTINEL
        self[cp] = value
        return value


_FOLD = _FoldTable()
_FAST = _FastTable()


def normalize(text: str) -> str:
    """Compatibility decomposition, case folding and diacritics removal of every character.

    Separators are kept as they are; tokens are what `tokenize` finds in the original.
    The result is in NFKD form and `normalize(normalize(t)) == normalize(t)`.
    """
    return unicodedata.normalize("NFD", text.translate(_FOLD))  # NFD: canonical mark order


def fold_exact(text: str) -> str:
    """Like `normalize` but keeping case: how case-sensitive terms are compared."""
    return unicodedata.normalize("NFD", "".join(_fold_char(c, False) for c in text))


def exact_forms(text: str, case_sensitive: tuple[str, ...]) -> tuple[str | None, ...]:
    """Per token of `text`: its case-kept form (fold_exact) where a run of tokens is spelled
    exactly like an entry of `case_sensitive` (a word or a phrase), else None; () if none."""
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

    The spans are computed on first use: many articles never need them.
    """

    __slots__ = ("joined", "_source", "_words", "_starts", "_ends", "_jstarts", "_lookups")

    def __init__(
        self,
        joined: str,
        source: str | bytes = b"",
        starts: list[int] | None = None,
        ends: list[int] | None = None,
    ):
        self.joined = joined  # " w1 w2 ... wn " (a leading and a trailing space)
        self._source = source  # text whose tokens are at the original offsets
        self._words: list[str] | None = None
        self._starts = starts
        self._ends = ends
        self._jstarts: list[int] | None = None
        self._lookups: list[tuple[int, int]] = []  # (position in joined, token index)

    @property
    def words(self) -> list[str]:
        if self._words is None:
            self._words = self.joined.split()
        return self._words

    @property
    def starts(self) -> list[int]:
        if self._starts is None:
            self._starts, self._ends = _spans(self._source)
        return self._starts

    @property
    def ends(self) -> list[int]:
        if self._ends is None:
            self._starts, self._ends = _spans(self._source)
        return self._ends

    def token_at(self, pos: int) -> int:
        """Index of the token that starts at `pos` in `joined`."""
        if self._jstarts is None:
            marks = self._lookups  # few lookups: count spaces from the nearest known position
            if len(marks) < 64:
                k = bisect_right(marks, (pos, 0)) - 1
                before, index = marks[k] if k >= 0 else (0, -1)
                index += self.joined.count(" ", before, pos)
                marks.insert(k + 1, (pos, index))
                return index
            self._jstarts = list(accumulate(map((1).__add__, map(len, self.words)), initial=1))
        return bisect_left(self._jstarts, pos)


def _spans(source: str | bytes) -> tuple[list[int], list[int]]:
    if isinstance(source, bytes):  # lowercase letters and digits, separators are spaces
        lengths = list(map(len, source.split(b" ")))
        starts = list(compress(accumulate(map((1).__add__, lengths), initial=0), lengths))
        return starts, list(map(add, starts, filter(None, lengths)))
    parts = _SPLIT_RE.split(source)
    bounds = list(accumulate(map(len, parts), initial=0))
    starts, ends = bounds[0::2], bounds[1::2]
    if parts[-1] == "":
        del starts[-1], ends[-1]
    if parts[0] == "" and starts:
        del starts[0], ends[0]
    return starts, ends


@lru_cache(maxsize=65536)
def _fold_token(raw: str) -> tuple[tuple[str, int, int], ...]:
    """Split one original token into normalised sub-tokens with offsets relative to it."""
    out: list[tuple[str, int, int]] = []
    for m in _SUBTOKEN_RE.finditer(raw):
        folded = unicodedata.normalize("NFD", m.group().translate(_FOLD))
        if _TOKEN_RE.fullmatch(folded) and not _NO_SPACE_RE.search(folded):
            out.append((folded, m.start(), m.end()))
        else:  # compatibility forms that fold to several tokens: ½ -> 1⁄2, ⑴ -> (1)
            out.extend((s.group(), m.start(), m.end()) for s in _SUBTOKEN_RE.finditer(folded))
    return tuple(out)


def _fold_run(m: re.Match[str]) -> str:
    return m.group().translate(_FAST)


def analyze(text: str) -> Analyzed:
    """Tokenise and normalise `text` once; offsets refer to `text` as given."""
    # Fold non-ASCII characters in place (same length, same token boundaries); then the
    # common case, text that is ASCII once folded, is split at C speed on bytes.
    folded = text if text.isascii() else _NON_ASCII_RE.sub(_fold_run, text)
    if folded.isascii():
        source = folded.encode("ascii").translate(_ASCII)
        return Analyzed(" " + b" ".join(source.split()).decode("ascii") + " ", source)
    lowered = folded.lower()  # only changes ASCII: folded characters are lowercase
    if _SENTINEL not in lowered:
        return Analyzed(" " + " ".join(_WORDS_RE.findall(lowered)) + " ", lowered)
    marked = lowered.replace(_SENTINEL, "\x01")
    if marked.isascii():
        return _analyze_mixed(text, marked.encode("ascii").translate(_MARKED))
    return _analyze_mixed(text, lowered)


def _analyze_mixed(text: str, source: str | bytes) -> Analyzed:
    """Fold the tokens of `source` that hold a sentinel again from the original text."""
    starts, ends = _spans(source)
    if isinstance(source, bytes):
        words, mark = source.decode("ascii").split(), "\x01"
    else:
        words, mark = _WORDS_RE.findall(source), _SENTINEL
    redo = [i for i, w in enumerate(words) if mark in w]
    pieces: list[str] = []
    out_s: list[int] = []
    out_e: list[int] = []
    prev = 0
    for i in redo:
        pieces.append(" ".join(words[prev:i]))
        out_s += starts[prev:i]
        out_e += ends[prev:i]
        base = starts[i]
        for word, a, b in _fold_token(text[base : ends[i]]):
            pieces.append(word)
            out_s.append(base + a)
            out_e.append(base + b)
        prev = i + 1
    pieces.append(" ".join(words[prev:]))
    out_s += starts[prev:]
    out_e += ends[prev:]
    joined = " ".join(p for p in pieces if p)
    return Analyzed(" " + joined + " ", "", out_s, out_e)


def _analyze_reference(text: str) -> list[tuple[str, int, int]]:
    """The definition analyze() implements faster: every token folded on its own."""
    return [
        (word, m.start() + a, m.start() + b)
        for m in _TOKEN_RE.finditer(text)
        for word, a, b in _fold_token(m.group())
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
