"""Stories: one story across outlets, by content.

In: an article's normalised tokens. Out: a MinHash signature, its LSH band keys, and how
similar two signatures are (signature); the store keeps them and finds candidates, the
pipeline decides which story an entry joins."""

# The function signature() shadows the submodule of that name as an attribute of this
# package: import these names from here, or `from watchdesk.stories.signature import ...`.
from .signature import (
    BANDS,
    DEFAULT_SIMILARITY,
    MIN_WORDS,
    NUM_PERM,
    ROWS,
    SEED,
    SHINGLE,
    SIGNATURE_BYTES,
    SIGNATURE_VERSION,
    SLOT_BYTES,
    band_keys,
    is_teaser,
    lsh_threshold,
    shingles,
    signature,
    similarity,
    tokens_of,
)

__all__ = [
    "BANDS",
    "DEFAULT_SIMILARITY",
    "MIN_WORDS",
    "NUM_PERM",
    "ROWS",
    "SEED",
    "SHINGLE",
    "SIGNATURE_BYTES",
    "SIGNATURE_VERSION",
    "SLOT_BYTES",
    "band_keys",
    "is_teaser",
    "lsh_threshold",
    "shingles",
    "signature",
    "similarity",
    "tokens_of",
]
