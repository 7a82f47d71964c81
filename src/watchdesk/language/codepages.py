"""Single-byte code pages: the fast path of textnorm.analyze for text in one script.

Most articles that are not plain ASCII still use one script and a few dozen distinct
characters, all of which one Windows code page holds: cp1252 (Western European), cp1250
(Central European), cp1251 (Cyrillic), cp1253 (Greek), cp1254 (Turkish), cp1257 (Baltic),
cp1255 (Hebrew), cp1256 (Arabic). Such a text is encoded one byte per character
(codecs.charmap_encode, in C), so character offsets are byte offsets; one bytes.translate
table, built here from textfold.fold_char, folds every byte; tokens are then split and
joined at C speed and decoded back to text.

A byte of a page folds to one of:
- a space: the character separates tokens;
- a *folded byte*: the character's normal form is one letter or digit; each page numbers
  the normal forms of its characters itself (ASCII stays ASCII), and `decoding` maps
  them back to text;
- an *expansion code* (a control byte that never splits): the normal form is several
  letters (ß -> ss) or nothing (a soft hyphen inside a word), spliced in after the split;
- REFOLD: anything else (½ folds to two tokens, a combining mark stays one).
A character the page lacks is encoded as a space if it is a separator (a stray emoji, a
minus sign), as REFOLD if it is part of a token (a Japanese word in a German article).
analyze folds the tokens holding REFOLD again from the original.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from .textfold import ASCII_FOLD, NO_SPACE_RE, TOKEN_RE, WORDS_RE, fold_char

__all__ = ["PAGES", "REFOLD", "CodePage", "encode"]

REFOLD = 0x01
SPACE = 0x20
# Control bytes bytes.split() does not split at (it splits at \t \n \v \f \r and space).
_CODES = (*range(0x02, 0x09), *range(0x0E, 0x20))
# Fill a page's undefined slots: spaces and dashes common in typeset text, then private
# use characters (separators, as in every page) to keep the table one-to-one.
_FILLERS = "\u202f\u2009\u200a\u200b\u2007\u2010\u2011\u2012\u2015\u2212\u2032\u2033\u2060" + "".join(
    chr(cp) for cp in range(0xF8E0, 0xF900)
)
_CODECS = ("cp1252", "cp1250", "cp1251", "cp1253", "cp1254", "cp1257", "cp1255", "cp1256")


@dataclass(frozen=True, slots=True, eq=False)
class CodePage:
    name: str
    encoding_map: object  # codecs.charmap_build: character -> page byte
    fold: bytes  # page byte -> folded byte, SPACE, an expansion code or REFOLD
    decoding: str  # folded byte -> character
    expansions: tuple[tuple[bytes, bytes], ...]  # (code, folded bytes; b"" for nothing)
    deletion: bytes  # the code of characters that fold to nothing, or b""
    lone_deletions: re.Pattern[bytes]  # a token of nothing but those
    chars: frozenset[str]


def _build(codec: str) -> CodePage:
    chars = list(bytes(range(256)).decode(codec, errors="replace"))
    fillers = (c for c in _FILLERS if c not in chars)
    chars = [next(fillers) if c == "\ufffd" else c for c in chars]
    folded: dict[str, int] = {chr(b): b for b in range(128)}  # normal form -> folded byte
    decoding = [chr(b) for b in range(128)] + ["\ufffd"] * 128
    codes = iter(_CODES)
    expansions: dict[str, int] = {}
    fold = bytearray(ASCII_FOLD[:128]) + bytearray(128)
    fold[REFOLD] = REFOLD  # what _stand_in encodes a token character the page lacks as

    def folded_byte(ch: str) -> int:
        if ch not in folded:
            folded[ch] = b = len(folded)
            decoding[b] = ch
        return folded[ch]

    for b in range(128, 256):
        c = chars[b]
        f = fold_char(c)
        if not TOKEN_RE.fullmatch(c):
            fold[b] = SPACE
        elif NO_SPACE_RE.search(c + f) or (f and not WORDS_RE.fullmatch(f)):
            fold[b] = REFOLD  # several tokens, a mark, or a script without spaces
        elif len(f) == 1:
            fold[b] = folded_byte(f)
        elif f in expansions:
            fold[b] = expansions[f]
        else:
            fold[b] = expansions[f] = next(codes, REFOLD)
    table = tuple(
        (bytes([code]), bytes(folded_byte(ch) for ch in f))
        for f, code in expansions.items()
        if code != REFOLD
    )
    assert len(folded) <= 256, codec
    deletion = bytes([expansions[""]]) if expansions.get("", REFOLD) != REFOLD else b""
    lone = re.compile(b"(?<![^ ])" + re.escape(deletion or b"\x00") + b"+(?![^ ])")
    encoding_map = codecs.charmap_build("".join(chars))
    return CodePage(
        codec, encoding_map, bytes(fold), "".join(decoding), table, deletion, lone, frozenset(chars)
    )


PAGES = tuple(_build(codec) for codec in _CODECS)
_PAGES_WITH: dict[str, tuple[CodePage, ...]] = {}
for _page in PAGES:
    for _c in _page.chars:
        if not _c.isascii():
            _PAGES_WITH[_c] = (*_PAGES_WITH.get(_c, ()), _page)


class _StandIns(dict[int, str]):
    """What a character a page lacks is encoded as: a space for a separator (an emoji, a
    minus sign), a soft hyphen (in every page) for a token character that folds to
    nothing (a variation selector), REFOLD for any other token character."""

    def __missing__(self, cp: int) -> str:
        c = chr(cp)
        if not TOKEN_RE.fullmatch(c):
            value = " "
        elif fold_char(c) == "" and not NO_SPACE_RE.match(c):
            value = "\u00ad"
        else:
            value = chr(REFOLD)
        self[cp] = value
        return value


_STAND_INS = _StandIns()


def _stand_in(e: UnicodeError) -> tuple[str, int]:
    """Codec error handler for the characters a page lacks (see _StandIns)."""
    assert isinstance(e, UnicodeEncodeError)
    return e.object[e.start : e.end].translate(_STAND_INS), e.end


codecs.register_error("watchdesk.refold", _stand_in)


class _Switch(Exception):
    """Raised by _probe: the character at `position` is in another page."""

    def __init__(self, position: int):
        super().__init__(position)
        self.position = position


def _probe(e: UnicodeError) -> tuple[str, int]:
    """Codec error handler: stop at a character another page holds; stand in for one that
    no page holds (an emoji), so that it does not decide the page."""
    assert isinstance(e, UnicodeEncodeError)
    run = e.object[e.start : e.end]
    for offset, c in enumerate(run):
        if c in _PAGES_WITH:
            raise _Switch(e.start + offset)
    return run.translate(_STAND_INS), e.end


codecs.register_error("watchdesk.probe", _probe)


def encode(text: str) -> tuple[CodePage, bytes]:
    """`text` encoded a byte per character in the first page (cp1252 first) that holds all
    of it but characters no page holds, else in the page that went furthest; what the page
    lacks is stood in for (see _StandIns).

    A try stops at the first character the page lacks that another page holds, and only
    pages holding that character are tried next.
    """
    tried: dict[str, int] = {}
    page = best = PAGES[0]
    while True:
        try:
            return page, codecs.charmap_encode(text, "watchdesk.probe", page.encoding_map)[0]  # type: ignore[arg-type]
        except _Switch as e:
            tried[page.name] = e.position
            if e.position > tried[best.name]:
                best = page
            nxt = next((p for p in _PAGES_WITH[text[e.position]] if p.name not in tried), None)
            if nxt is None:
                break
            page = nxt
    return best, codecs.charmap_encode(text, "watchdesk.refold", best.encoding_map)[0]  # type: ignore[arg-type]
