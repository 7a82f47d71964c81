"""The matcher: a table of query/text/expected cases over every construct, then hits."""

from __future__ import annotations

import pytest

from watchdesk.errors import QuerySyntaxError
from watchdesk.matching.match import (
    MAX_MATCHES_PER_TERM,
    REGEX_TEXT_LIMIT,
    compile_matcher,
)
from watchdesk.matching.snippet import make_snippet
from watchdesk.models import Article, Hit, Watchlist


def case(query: str, text: str, expected: bool, *, title: str = "", cs: tuple[str, ...] = ()) -> object:
    return pytest.param(query, title, text, cs, expected, id=f"{query} | {text[:40]!r}")


LONG = ("lorem ipsum dolor sit amet " * 20_000) + "fentanyl " + ("consectetur " * 1000)
CASES = [
    # --- words: case, whole words, punctuation --------------------------------------
    case("fentanyl", "Police seized fentanyl.", True),
    case("fentanyl", "FENTANYL seized", True),
    case("fentanyl", "Fentanyl-laced pills", True),
    case("fentanyl", "(fentanyl)", True),
    case("fentanyl", "«fentanyl»", True),
    case("fentanyl", "fentanyl's spread", True),
    case("fentanyl", "fentanyls", False),
    case("fentanyl", "carfentanil", False),
    case("fentanyl", "nofentanyl here", False),
    case("fentanyl", "", False),
    case("fentanyl", "   \n\n  ", False),
    case("fentanyl", "fentanyl", True),
    case("fentanyl", "fentanyl_pills", True),
    case("fentanyl", "fen\u00adtanyl (soft hyphen)", True),
    case("fentanyl", "fen tanyl", False),
    case("fentanyl", "💊fentanyl💊", True),
    case("fentanyl", "fentanyl🚀🚀", True),
    case("fentanyl", "ｆｅｎｔａｎｙｌ (fullwidth)", True),
    case("fentanyl", "𝐟𝐞𝐧𝐭𝐚𝐧𝐲𝐥 (math bold)", True),
    case("FENTANYL", "fentanyl", True),
    case("pills", "<p>pills</p>", True),
    case("x", "x marks the spot", True),
    case("x", "xylazine", False),
    # --- accents and scripts ---------------------------------------------------------
    case("café", "CAFE", True),
    case("cafe", "Café", True),
    case("café", "cafe\u0301 (combining accent)", True),
    case("naïve", "NAIVE", True),
    case("Straße", "STRASSE gesperrt", True),
    case("strasse", "Die Straße", True),
    case("Łódź", "in Lodz", True),
    case("lodz", "w Łodzi i w Łódź", True),
    case("Søren", "Soren", True),
    case("İstanbul", "istanbul", True),
    case("México", "MEXICO city", True),
    case("niño", "el nino", True),
    case("heroína", "HEROÍNA incautada", True),
    case("Überdosis", "uberdosis", True),
    case("σοφος", "ΣΟΦΟΣ", True),
    case("Ελλάδα", "ελλαδα", True),
    case("фентанил", "ФЕНТАНИЛ изъят", True),
    case("ёлка", "Елка", True),
    case("محمد", "مُحَمَّد", True),
    case("שלום", "שָׁלוֹם", True),
    case("हिंदी", "यह हिंदी है", True),
    case("हिंदी", "हिंद", False),
    case("東京", "東京都に住む", True),
    case("京都", "東京都に住む", True),
    case("大阪", "東京都に住む", False),
    case("フェンタニル", "米国でフェンタニルが", True),
    case("ﾌｪﾝﾀﾆﾙ", "米国でフェンタニルが", True),
    case("芬太尼", "警方查获芬太尼。", True),
    case("한국", "한국 경찰", True),
    case("한국", "한국어 뉴스", True),
    case("경찰", "경찰이 펜타닐을 압수했다", True),
    case("펜타닐", "펜타 닐", True),  # spacing inside Korean words varies
    case("ยาเสพติด", "ตำรวจยึดยาเสพติดจำนวนมาก", True),
    case("fentanyl", "Фентанил fentanyl 芬太尼", True),
    # --- prefixes ----------------------------------------------------------------------
    case("nitazene*", "Nitazenes are spreading", True),
    case("nitazene*", "nitazene", True),
    case("nitazene*", "isotonitazene", False),
    case("opioid*", "opioids, opioid-related", True),
    case("opioid*", "opi oids", False),
    case("überdos*", "Überdosierung", True),
    case('"dark web*"', "on the dark websites", True),
    case('"dark web*"', "on the darkweb", False),
    case("фентан*", "фентанила", True),
    # --- phrases -----------------------------------------------------------------------
    case('"dark web"', "sold on the dark web", True),
    case('"dark web"', "sold on the Dark Web.", True),
    case('"dark web"', "the dark\nweb", True),
    case('"dark web"', "the dark\r\n\r\nweb", True),
    case('"dark web"', "the dark-web market", True),
    case('"dark web"', "the dark, web", True),
    case('"dark web"', "dark — web", True),
    case('"dark web"', "dark 🕸 web", True),
    case('"dark web"', "dark\u00a0web", True),
    case('"dark web"', "the darkweb", False),
    case('"dark web"', "dark side of the web", False),
    case('"dark web"', "web dark", False),
    case('"dark web"', "darkest web", False),
    case(
        '"Joint Criminal Opioid Darknet Enforcement"',
        "the joint criminal opioid darknet enforcement team",
        True,
    ),
    case('"counterfeit pills"', "counterfeit\tpills", True),
    case('"and"', "salt and pepper", True),
    case('"OR"', "Portland, OR", True),
    case('"3.5 kg"', "seized 3.5 kg", True),
    case('"3.5 kg"', "seized 3,5 kg", True),
    case('"3.5 kg"', "seized 35 kg", False),
    case("3.5", "3.5 grams", True),
    case("2024", "in 2024, police", True),
    case("2024", "in 20245", False),
    case("1,000", "more than 1,000 pills", True),
    case('"東京 警察"', "東京の警察", False),
    case('"東京警察"', "東京警察", True),
    # --- hyphen and spacing variants ---------------------------------------------------
    case("J-CODE", "the JCODE operation", True),
    case("J-CODE", "the J CODE operation", True),
    case("J-CODE", "the J-CODE operation", True),
    case("J-CODE", "the j‐code operation", True),
    case("J-CODE", "J-\nCODE", True),
    case("J-CODE", "the J-CODEX operation", False),
    case("JCODE", "the J-CODE operation", False),
    case("dark-net", "on the darknet", True),
    case("dark-net", "on the dark net", True),
    case("dark-net", "on the dark-net", True),
    case("dark-net", "on the Dark Net", True),
    case("darknet", "on the dark net", False),
    case("dark-net*", "darknets and dark net markets", True),
    case("dark-net*", "dark-networking", True),
    case("COVID-19", "covid19 cases", True),
    case("COVID-19", "COVID 19 cases", True),
    case("e-mail", "send an email", True),
    case("state-of-the-art", "state of the art", True),
    case("state-of-the-art", "stateoftheart", True),
    case("state-of-the-art", "state-of theart", True),
    case('"dark-web market"', "darkweb market", True),
    case('"dark-web market"', "dark web market", True),
    case("O'Brien", "Mr O’Brien said", True),
    case("O'Brien", "Mr OBrien said", True),
    case("O'Brien", "Mr O Brien said", True),
    case("don't", "we dont know", True),
    case("U.S.", "the U.S. government", True),
    case("U.S.", "help us", False),
    # --- boolean -----------------------------------------------------------------------
    case("fentanyl heroin", "fentanyl and heroin", True),
    case("fentanyl heroin", "fentanyl only", False),
    case("fentanyl AND heroin", "heroin, then fentanyl", True),
    case("carfentanil OR nitazene", "a nitazene wave", True),
    case("carfentanil OR nitazene", "a xylazine wave", False),
    case("fentanyl -patch", "fentanyl pills", True),
    case("fentanyl -patch", "fentanyl patch recall", False),
    case("fentanyl -patch", "fentanyl patches", True),
    case("fentanyl NOT patch", "fentanyl patch", False),
    case("fentanyl AND NOT patch", "fentanyl", True),
    case('fentanyl -"patch recall"', "fentanyl patch", True),
    case('fentanyl -"patch recall"', "fentanyl patch recall", False),
    case("fentanyl (pills OR powder)", "fentanyl powder", True),
    case("fentanyl (pills OR powder)", "fentanyl patch", False),
    case("(fentanyl OR heroin) seized", "heroin was seized", True),
    case("(fentanyl OR heroin) seized", "heroin was found", False),
    case("(a b) OR c", "c", True),
    case("(a b) OR c", "a", False),
    case("fentanyl -(patch OR recall)", "fentanyl recall", False),
    case("fentanyl -(patch OR recall)", "fentanyl seized", True),
    case("fentanyl -title:opinion", "fentanyl", False, title="Opinion: drugs"),
    case("fentanyl -title:opinion", "fentanyl", True, title="News"),
    case("fentanyl -opinion", "fentanyl", False, title="Opinion: drugs"),
    # --- NEAR --------------------------------------------------------------------------
    case("fentanyl NEAR/3 seized", "fentanyl was seized", True),
    case("fentanyl NEAR/3 seized", "seized: fentanyl", True),
    case("fentanyl NEAR/1 seized", "fentanyl seized", True),
    case("fentanyl NEAR/1 seized", "fentanyl was seized", False),
    case("fentanyl NEAR/2 seized", "fentanyl was seized", True),
    case("fentanyl NEAR/2 seized", "fentanyl was then seized", False),
    case("fentanyl NEAR/3 seized", "fentanyl, it was... seized!", True),
    case("fentanyl NEAR/5 fentanyl", "fentanyl alone", False),
    case("fentanyl NEAR/5 fentanyl", "fentanyl and fentanyl", True),
    case('"dark web" NEAR/2 pills', "pills sold on the dark web", False),
    case('"dark web" NEAR/4 pills', "pills sold on the dark web", True),
    case('"dark web" NEAR/15 (opioid* OR pills)', "the dark web, where opioids are sold", True),
    case('"dark web" NEAR/15 (opioid* OR pills)', "the dark web. " + "x " * 20 + "opioids", False),
    case("a NEAR/2 b NEAR/2 c", "a b c", True),
    case("a NEAR/2 b NEAR/2 c", "a b x x x c", False),
    case("J-CODE NEAR/3 arrests", "JCODE led to arrests", True),
    case("J-CODE NEAR/3 arrests", "JCODE led to 61 arrests", False),
    case("fentanyl NEAR/3 seized", "fentanyl", False, title="seized"),
    case("title:(fentanyl NEAR/3 seized)", "", True, title="Fentanyl seized"),
    case("東京 NEAR/2 警察", "東京の警察", True),
    # --- field scopes ------------------------------------------------------------------
    case("title:JCODE", "JCODE", False),
    case("title:JCODE", "", True, title="JCODE arrests 270"),
    case("text:JCODE", "JCODE", True, title="x"),
    case("text:JCODE", "", False, title="JCODE"),
    case("fentanyl", "", True, title="Fentanyl seized"),
    case('title:"dark web" fentanyl', "fentanyl sold", True, title="The dark web"),
    case("title:(fentanyl OR heroin) seized", "was seized", True, title="Heroin"),
    # --- regex -------------------------------------------------------------------------
    case("/\\d+ kg/ fentanyl", "seized 12 kg of fentanyl", True),
    case("/\\d+ kg/ fentanyl", "seized twelve kg of fentanyl", False),
    case("/Fentanyl/", "fentanyl", False),
    case("/(?i)Fentanyl/", "fentanyl", True),
    case("/café/", "cafe", False),
    case("/café/", "café", True),
    case("/\\bJ\\.?CODE\\b/", "J.CODE", True),
    case("/https?:\\/\\/\\S+onion/", "see http://abc.onion now", True),
    case("title:/^Breaking/", "Breaking", False, title="Other"),
    case("title:/^Breaking/", "", True, title="Breaking: fentanyl"),
    case("/fentanyl/", LONG, False),
    case("fentanyl", LONG, True),
    case("fentanyl -/recall/", "fentanyl recall", False),
    # --- case-sensitive terms ----------------------------------------------------------
    case("ICE raid", "ICE agents conducted a raid", True, cs=("ICE",)),
    case("ICE raid", "ice cream raid", False, cs=("ICE",)),
    case("ICE raid", "Ice raid", False, cs=("ICE",)),
    case("ICE raid", "ice raid", True),
    case("ice raid", "ICE raid", True, cs=("ICE",)),
    case('"ICE agents"', "ICE agents", True, cs=("ICE",)),
    case('"ICE agents"', "ice agents", False, cs=("ICE",)),
    case('"ICE agents"', "ICE AGENTS", True, cs=("ICE",)),
    case("ICE-agents", "ICEagents", False, cs=("ICE",)),
    case("ICE-agents", "ICE-agents", True, cs=("ICE",)),
    case("ICE*", "ICEBERG", True, cs=("ICE",)),
    case("ICE*", "iceberg", False, cs=("ICE",)),
    case("ÉTA", "ETA", True, cs=("ÉTA",)),
    case("ÉTA", "eta", False, cs=("ÉTA",)),
    case("DEA OR ICE", "ice", False, cs=("ICE", "DEA")),
    case("DEA OR ICE", "the DEA", True, cs=("ICE", "DEA")),
    case('"New York" fentanyl', "new york fentanyl", False, cs=("New York",)),
    case('"New York" fentanyl', "New York fentanyl", True, cs=("New York",)),
]


