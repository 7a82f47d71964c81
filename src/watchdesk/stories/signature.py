"""An article's MinHash signature and its LSH band keys: plain data for the store. Pure.

The same wire story reaches a desk through many feeds, each copy with its own dateline,
credit line, headline or cut. Each entry gets a MinHash signature of the set of its word
shingles (SHINGLE consecutive normalised tokens of title and text: the tokens the matcher
and the search index use), and the signature's LSH band keys. An earlier entry sharing a
band key is a candidate; it is the same story when `similarity` of the two stored
signatures reaches DEFAULT_SIMILARITY. An entry of fewer than MIN_WORDS tokens (a teaser,
`is_teaser`) is not judged by its content at all.

Plain data throughout. A signature is NUM_PERM little-endian uint16, `bytes` of
SIGNATURE_BYTES: the low 16 bits of each of rensa's 32-bit R-MinHash values (b-bit
MinHash: two different values agree by chance once in 65,536, which raises a similarity
by at most 0.00002, and halves what is stored). A band key is an int in [0, 2**63),
a SQLite INTEGER, with the band's index in its top 7 bits, so one indexed column serves
every band. Signatures and keys are the same in every process and run (a fixed seed;
rensa hashes strings itself, never with Python's per-process `hash()`; the band hash is
BLAKE2b). SIGNATURE_VERSION, to store with each signature, changes with any parameter
here and with rensa's algorithm version: compare signatures of one version only.

The parameters come from bench/stories.py (see bench/README.md), precision first: no
false merge among the corpus's distinct articles, same-topic stories and press releases
built from one office's template (the highest similarity seen between two different
stories is 0.48, the threshold 0.6), then recall of copies with up to 10% of their
words edited, a rewritten headline, the last paragraph cut or a local paragraph added
(0.976; 0.93 at exactly 10% edited). Word pairs rather than triples: an edited word
breaks fewer shingles, while a shared template counts the same whatever the size, so
pairs keep copies further from templates. 256 slots: the estimate's spread (about 0.03
at 0.5) leaves the worst template pair 3.7 standard deviations below the threshold,
where 128 would leave 2.6. 32 bands of 4 rows (over the first 128 slots): LSH
threshold 0.42, a pair at 0.6 is a candidate with probability 0.99.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from hashlib import blake2b

from rensa import RMinHash

from ..language import fts_tokens

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

SHINGLE = 2  # words per shingle
NUM_PERM = 256  # signature slots
BANDS = 32  # LSH bands of ROWS slots each, over the first BANDS * ROWS slots
ROWS = 4
DEFAULT_SIMILARITY = 0.6  # confirm threshold on the estimated Jaccard similarity
MIN_WORDS = 50  # fewer tokens than this: a teaser, not judged by its content
SEED = 0x5EED_57  # rensa's permutation seed: part of what a signature means
SLOT_BYTES = 2  # a slot keeps the low 16 bits of rensa's 32-bit value
SIGNATURE_BYTES = NUM_PERM * SLOT_BYTES

_PARAMETERS = 1  # bump on any change of SHINGLE, NUM_PERM, BANDS, ROWS, SEED or hashing
# Stored with every signature; rensa's algorithm version is part of it (0.5 changed it).
SIGNATURE_VERSION = _PARAMETERS * 100 + int(RMinHash.ALGORITHM_VERSION)

_KEY_BITS = 56  # a band key: band index << 56 | 56 bits of the band's hash
_MAX_BANDS = 1 << (63 - _KEY_BITS)  # 128 bands keep every key a positive signed 64-bit int


def tokens_of(title: str, text: str) -> list[str]:
    """The normalised tokens of title and text: those the matcher and search index use."""
    return fts_tokens(title, text).split()


def is_teaser(tokens: Sequence[str]) -> bool:
    """Too little text to tell a story by its content (fewer than MIN_WORDS tokens)."""
    return len(tokens) < MIN_WORDS


def shingles(tokens: Sequence[str], size: int = SHINGLE) -> list[str]:
    """Every run of `size` consecutive tokens, joined by spaces (duplicates kept)."""
    if size == 1:
        return list(tokens)
    return list(map(" ".join, zip(*(tokens[i:] for i in range(size)), strict=False)))


def signature(tokens: Sequence[str], *, shingle: int = SHINGLE, num_perm: int = NUM_PERM) -> bytes | None:
    """The MinHash signature of the tokens' shingle set: NUM_PERM little-endian uint16
    (SIGNATURE_BYTES); None when there are fewer tokens than one shingle needs.

    `shingle` and `num_perm` are for benchmarks: a signature made with other values is
    not SIGNATURE_VERSION's and must not be stored or compared with stored ones.
    """
    if len(tokens) < shingle:
        return None
    sketch = RMinHash(num_perm, SEED)
    sketch.update(shingles(tokens, shingle))
    digest = sketch.digest()
    if sys.byteorder == "little":  # the low halves of the uint32, without a Python loop
        return memoryview(array("I", digest)).cast("B").cast("H")[::2].tobytes()
    low = array("H", [value & 0xFFFF for value in digest])
    low.byteswap()
    return low.tobytes()


def band_keys(sig: bytes, *, bands: int = BANDS, rows: int = ROWS) -> list[int]:
    """The signature's LSH band keys, one per band: band index << 56 | a 56-bit hash of
    the band's slots (BLAKE2b, personalised with the signature version, so keys of
    different versions do not meet). Every key is in [0, 2**63): a SQLite INTEGER.

    `bands` and `rows` are for benchmarks, as in `signature`.
    """
    width = rows * SLOT_BYTES
    if not 0 < bands * width <= len(sig):
        raise ValueError(f"a {len(sig)}-byte signature has no {bands} bands of {rows} slots")
    if bands > _MAX_BANDS:
        raise ValueError(f"at most {_MAX_BANDS} bands")
    person = b"wdstory%d" % SIGNATURE_VERSION
    view = memoryview(sig)
    return [
        band << _KEY_BITS
        | int.from_bytes(
            blake2b(view[band * width : (band + 1) * width], digest_size=7, person=person).digest()
        )
        for band in range(bands)
    ]


def similarity(a: bytes, b: bytes) -> float:
    """The estimated Jaccard similarity of two signatures' shingle sets: the share of
    slots where they agree (both of one SIGNATURE_VERSION)."""
    if len(a) != len(b) or not a or len(a) % SLOT_BYTES:
        raise ValueError(f"signatures of {len(a)} and {len(b)} bytes cannot be compared")
    left, right = memoryview(a).cast("H"), memoryview(b).cast("H")
    return sum(map(int.__eq__, left, right)) / len(left)


def lsh_threshold(bands: int = BANDS, rows: int = ROWS) -> float:
    """The similarity at which two entries become LSH candidates with probability about
    one half, (1/bands)^(1/rows); it should sit well below DEFAULT_SIMILARITY."""
    return float((1 / bands) ** (1 / rows))
