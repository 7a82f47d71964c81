"""A field's normalised tokens and where each one is in the original text (Analyzed).

textnorm.analyze builds it. The matcher looks tokens up by their position in `encoded`
(token_at) and asks for the spans of the few it reports (span); those are found without
computing every token's when the folded source is aligned with the joined tokens, or a
segment at a time when some tokens were refolded (Segments).
"""

from __future__ import annotations

import re
import sys
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from itertools import accumulate, compress
from operator import add, itemgetter

__all__ = ["Analyzed", "SpansOf", "Unexpanded", "spans_of_runs", "Segments"]


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
        self._starts, self._ends = spans_of_runs(source) if isinstance(source, bytes) else source()

    def span(self, i: int) -> tuple[int, int]:
        """Offsets of token `i` in the original text. A few lookups need not compute every
        token's: the non-space bytes before token i in `source` are the letters before it
        in `joined` (less what expansions added), and counting spaces (in C) from the
        nearest token already found gets there (_seek)."""
        source = self._source
        if isinstance(source, Segments) and self._starts is None:
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


def spans_of_runs(source: bytes, base: int = 0) -> tuple[list[int], list[int]]:
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


SpansOf = Callable[[], tuple[list[int], list[int]]]


class Segments:
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
