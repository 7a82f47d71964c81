"""What an entry brings to the story lookup: computed before the store is touched. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from .signature import MIN_WORDS, band_keys, signature, tokens_of

TITLE_WORDS = 6  # a teaser joins a story by its exact title only when it has this many words
TITLE_WINDOW = 48 * 3600.0


@dataclass(frozen=True, slots=True)
class Probe:
    signature: bytes | None  # None: too little text to judge by content (a teaser)
    band_keys: tuple[int, ...]
    title: str | None  # the normalised title, when long enough to identify a story


def probe(title: str, text: str) -> Probe:
    title_tokens = tokens_of(title, "")
    normalised = " ".join(title_tokens) if len(title_tokens) >= TITLE_WORDS else None
    tokens = tokens_of(title, text)
    sig = signature(tokens) if len(tokens) >= MIN_WORDS else None
    return Probe(sig, tuple(band_keys(sig)) if sig is not None else (), normalised)
