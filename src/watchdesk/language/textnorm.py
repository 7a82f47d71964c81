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
the *original* text, as an `Analyzed` (analyzed.py).
"""

from __future__ import annotations

import codecs
import re
import sys
import unicodedata
from dataclasses import dataclass
from functools import lru_cache, partial
from itertools import product

from . import codepages
from .analyzed import Analyzed, Segments, SpansOf, spans_of_runs
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
    return Analyzed(joined, Segments(segments))


def _gap_spans(source: bytes, lo: int, hi: int) -> tuple[list[int], list[int]]:
    return spans_of_runs(source[lo:hi], lo)


def _listed(starts: list[int], ends: list[int]) -> tuple[list[int], list[int]]:
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


def fts_tokens(*fields: str) -> str:
    """What the archive indexes for an entry: the normalised tokens of its fields."""
    return " ".join(analyze(f).joined.strip() for f in fields)
