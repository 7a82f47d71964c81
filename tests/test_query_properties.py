"""Properties of normalisation, tokenisation and word matching (hypothesis, derandomised)."""

from __future__ import annotations

import random
import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchdesk.language import codepages
from watchdesk.language.query import normalize, tokenize
from watchdesk.language.textnorm import _analyze_reference, analyze
from watchdesk.matching.match import compile_matcher
from watchdesk.models import Article, Watchlist

PROPERTY = settings(derandomize=True, max_examples=300, deadline=None)

# Letters of several scripts with and without accents, digits, and every kind of separator.
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" + "éèÉàÀüÜöÖßẞçÇñÑøØłŁıİœæ"
LETTERS += "αβγΣσςάΆέЖжЁёФфمحدשלוםक़िहं東京都日本語ひらがなカタカナ한국어ไทย"
SEPARATORS = " \t\n\r\u00a0\u2009.,;:!?'’\"“”«»()[]{}-‐–—/\\_|@#$%&*+=<>~^`…•·💊🚀❤\ufe0f\u200d"
ODD = "\u0301\u0308\u0327\u00ad\u200c\u200b\ufeffﬁﬂ½²①Ⅻ㎏ｆＦ𝐀𝔞\x00\x01"
texts = st.text(alphabet=LETTERS + SEPARATORS + ODD + "0123456789", max_size=80)
any_text = st.text(max_size=60)


@PROPERTY
@given(any_text)
def test_normalize_is_idempotent(text: str) -> None:
    assert normalize(normalize(text)) == normalize(text)


@PROPERTY
@given(texts)
def test_normalize_ignores_composition(text: str) -> None:
    composed = unicodedata.normalize("NFC", text)
    decomposed = unicodedata.normalize("NFD", text)
    assert normalize(composed) == normalize(decomposed)
    assert [t.text for t in tokenize(composed)] == [t.text for t in tokenize(decomposed)]


@PROPERTY
@given(st.text(alphabet=LETTERS[:52] + "éÉüÜöÖçÇñÑ" + SEPARATORS, max_size=60))
def test_normalize_ignores_case(text: str) -> None:
    assert normalize(text.upper()) == normalize(text.lower()) == normalize(text)


@PROPERTY
@given(st.one_of(texts, any_text))
def test_fast_tokeniser_agrees_with_its_definition(text: str) -> None:
    a = analyze(text)
    assert list(zip(a.words, a.starts, a.ends, strict=True)) == _analyze_reference(text)
    assert a.joined == " " + " ".join(a.words) + " "


def agrees_with_definition(text: str) -> bool:
    a = analyze(text)
    return list(zip(a.words, a.starts, a.ends, strict=True)) == _analyze_reference(text) and a.joined == (
        " " + " ".join(a.words) + " "
    )


@pytest.mark.parametrize("page", codepages.PAGES, ids=lambda p: p.name)
def test_every_code_page_character_folds_as_defined(page: codepages.CodePage) -> None:
    """Each character of each page alone, inside a word, doubled, and at the ends."""
    wrong = [
        c
        for c in sorted(page.chars)
        if not all(map(agrees_with_definition, (f"x{c}y {c} {c}{c}.", c, f"{c}ab", f"ab{c}", f"Ü{c}Ä")))
    ]
    assert wrong == []


PAGE_TEXT = st.sampled_from(codepages.PAGES).flatmap(
    lambda page: st.text(
        alphabet=st.one_of(
            st.sampled_from(sorted(page.chars)),  # the page, often
            st.sampled_from(" .-'\u00ad"),
            st.sampled_from("💊한ツ½\u0301−μ\x01"),  # characters most pages lack, or fold oddly
        ),
        max_size=60,
    )
)


@PROPERTY
@given(PAGE_TEXT)
def test_code_page_path_agrees_with_its_definition(text: str) -> None:
    assert agrees_with_definition(text)


# Long Cyrillic text with a ½ or a ツ here and there: folded in cp1251, those tokens refolded
# from the original (½ is two tokens), so spans are found a segment at a time (analyzed.Segments).
REFOLDED_IN_PLACES = st.lists(
    st.sampled_from(["бвгд бвг дбв гдб вгд ", "вгд бвг, дбв гдб бвгд ", "б½", "ツг "]), max_size=30
).map("".join)