@pytest.mark.parametrize(("query", "title", "text", "cs", "expected"), CASES)
def test_table(query: str, title: str, text: str, cs: tuple[str, ...], expected: bool) -> None:
    matcher = compile_matcher([Watchlist("w", (query,), case_sensitive_terms=cs)])
    hits = matcher.match(Article(title=title, text=text))
    assert bool(hits) is expected
    for hit in hits:
        fields = {"title": title, "text": text}
        assert hit.terms, "a hit names what matched"
        for t in hit.terms:
            assert 0 <= t.start < t.end <= len(fields[t.field])
        for s, e in hit.snippet_marks:
            assert 0 <= s < e <= len(hit.snippet)


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 150


def hits_for(watchlists: list[Watchlist], article: Article, **kw: object) -> list[Hit]:
    return compile_matcher(watchlists).match(article, **kw)  # type: ignore[arg-type]


def test_hit_records_query_terms_offsets_and_snippet() -> None:
    text = "Police say fentanyl pills were sold on the dark\nweb, and more fentanyl was found."
    w = Watchlist("opioids", ("xylazine", '"dark web" NEAR/10 (pills OR fentanyl)', "fentanyl"))
    (hit,) = hits_for([w], Article(title="Fentanyl bust", text=text))
    assert hit.watchlist == "opioids"
    assert hit.query == '"dark web" NEAR/10 (pills OR fentanyl)'  # the first query that fires
    got = [(t.term, t.field, text[t.start : t.end]) for t in hit.terms]
    assert got == [
        ("fentanyl", "text", "fentanyl"),
        ("pills", "text", "pills"),
        ("dark web", "text", "dark\nweb"),
        ("fentanyl", "text", "fentanyl"),
    ]
    assert hit.snippet == " ".join(text.split())
    marked = [hit.snippet[s:e] for s, e in hit.snippet_marks]
    assert marked == ["fentanyl", "pills", "dark web", "fentanyl"]


