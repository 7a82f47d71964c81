"""Character-level folding: what a token character is and what each one normalises to.

A *token character* is a letter, a digit, a combining mark or an in-word ignorable (soft
hyphen, zero-width (non-)joiner, word joiner, BOM); everything else separates tokens.
Each character folds to its normal form: compatibility decomposition (NFKD), case folding,
diacritics removed (the combining-diacritics blocks, Hebrew points, Arabic harakat,
variation selectors), a few letters without a decomposition mapped to their base
(ł ø đ ħ ı ŧ), iterated to a fixed point. textnorm builds tokens from these pieces.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache, lru_cache

IGNORABLE = "\u00ad\u200c\u200d\u2060\ufeff"  # soft hyphen, ZWNJ, ZWJ, word joiner, BOM
STRIP_RANGES = (
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
NO_SPACE_SCRIPTS = (
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
EXTRA = str.maketrans({"ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ı": "i", "ŧ": "t", "ŀ": "l"})


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


MARKS = _mark_ranges()
NO_SPACE = _ranges(NO_SPACE_SCRIPTS)
STRIP = _ranges(STRIP_RANGES) + re.escape(IGNORABLE)
NO_SPACE_RE = re.compile(f"[{NO_SPACE}]")
STRIP_RE = re.compile(f"[{STRIP}]+")
# Token characters: letters and digits (\w without "_"), marks, in-word ignorables.
TOKEN_CLASS = f"[^\\W_]|[{MARKS}{re.escape(IGNORABLE)}]"
TOKEN_RE = re.compile(f"(?:{TOKEN_CLASS})+")
# A Hangul syllable as jamo, a no-space-script character with the marks that follow it,
# or a run of other word characters.
JAMO = "[\u1100-\u115f\ua960-\ua97f]+[\u1160-\u11a7\ud7b0-\ud7c6]+[\u11a8-\u11ff\ud7cb-\ud7fb]*"
SUBTOKEN_RE = re.compile(
    f"(?:{JAMO}|[{NO_SPACE}])[{MARKS}{re.escape(IGNORABLE)}]*|(?:(?![{NO_SPACE}]){TOKEN_CLASS})+"
)
WORDS_RE = re.compile(r"[^\W_]+")  # letters and digits, no marks
# Lowercase ASCII letters and digits, everything else a space.
ASCII_FOLD = bytes(c + 32 * (65 <= c <= 90) if chr(c).isalnum() and c < 128 else 32 for c in range(256))


def _fold_once(s: str, casefold: bool) -> str:
    s = unicodedata.normalize("NFKD", s)
    if casefold:
        s = unicodedata.normalize("NFKD", s.casefold())
    return STRIP_RE.sub("", s).translate(EXTRA) if casefold else STRIP_RE.sub("", s)


@cache
def fold_char(c: str, casefold: bool = True) -> str:
    """The normal form of one character, iterated to a fixed point (idempotent)."""
    s = c
    for _ in range(4):
        nxt = "".join(_fold_once(ch, casefold) for ch in s)
        if nxt == s:
            break
        s = nxt
    return s


class FoldTable(dict[int, str]):
    """str.translate table: each character to its normal form, computed on first sight."""

    def __missing__(self, cp: int) -> str:
        value = self[cp] = fold_char(chr(cp))
        return value


FOLD = FoldTable()


@lru_cache(maxsize=65536)
def fold_token(raw: str) -> tuple[tuple[str, int, int], ...]:
    """Split one original token into normalised sub-tokens with offsets relative to it."""
    out: list[tuple[str, int, int]] = []
    for m in SUBTOKEN_RE.finditer(raw):
        folded = unicodedata.normalize("NFD", m.group().translate(FOLD))
        if TOKEN_RE.fullmatch(folded) and not NO_SPACE_RE.search(folded):
            out.append((folded, m.start(), m.end()))
        else:  # compatibility forms that fold to several tokens: ½ -> 1⁄2, ⑴ -> (1)
            out.extend((s.group(), m.start(), m.end()) for s in SUBTOKEN_RE.finditer(folded))
    return tuple(out)