@PROPERTY
@given(
    st.one_of(
        texts,
        PAGE_TEXT,
        st.text(alphabet="ab ,", max_size=300),  # long gaps between the tokens looked up
        st.text(alphabet="aßü \u00ad,", max_size=100),  # expansions: ß -> ss, a soft hyphen -> nothing
        REFOLDED_IN_PLACES,
    ),
    st.randoms(use_true_random=False),
)
def test_one_token_span_is_found_alone(text: str, rnd: random.Random) -> None:
    full = analyze(text)
    order = list(range(len(full.words)))
    rnd.shuffle(order)
    lazy = analyze(text)  # spans looked up one at a time, in any order
    positions = [m.start() + 1 for m in re.finditer(b" (?=[^ ])", full.encoded)]
    for i in order[: rnd.randrange(len(order) + 1)]:  # as the matcher does: some tokens found first
        assert lazy.token_at(positions[i]) == i
    rnd.shuffle(order)
    assert [lazy.span(i) for i in order] == [(full.starts[i], full.ends[i]) for i in order]


@pytest.mark.parametrize(
    ("text", "page"),
    [
        ("Ein Mann aß Würstchen", "cp1252"),
        ("Zażółć gęślą jaźń", "cp1250"),
        ("Наши герои знают толк", "cp1251"),
        ("Ελληνικά κείμενα", "cp1253"),
        ("Türkçe ağır şişe", "cp1254"),
        ("Lietuvių ąžuolas", "cp1257"),
        ("Ein Mann aß Würstchen 💊 ツ", "cp1252"),  # the page that holds most of it
        ("🔥 Наши герои знают толк", "cp1251"),  # a character no page holds does not decide
        ("✓ Ελληνικά κείμενα ❤️", "cp1253"),
    ],
)
def test_a_text_is_folded_in_the_page_of_its_script(text: str, page: str) -> None:
    assert codepages.encode(text)[0].name == page
    assert agrees_with_definition(text)


@PROPERTY
@given(st.one_of(texts, any_text))
def test_tokens_map_back_to_the_original_text(text: str) -> None:
    tokens = tokenize(text)
    for i, t in enumerate(tokens):
        assert t.text and " " not in t.text
        assert 0 <= t.start < t.end <= len(text)
        assert t.text in normalize(text[t.start : t.end])
        if i:  # in order, not overlapping (½ gives two tokens with the same span)
            prev = tokens[i - 1]
            assert t.start >= prev.end or (t.start, t.end) == (prev.start, prev.end)


VOCAB = ["fentanyl", "Fentanyl", "FENTANYL", "fentanyls", "café", "CAFE", "cafe\u0301", "Straße"]
VOCAB += ["strasse", "dark", "web", "darkweb", "pills", "ﬁne", "fine", "naïve", "東京", "한국"]
words = st.sampled_from(VOCAB) | st.text(alphabet=LETTERS[:60], min_size=1, max_size=8)
sentences = st.lists(
    st.tuples(words, st.sampled_from([" ", ", ", "\n", "-", "'", "… ", "💊", " (", ") "])),
    max_size=12,
).map(lambda pairs: "".join(w + sep for w, sep in pairs))


def matches(query: str, text: str) -> bool:
    return bool(compile_matcher([Watchlist("w", (query,))]).match(Article("", text)))


OPERATORS = {"and", "or", "not", "near"}


@PROPERTY
@given(words, sentences)
def test_a_word_matches_iff_its_normal_form_is_a_token(word: str, text: str) -> None:
    tokens = analyze(word).words
    if len(tokens) != 1 or word.casefold() in OPERATORS:
        return
    assert matches(word, text) == (tokens[0] in analyze(text).words)


@PROPERTY
@given(st.lists(words, min_size=2, max_size=3), sentences)
def test_a_phrase_matches_iff_its_tokens_are_adjacent(phrase: list[str], text: str) -> None:
    query_tokens = analyze(" ".join(phrase)).words
    text_tokens = analyze(text).words
    n = len(query_tokens)
    expected = any(text_tokens[i : i + n] == query_tokens for i in range(len(text_tokens)))
    assert matches('"' + " ".join(phrase) + '"', text) == expected


@PROPERTY
@given(
    st.text(alphabet="abcdefghij", min_size=1, max_size=5),
    st.text(alphabet="abcdefghij", min_size=1, max_size=5),
    st.sampled_from(["{a}-{b}", "{a} {b}", "{a}{b}", "{a}\n{b}", "{A}–{B}", "{a}‐{b}"]),
)
def test_a_hyphenated_term_matches_every_spacing(a: str, b: str, spelling: str) -> None:
    text = "x " + spelling.format(a=a, b=b, A=a.upper(), B=b.upper()) + " y"
    if {a, b} & OPERATORS:
        return
    assert matches(f"{a}-{b}", text)