def test_offsets_are_right_for_accented_and_non_latin_text() -> None:
    text = "À Paris, la police a saisi du fentanyl. 東京では芬太尼が押収された。Ελλάδα: φεντανύλη 💊"
    w = Watchlist("w", ("fentanyl 芬太尼 φεντανυλη",))
    (hit,) = hits_for([w], Article("", text))
    assert [(t.term, text[t.start : t.end]) for t in hit.terms] == [
        ("fentanyl", "fentanyl"),
        ("芬太尼", "芬太尼"),
        ("φεντανυλη", "φεντανύλη"),
    ]
    assert [hit.snippet[s:e] for s, e in hit.snippet_marks] == ["fentanyl", "芬太尼", "φεντανύλη"]
    text = "Cafe\u0301 STRAẞE Straße"  # combining accent, capital sharp s
    (hit,) = hits_for([Watchlist("w", ("café straße",))], Article("", text))
    assert [text[t.start : t.end] for t in hit.terms] == ["Cafe\u0301", "STRAẞE", "Straße"]


def test_title_only_match_takes_its_snippet_from_the_title() -> None:
    (hit,) = hits_for([Watchlist("w", ("title:JCODE",))], Article("JCODE: 270 arrests", "Body."))
    assert hit.terms[0].field == "title" and (hit.terms[0].start, hit.terms[0].end) == (0, 5)
    assert hit.snippet == "JCODE: 270 arrests" and hit.snippet_marks == ((0, 5),)


