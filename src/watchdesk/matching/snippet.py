"""Snippets: about SNIPPET_WORDS words of a text around a match, with marks.

A hit's snippet is what channels show under the headline. It is cut from the stored text
(whitespace collapsed, whole words, "…" where the text goes on), and the spans of the
matched terms inside it are given as offsets in the snippet, so that a channel can mark
them in its own markup.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SNIPPET_WORDS = 30
SNIPPET_CONTEXT = 240  # at most this many characters of context on each side
SNIPPET_UNSPACED = 40  # context characters in text without spaces (Chinese, Japanese)
SNIPPET_MAX_MATCH = 400  # a longer match (a greedy regex) is cut in the snippet

_WORD = re.compile(r"\S+")
Window = tuple[int, int, int, str]  # lo, hi, len(prefix), snippet


def make_snippet(
    text: str, start: int, end: int, marks: Iterable[tuple[int, int]] = ()
) -> tuple[str, tuple[tuple[int, int], ...]]:
    """About SNIPPET_WORDS words of `text` around text[start:end], whitespace collapsed.

    Returns the snippet and the spans, in the snippet, of [start, end) and of every other
    span of `marks` (offsets in `text`) that falls inside it; "…" marks cut ends.
    """
    end = min(end, start + SNIPPET_MAX_MATCH)
    window = cut_window(text, start, end)
    return window[3], place_marks(text, window, {(start, end), *marks})


def cut_window(text: str, start: int, end: int) -> Window:
    half = SNIPPET_WORDS // 2
    # Context on each side: whole words, at most SNIPPET_CONTEXT characters; a word that
    # touches the match ("(fentanyl", "fentanyl-laced") does not count. A side near an end
    # of the text gives the words it lacks to the other side.
    before = _spare(text[:start], half) if start <= SNIPPET_CONTEXT else 0
    after = _spare(text[end:], half) if end + SNIPPET_CONTEXT >= len(text) else 0
    reach = SNIPPET_CONTEXT + after * SNIPPET_CONTEXT // half
    left = text[max(0, start - reach) : start]
    if start > reach and not text[start - reach - 1].isspace():
        cut = left.split(None, 1)  # drop a word cut by the limit, or in unspaced text
        left = cut[1] if len(cut) > 1 else left[-SNIPPET_UNSPACED:]  # keep some characters
    keep = half + after + (bool(left) and not left[-1].isspace())
    parts = left.rsplit(None, keep)
    lo = start - len((left[len(parts[0]) :] if len(parts) > keep else left).lstrip())
    reach = SNIPPET_CONTEXT + before * SNIPPET_CONTEXT // half
    right = text[end : end + reach]
    if end + reach < len(text) and not text[end + reach].isspace():
        cut = right.rsplit(None, 1)
        right = cut[0] if len(cut) > 1 else right[:SNIPPET_UNSPACED]
    keep = half + before + (bool(right) and not right[0].isspace())
    parts = right.split(None, keep)
    hi = end + len((right[: len(right) - len(parts[-1])] if len(parts) > keep else right).rstrip())
    prefix = "… " if _WORD.search(text, 0, lo) else ""
    snippet = prefix + " ".join(text[lo:hi].split()) + (" …" if _WORD.search(text, hi) else "")
    return lo, hi, len(prefix), snippet


def _spare(context: str, half: int) -> int:
    """How many of its `half` words the side of a match next to an end of the text lacks."""
    return max(0, half - len(context.split(None, half)))


def place_marks(text: str, window: Window, marks: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Where spans of `text` are in the snippet of `window`; overlapping ones merged."""
    lo, hi, prefix, _ = window

    def where(offset: int, is_end: bool) -> int:
        seg = text[lo:offset]
        n = len(" ".join(seg.split()))
        return prefix + n + (n > 0 and not is_end and seg[-1].isspace())

    spans = sorted((where(s, False), where(min(e, hi), True)) for s, e in marks if lo <= s < hi and e > s)
    merged: list[tuple[int, int]] = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        elif e > s:
            merged.append((s, e))
    return tuple(merged)
