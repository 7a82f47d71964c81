"""The multi-pattern stage (literals.py): every occurrence, byte offsets, any thread."""

from __future__ import annotations

import threading

import pytest

from watchdesk.matching.literals import LiteralSet
from watchdesk.matching.match import compile_matcher
from watchdesk.models import Article, Watchlist


def test_every_occurrence_of_every_pattern_overlapping_ones_too() -> None:
    found = LiteralSet([b" ab ", b" ab", b" b "]).find(b" ab ab abc b ")
    assert found == {0: [4, 7], 1: [3, 6, 9], 2: [13]}


def test_offsets_are_utf8_byte_offsets() -> None:
    text = " héroïne фентанил ".encode()
    found = LiteralSet([" фентанил ".encode()]).find(text)
    assert found == {0: [len(text)]}


def test_nothing_found_is_an_empty_dict() -> None:
    assert LiteralSet([b" x "]).find(b" y z ") == {}
    assert LiteralSet([b" x "]).find(b"") == {}


@pytest.mark.parametrize("patterns", [[], [b""], [b" a ", b""]])
def test_no_pattern_or_an_empty_one_is_refused(patterns: list[bytes]) -> None:
    with pytest.raises(ValueError, match="LiteralSet"):
        LiteralSet(patterns)


def test_threads_scan_at_once_without_sharing_scratch_space() -> None:
    literals = LiteralSet([f" w{i} ".encode() for i in range(500)])
    text = (" " + " ".join(f"w{i}" for i in range(0, 500, 7)) + " ").encode()
    expected = literals.find(text)
    results: list[dict[int, list[int]]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def scan() -> None:
        try:
            start.wait()
            for _ in range(200):
                results.append(literals.find(text))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=scan) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 800 and all(r == expected for r in results)


def test_the_matcher_gives_the_same_hits_from_many_threads() -> None:
    matcher = compile_matcher(
        [Watchlist(name="opioids", match=('"dark web" NEAR/5 fentanyl', "карфентанил"))]
    )
    article = Article(title="Наркотики", text="Vendors on the dark web sold fentanyl and карфентанил.")
    expected = matcher.match(article)
    assert [h.watchlist for h in expected] == ["opioids"]
    results = []

    def run() -> None:
        for _ in range(100):
            results.append(matcher.match(article))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 400 and all(r == expected for r in results)