def test_snippet_prefers_the_text_and_is_about_thirty_words() -> None:
    text = " ".join(f"w{i}" for i in range(200)) + " fentanyl " + " ".join(f"v{i}" for i in range(200))
    (hit,) = hits_for([Watchlist("w", ("fentanyl",))], Article("fentanyl", text))
    assert {t.field for t in hit.terms} == {"title", "text"}
    assert hit.snippet.startswith("… w185 ") and hit.snippet.endswith(" v14 …")
    assert len(hit.snippet.split()) == 33  # 15 + match + 15, and the two ellipses
    ((s, e),) = hit.snippet_marks
    assert hit.snippet[s:e] == "fentanyl"


def test_one_hit_per_watchlist_and_watchlist_order() -> None:
    lists = [
        Watchlist("b", ("heroin", "fentanyl")),
        Watchlist("a", ("fentanyl",)),
        Watchlist("c", ("cocaine",)),
    ]
    hits = hits_for(lists, Article("", "fentanyl and heroin"))
    assert [(h.watchlist, h.query) for h in hits] == [("b", "heroin"), ("a", "fentanyl")]


def test_matching_names_the_watchlists_match_would_hit() -> None:
    lists = [Watchlist("b", ("heroin",)), Watchlist("a", ("fentanyl",), feeds=("wires",))]
    matcher = compile_matcher(lists)
    article = Article("", "fentanyl and heroin")
    assert matcher.matching(article) == ["b"]
    assert matcher.matching(article, feed_tags=["wires"]) == ["b", "a"]
    assert [h.watchlist for h in matcher.match(article, feed_tags=["wires"])] == ["b", "a"]


