"""Reading a big feed list without holding two copies of it.

rtoml builds its own document (Rust) and then the Python one: at 300,000 [[feed]] tables
both are alive at once, and the load's peak resident size was 743 MiB for a 303 MiB
result (the RSS stays near the peak afterwards: freed arenas are kept). A file whose
feed list is a plain run of [[feed]] tables is read instead in pieces of `per_piece`
tables, each parsed alone and appended, so only one piece's Rust document exists at a
time. The result is the same dictionary (a test compares them over many files).

Anything unusual and the whole file is parsed at once, as before: a multi-line string
anywhere (its lines could look like headers), a table header other than [[feed]] after
the first one (`[polling]` placed after the feeds, `[feed.x]`, `[[channel]]`), a `feed`
key in what precedes the first [[feed]], or a piece that does not parse (tomllib then
reads the whole file, so its message and line are the ones reported, as always).
"""

from __future__ import annotations

import re
from typing import Any

import rtoml

MIN_BYTES = 4 * 2**20  # smaller files are parsed at once (a few thousand feeds)
PER_PIECE = 5_000  # [[feed]] tables per rtoml call

_HEADER = re.compile(r"^[ \t]*\[", re.MULTILINE)
_FEED_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*feed[ \t]*\]\][ \t]*(?:#[^\r\n]*)?\r?$", re.MULTILINE)


def loads(text: str, *, min_bytes: int | None = None, per_piece: int | None = None) -> dict[str, Any]:
    """rtoml.loads(text), in pieces when that is the same (see the module's docstring).
    Raises what rtoml raises for a file it refuses."""
    min_bytes = MIN_BYTES if min_bytes is None else min_bytes
    per_piece = PER_PIECE if per_piece is None else per_piece
    if len(text) < min_bytes or '"""' in text or "'''" in text:
        return rtoml.loads(text)
    starts = [m.start() for m in _FEED_HEADER.finditer(text)]
    if len(starts) <= per_piece:
        return rtoml.loads(text)
    # every table header from the first [[feed]] on must be a [[feed]] header
    if sum(1 for _ in _HEADER.finditer(text, starts[0])) != len(starts):
        return rtoml.loads(text)
    data = rtoml.loads(text[: starts[0]])
    if "feed" in data:
        return rtoml.loads(text)
    feeds: list[Any] = []
    bounds = [*starts[::per_piece], len(text)]
    for begin, end in zip(bounds, bounds[1:], strict=False):
        piece = rtoml.loads(text[begin:end])
        if list(piece) != ["feed"]:  # cannot happen with only [[feed]] headers; be sure
            return rtoml.loads(text)
        feeds.extend(piece["feed"])
    data["feed"] = feeds
    return data
