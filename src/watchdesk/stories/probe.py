"""What an entry brings to the story lookup: computed before the store is touched. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .signature import band_keys, is_teaser, signature, tokens_of

TITLE_WORDS = 6  # a teaser joins a story by its exact title only when it has this many words
TITLE_WINDOW = 48 * 3600.0


@dataclass(frozen=True, slots=True)
class Probe:
    signature: bytes | None  # None: too little text to judge by content (a teaser)
    band_keys: tuple[int, ...]
    title: str | None  # the normalised title, when long enough to identify a story


def probe(title: str, tokens: Sequence[str]) -> Probe:
    """`tokens`: the entry's normalised title and text (`tokens_of`, or the search index's
    tokens already computed for it, which are the same)."""
    title_tokens = tokens_of(title, "")
    normalised = " ".join(title_tokens) if len(title_tokens) >= TITLE_WORDS else None
    sig = None if is_teaser(tokens) else signature(tokens)
    return Probe(sig, tuple(band_keys(sig)) if sig is not None else (), normalised)