def test_exclude_vetoes_the_watchlist() -> None:
    w = Watchlist("w", ("fentanyl",), exclude=('"fentanyl patch" recall', "title:opinion"))
    assert hits_for([w], Article("", "fentanyl pills"))
    assert not hits_for([w], Article("", "the fentanyl patch recall"))
    assert not hits_for([w], Article("Opinion", "fentanyl pills"))
    assert hits_for([w], Article("", "fentanyl patch"))


def test_feeds_restrict_a_watchlist_to_names_or_tags() -> None:
    w = Watchlist("w", ("fentanyl",), feeds=("ABC7 Chicago", "wires"))
    article = Article("", "fentanyl")
    assert hits_for([w], article, feed_name="ABC7 Chicago")
    assert hits_for([w], article, feed_name="abc7 chicago")
    assert hits_for([w], article, feed_name="Other", feed_tags=["wires", "us"])
    assert not hits_for([w], article, feed_name="Other", feed_tags=["us"])
    assert not hits_for([w], article)
    assert hits_for([Watchlist("all", ("fentanyl",))], article, feed_name="Anything")


def test_identical_terms_across_watchlists_are_compiled_once() -> None:
    lists = [Watchlist(f"w{i}", ("fentanyl", '"dark web"')) for i in range(50)]
    matcher = compile_matcher(lists)
    assert matcher.stats == {"terms": 2, "patterns": 2}
    assert len(matcher.match(Article("", "the dark web"))) == 50


def test_regex_only_queries_are_evaluated_for_every_article() -> None:
    lists = [Watchlist("re", ("/\\b\\d{3}-\\d{4}\\b/",)), Watchlist("word", ("fentanyl",))]
    hits = hits_for(lists, Article("", "call 555-1234"))
    assert [h.watchlist for h in hits] == ["re"]
    assert [(t.term, t.start, t.end) for t in hits[0].terms] == [("/\\b\\d{3}-\\d{4}\\b/", 5, 13)]


def test_regex_applies_to_the_first_REGEX_TEXT_LIMIT_characters() -> None:
    w = Watchlist("w", ("/needle/",))
    assert hits_for([w], Article("", "x" * (REGEX_TEXT_LIMIT - 10) + " needle"))
    assert not hits_for([w], Article("", "x" * REGEX_TEXT_LIMIT + " needle"))


def test_regex_empty_matches_do_not_count() -> None:
    w = Watchlist("w", ("/\\bfoo|(?=bar)/",))
    assert not hits_for([w], Article("", "a bar"))
    assert hits_for([w], Article("", "a foo"))


def test_matched_terms_are_capped_per_term() -> None:
    text = "fentanyl " * 100 + "heroin"
    (hit,) = hits_for([Watchlist("w", ("fentanyl heroin",))], Article("", text))
    assert [t.term for t in hit.terms].count("fentanyl") == MAX_MATCHES_PER_TERM
    assert [t.term for t in hit.terms].count("heroin") == 1


def test_or_records_every_alternative_that_occurred() -> None:
    (hit,) = hits_for([Watchlist("w", ("a OR b OR c",))], Article("", "c then a"))
    assert [t.term for t in hit.terms] == ["c", "a"]


def test_negated_terms_are_not_recorded() -> None:
    (hit,) = hits_for([Watchlist("w", ("fentanyl -patch",))], Article("", "fentanyl"))
    assert [t.term for t in hit.terms] == ["fentanyl"]


def test_bad_query_names_the_watchlist() -> None:
    with pytest.raises(QuerySyntaxError) as e:
        compile_matcher([Watchlist("drugs", ("fentanyl OR",))])
    assert "watchlist 'drugs'" in "".join(e.value.__notes__)


def test_empty_matcher_and_empty_article() -> None:
    assert compile_matcher([]).match(Article("", "fentanyl")) == []
    assert compile_matcher([Watchlist("w", ("x",))]).match(Article("", "")) == []


def test_very_long_text_hit_is_near_the_end() -> None:
    (hit,) = hits_for([Watchlist("w", ("fentanyl",))], Article("", LONG))
    (t,) = hit.terms
    assert LONG[t.start : t.end] == "fentanyl" and t.start == 20_000 * 27
    assert len(hit.snippet) < 300


def test_make_snippet() -> None:
    assert make_snippet("short text here", 6, 10) == ("short text here", ((6, 10),))
    assert make_snippet("a (fentanyl) b", 3, 11) == ("a (fentanyl) b", ((3, 11),))
    text = "x" * 300 + " one two\n\nthree   fentanyl-laced  pills. " + "y" * 300
    i = text.index("fentanyl")
    marks = [(text.index("pills"), text.index("pills") + 5), (text.index("one"), text.index("one") + 3)]
    snippet, spans = make_snippet(text, i, i + 8, marks)
    assert snippet == "… one two three fentanyl-laced pills. …"
    assert [snippet[s:e] for s, e in spans] == ["one", "fentanyl", "pills"]
    cjk = "東京都に住む" * 100
    snippet, spans = make_snippet(cjk, 300, 302)
    assert snippet.startswith("… ") and snippet.endswith(" …") and len(snippet) < 100
    assert [snippet[s:e] for s, e in spans] == ["東京"]
    assert make_snippet("", 0, 0) == ("", ())


@pytest.mark.parametrize("where", ["first", "last"])
def test_a_match_near_an_end_of_the_text_still_gets_about_thirty_words(where: str) -> None:
    words = [f"w{i}" for i in range(100)]
    words[0 if where == "first" else -1] = "fentanyl"
    text = " ".join(words)
    i = text.index("fentanyl")
    snippet, ((s, e),) = make_snippet(text, i, i + 8)
    assert snippet[s:e] == "fentanyl"
    assert len(snippet.replace("…", "").split()) == 31  # the match and 30 words on its one side
    assert snippet.startswith("fentanyl w1 ") if where == "first" else snippet.endswith(" w98 fentanyl")


def test_a_regex_that_backtracks_forever_does_not_stall_matching(caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import threading

    matcher = compile_matcher(
        [Watchlist(name="slow", match=("/(a|aa)+$/",)), Watchlist(name="opioids", match=("fentanyl",))]
    )
    article = Article(title="", text="fentanyl " + "a" * 60 + "b")  # 2^60 ways to fail with re
    result: list[list[str]] = []
    with caplog.at_level(logging.WARNING, logger="watchdesk.matching.match"):
        worker = threading.Thread(target=lambda: result.append([h.watchlist for h in matcher.match(article)]))
        worker.daemon = True
        worker.start()
        worker.join(60)  # a generous bound: with the time limit it takes about 0.05 s
    assert result == [["opioids"]]  # the slow regex counts as no match; the other list still fires
    assert "regex_timeout pattern=/(a|aa)+$/ field=text" in caplog.text
