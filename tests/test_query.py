"""The query language: parse trees, errors with column and hint, normalisation, tokens."""

from __future__ import annotations

import dataclasses
import unicodedata

import pytest

from watchdesk.errors import QuerySyntaxError
from watchdesk.language.query import nested_quantifier, normalize, parse_query, tokenize
from watchdesk.language.querytree import And, Near, Not, Or, Term, unparse, walk
from watchdesk.matching.match import compile_matcher
from watchdesk.models import Article, Watchlist

# query -> canonical, fully parenthesised form
TREES = [
    ("fentanyl", "fentanyl"),
    ("  fentanyl  ", "fentanyl"),
    ('"dark web"', '"dark web"'),
    ("nitazene*", "nitazene*"),
    ('"dark web*"', '"dark web*"'),
    ("a b", "(a AND b)"),
    ("a AND b", "(a AND b)"),
    ("a AND b c", "(a AND b AND c)"),
    ("a OR b OR c", "(a OR b OR c)"),
    ("a (b OR c)", "(a AND (b OR c))"),
    ("(a b) OR c", "((a AND b) OR c)"),
    ("((a))", "a"),
    ("a -b", "(a AND NOT b)"),
    ("a NOT b", "(a AND NOT b)"),
    ("a AND NOT b", "(a AND NOT b)"),
    ('-"dark web" fentanyl', '(NOT "dark web" AND fentanyl)'),
    ("a -(b OR c)", "(a AND NOT (b OR c))"),
    ("a NEAR/5 b", "(a NEAR/5 b)"),
    ('"dark web" NEAR/15 (opioid* OR pills)', '("dark web" NEAR/15 (opioid* OR pills))'),
    ("a NEAR/2 b NEAR/3 c", "((a NEAR/2 b) NEAR/3 c)"),
    ("a NEAR/2 b c", "((a NEAR/2 b) AND c)"),
    ("title:JCODE", "title:JCODE"),
    ("TITLE:JCODE", "title:JCODE"),
    ('text:"dark web"', 'text:"dark web"'),
    ("title:(a OR b) c", "(title:(a OR b) AND c)"),
    ("title:(a NEAR/3 b)", "title:(a NEAR/3 b)"),
    ("title:(title:a)", "title:title:a"),
    ("/\\d+ kg/", "/\\d+ kg/"),
    ("/(?i)fent\\/anyl/", "/(?i)fent\\/anyl/"),
    ("/a b/ c", "(/a b/ AND c)"),
    ("(/a/) b", "(/a/ AND b)"),
    ("/a/\tb", "(/a/ AND b)"),
    ("/https?:\\/\\/\\S+/", "/https?:\\/\\/\\S+/"),
    ("a -/b/", "(a AND NOT /b/)"),
    ("J-CODE", "J-CODE"),
    ("O'Brien", "O'Brien"),
    ("near", "near"),
    ("Near", "Near"),
    ("nearby", "nearby"),
    ("a –b", "(a AND NOT b)"),
    ("a —(b OR c)", "(a AND NOT (b OR c))"),
    ('a −"b c"', '(a AND NOT "b c")'),
    ("J–CODE", "J–CODE"),
    ("a-b –c", "(a-b AND NOT c)"),
    ("o'neill", "o'neill"),
    ("dealers'", "dealers'"),
    ("'til", "'til"),
    ("'fentanyl'", "'fentanyl'"),
    ("rock 'n' roll", "(rock AND 'n' AND roll)"),
    ("dealers' 'til", "(dealers' AND 'til)"),
    ("\"'dark web'\"", "\"'dark web'\""),
    ('"and" "or"', '("and" AND "or")'),
    ("“dark web”", '"dark web"'),
    ('x:y "a"b', '(x:y AND "a" AND b)'),
    ("a NEAR/1000 b", "(a NEAR/1000 b)"),
]


@pytest.mark.parametrize(("query", "tree"), TREES)
def test_parse_tree(query: str, tree: str) -> None:
    assert unparse(parse_query(query)) == tree


# query -> (column, words in the message, words in the hint)
ERRORS = [
    ("C++", 2, "'C++' would match 'c': symbols are not matched", "use a regex: /C\\+\\+/"),
    ("C# OR F#", 2, "'C#' would match 'c'", "/C\\#/"),
    ('"C++ compiler"', 3, "'C++ compiler' would match 'c compiler'", "/C\\+\\+ compiler/"),
    (".NET", 1, "'.NET' would match 'net'", "/\\.NET/"),
    ("g++*", 2, "'g++*' would match 'g'", ""),
    ("C++,", 2, "'C++,' would match 'c'", ""),
    ('"I love C#."', 10, "'I love C#.' would match 'i love c'", ""),
    ('"TCP/IP C++"', 10, "would match 'tcp ip c'", "/TCP\\/IP C\\+\\+/"),  # a hint the parser takes
    ("/x/,", 4, "',' right after a regex", ""),
    ("", 1, "empty query", "at least one word"),
    ("   ", 1, "empty query", ""),
    ('"dark web', 1, "unclosed quote", 'close the phrase with "'),
    ('fentanyl "dark web', 10, "unclosed quote", ""),
    ("(a OR b", 1, "unclosed (", "add )"),
    ("a (b", 3, "unclosed (", ""),
    ("a)", 2, "unmatched )", ""),
    ("()", 1, "empty parentheses", ""),
    ("a OR", 3, "OR needs a term after it", "a OR b"),
    ("OR a", 1, "OR needs a term before it", ""),
    ("a AND", 3, "AND needs a term after it", "a AND b"),
    ("AND a", 1, "AND needs a term before it", ""),
    ("a OR OR b", 3, "OR needs a term after it", ""),
    ("a b OR c", 5, "AND and OR mixed without parentheses", "(a b) OR c"),
    ("a OR b c", 3, "AND and OR mixed", "a (b OR c)"),
    ("a OR b -c", 3, "AND and OR mixed", ""),
    ("a AND b OR c", 9, "AND and OR mixed", ""),
    ("NOT a", 1, "would match articles that contain none of its terms", "fentanyl -patch"),
    ("-a", 1, "none of its terms", ""),
    ("a OR NOT b", 6, "none of its terms", ""),
    ("-a -b", 1, "none of its terms", ""),
    ("title:(-a)", 8, "none of its terms", ""),
    ("NOT", 1, "NOT needs a term after it", "-word"),
    ("a -", 3, "nothing after -", "no space"),
    ("a - b", 3, "nothing after -", ""),
    ("a – b", 3, "nothing after –", "-word"),
    ("a —", 3, "nothing after —", ""),
    ("(a −)", 4, "nothing after −", ""),
    ("–a", 1, "none of its terms", ""),
    ("'dark web'", 1, "single quotes around several words", 'use double quotes for a phrase: "dark web"'),
    ("fentanyl 'dark web market'", 10, "single quotes", '"dark web market"'),
    ("‘dark web’", 1, "single quotes around several words", '"dark web"'),
    ("'a{1} b'", 1, "single quotes", '"a{1} b"'),
    ("a NEAR b", 3, "NEAR needs a distance", "NEAR/10"),
    ("a near/5 b", 3, "'near/5' looks like an operator", "operators are uppercase: write NEAR/5"),
    ("a Near/15 b", 3, "looks like an operator", "write NEAR/15"),
    ("a NEAR5 b", 3, "NEAR needs a / before its distance", "write NEAR/5"),
    ("a near10 b", 3, "NEAR needs a / before its distance", "write NEAR/10"),
    ("a NEAR-5 b", 3, "NEAR needs a / before its distance", "write NEAR/5"),
    ("a NEAR/x b", 3, "needs a distance", ""),
    ("a near/x b", 3, "needs a distance", "NEAR/10"),
    ("a NEAR/0 b", 3, "NEAR/0 is out of range", "1 to 1000"),
    ("a NEAR/1001 b", 3, "out of range", ""),
    ("NEAR/5 a", 1, "NEAR/5 needs a term before it", ""),
    ("a NEAR/5", 3, "NEAR/5 needs a term after it", ""),
    ("a NEAR/5 -b", 3, "needs a term after it", ""),
    ("(a b) NEAR/5 c", 2, "not allowed next to NEAR", "(x OR y) groups"),
    ("a NEAR/5 (b -c)", 11, "not allowed next to NEAR", ""),
    ("title:a NEAR/5 b", 1, "not allowed next to NEAR", "title:(a NEAR/5 b)"),
    ("a NEAR/5 /b+/", 10, "not allowed next to NEAR", "regex"),
    ("title:(text:a)", 8, "text: inside title: can never match", ""),
    ("title: a", 1, "nothing after title:", "title:word"),
    ("title:", 1, "nothing after title:", ""),
    ("title:OR", 1, "title: needs a term after it", ""),
    ("a or b", 3, "'or' looks like an operator", 'quote it: "or"'),
    ("a and b", 3, "'and' looks like an operator", "AND"),
    ("Not a", 1, "looks like an operator", ""),
    ("fent*nyl", 5, "* is only allowed at the end", "/regex/"),
    ('"dark* web"', 6, "* is only allowed at the end", ""),
    ("*", 1, "no letters or digits", ""),
    ("ab*", 1, "too short", "3 letters"),
    ('"dark web"*', 11, "* after a phrase", '"dark web*"'),
    ("🚀", 1, "no letters or digits", "emoji"),
    ("fentanyl &&", 10, "no letters or digits", "/regex/"),
    ('""', 1, "no letters or digits", ""),
    ("/abc", 1, "unclosed regex", "\\/"),
    (
        "/fentanyl/i",
        11,
        "regex flags 'i' after the closing /",
        "inline at the start of the pattern: /(?i)fentanyl/",
    ),
    ("/x/gi", 4, "regex flags 'gi'", "/(?i)x/"),
    ("/x/ims b", 4, "regex flags 'ims'", "/(?ims)x/"),
    ("(/x/i)", 5, "regex flags", "(?i)"),
    ("/x{2}/g", 7, "regex flags 'g'", "remove them: /x{2}/"),
    ("/https?://\\S+/", 9, "a / inside a regex must be written \\/", "followed by a space, ) or the end"),
    ("/usr/bin", 5, "a / inside a regex must be written \\/", ""),
    ("/[/]/", 3, "a / inside a regex", ""),
    ("/a/b/", 3, "a / inside a regex", ""),
    ('/a/"b"', 4, "'\"' right after a regex", "followed by a space"),
    ("/a/(b)", 4, "'(' right after a regex", ""),
    ("//", 1, "empty regex", ""),
    ("/ab(/", 4, "invalid regex: missing )", "Python syntax"),
    ("x /a[/", 5, "invalid regex", ""),
    ("/a*/", 1, "regex matches empty text", ""),
    ("/(a|)/", 1, "regex matches empty text", ""),
    ("/(a+)+b/", 2, "nested repetition", "exponential"),
    ("/x(\\w+\\s?)*$/", 3, "nested repetition", ""),
    ("(" * 60 + "a" + ")" * 60, 51, "nested too deeply", ""),
]


@pytest.mark.parametrize(("query", "column", "message", "hint"), ERRORS)
def test_syntax_errors_have_column_and_hint(query: str, column: int, message: str, hint: str) -> None:
    with pytest.raises(QuerySyntaxError) as e:
        parse_query(query)
    assert message in e.value.message
    assert e.value.column == column
    assert hint in e.value.hint
    assert e.value.hint, "every error says how to fix it"
    assert str(e.value).startswith(f"column {column}: ")


DASHES = "\u2010\u2011\u2012\u2013\u2014\u2212\ufe63\uff0d"


@pytest.mark.parametrize("dash", DASHES, ids=lambda d: f"U+{ord(d):04X}")
def test_leading_typographic_dash_excludes_like_hyphen_minus(dash: str) -> None:
    for query in ("fentanyl {}patch", '{}"fentanyl patch" recall', "a ({}b OR c)"):
        assert parse_query(query.format(dash)) == parse_query(query.format("-"))
    inside = parse_query(f"J{dash}CODE")  # inside a word: unchanged, a separator between words
    assert isinstance(inside, Term) and inside.words == ("j", "code")
    assert inside.joins == (dash in "\u2010\u2011",)


def test_typographic_dash_exclusion_vetoes_a_match() -> None:
    matcher = compile_matcher([Watchlist("w", ("fentanyl \u2013patch",))])
    assert not matcher.match(Article(title="", text="a fentanyl patch recall"))
    assert matcher.match(Article(title="", text="fentanyl pills"))


def test_escaped_slash_in_regex_matches_a_slash() -> None:
    matcher = compile_matcher([Watchlist("w", ("/https?:\\/\\/\\S+/",))])
    assert matcher.match(Article(title="", text="see https://example.com/x"))
    assert not matcher.match(Article(title="", text="see https: example"))


def test_apostrophes_in_words_are_not_quotes() -> None:
    for query, words in [("o'neill", ("o", "neill")), ("dealers'", ("dealers",)), ("'til", ("til",))]:
        term = parse_query(query)
        assert isinstance(term, Term) and term.words == words and not term.phrase
    # quotes are only a mistaken phrase within a run of words, not across operators
    for query in ["'Ndrangheta AND traffickers'", "cocaine ('Ndrangheta OR camorra') smugglers"]:
        parse_query(query)


def test_design_examples_parse() -> None:
    for query in [
        "fentanyl",
        'carfentanil OR "nitazene*"',
        '"dark web" NEAR/15 (opioid* OR pills OR fentanyl)',
        "title:JCODE",
        '"fentanyl patch" recall',
        "carfentanil OR nitazene OR xylazine",
        '"Joint Criminal Opioid Darknet Enforcement"',
    ]:
        parse_query(query)


def test_terms_are_normalised_and_immutable() -> None:
    node = parse_query('"Café  Straße" naïve*')
    assert isinstance(node, And)
    phrase, prefix = node.children
    assert isinstance(phrase, Term) and isinstance(prefix, Term)
    assert phrase.words == ("cafe", "strasse") and phrase.phrase and not phrase.prefix
    assert prefix.words == ("naive",) and prefix.prefix and prefix.text == "naïve*"
    with pytest.raises(dataclasses.FrozenInstanceError):
        phrase.words = ()  # type: ignore[misc]
    upper, lower = parse_query("FENTANYL"), parse_query("fentanyl")
    assert isinstance(upper, Term) and isinstance(lower, Term) and upper.key == lower.key
    assert parse_query("a b").children[0].column == 1  # type: ignore[union-attr]
    assert parse_query("a b").children[1].column == 3  # type: ignore[union-attr]


def test_hyphens_and_apostrophes_join_words() -> None:
    term = parse_query("J-CODE")
    assert isinstance(term, Term)
    assert term.words == ("j", "code") and term.joins == (True,)
    spellings = {tuple(w for w, _ in v) for v in term.variants()}
    assert spellings == {("j", "code"), ("jcode",)}
    term = parse_query("dark-net*")
    assert isinstance(term, Term) and term.prefix
    assert {tuple(w for w, _ in v) for v in term.variants()} == {("dark", "net"), ("darknet",)}
    term = parse_query("state-of-the-art")
    assert isinstance(term, Term) and len(term.variants()) == 8
    term = parse_query("a-b-c-d-e-f")  # more than 4 hyphens: fully split or fully joined
    assert isinstance(term, Term)
    assert {tuple(w for w, _ in v) for v in term.variants()} == {
        ("a", "b", "c", "d", "e", "f"),
        ("abcdef",),
    }
    term = parse_query("don't")
    assert isinstance(term, Term) and term.joins == (True,)
    term = parse_query("U.S.")  # a dot is not a joiner: "US" is not "us"
    assert isinstance(term, Term) and term.joins == (False,) and len(term.variants()) == 1
    term = parse_query('"dark web"')
    assert isinstance(term, Term) and term.joins == (False,)


def test_case_sensitive_terms_mark_words_written_that_way() -> None:
    term = parse_query("ICE", case_sensitive_terms=["ICE"])
    assert isinstance(term, Term) and term.exact == ("ICE",)
    term = parse_query("ice", case_sensitive_terms=["ICE"])
    assert isinstance(term, Term) and term.exact == ()
    term = parse_query('"ICE agents"', case_sensitive_terms=["ICE"])
    assert isinstance(term, Term) and term.exact == ("ICE", None)
    term = parse_query('"New York Times"', case_sensitive_terms=["New York"])
    assert isinstance(term, Term) and term.exact == ("New", "York", None)
    term = parse_query("ICE-agents", case_sensitive_terms=["ICE"])
    assert isinstance(term, Term)
    # "ICEagents" would glue a case-sensitive word to another: only the split spelling
    assert [tuple(v) for v in term.variants()] == [(("ice", "ICE"), ("agents", None))]
    assert parse_query("ICE", case_sensitive_terms=["", "!!"]) == parse_query("ICE")


def test_walk_visits_every_node() -> None:
    node = parse_query('a (b OR "c d") -e f NEAR/3 g title:/h/')
    kinds = [type(n).__name__ for n in walk(node)]
    assert kinds.count("Term") == 6 and "Regex" in kinds and "Near" in kinds
    assert isinstance(node, And) and any(isinstance(c, Not) for c in node.children)
    assert any(isinstance(c, Near) for c in node.children)
    assert any(isinstance(c, Or) for c in walk(node))


@pytest.mark.parametrize(
    ("pattern", "offset"),
    [
        ("(a+)+", 0),
        ("(a*)*", 0),
        ("x(\\w+y)*", 1),
        ("((ab)+c)+", 0),
        ("(a{2,})+", 0),
        ("(a+){2,}", 0),
        ("a+b+", None),
        ("(ab)+", None),
        ("(a+)", None),
        ("(a+){3}", None),
        ("[(a+)+]", None),
        ("\\(a+\\)+", None),
        ("(a|b)+", None),
    ],
)
def test_nested_quantifier(pattern: str, offset: int | None) -> None:
    assert nested_quantifier(pattern) == offset


NORMALIZE = [
    ("Fentanyl", "fentanyl"),
    ("CAFÉ", "cafe"),
    ("cafe\u0301", "cafe"),
    ("Straße", "strasse"),
    ("ﬁne", "fine"),
    ("Ｆｕｌｌ", "full"),
    ("İstanbul", "istanbul"),
    ("Łódź", "lodz"),
    ("Søren", "soren"),
    ("ΣΟΦΟΣ", "σοφοσ"),
    ("Ελληνικά", "ελληνικα"),
    ("Ёлка", "елка"),
    ("مُحَمَّد", "محمد"),
    ("שָׁלוֹם", "שלום"),
    ("x²", "x2"),
    ("fen\u00adtanyl", "fentanyl"),
    ("a\u200db", "ab"),
    ("Ǆ", "dz"),
    ("", ""),
]


@pytest.mark.parametrize(("text", "normal"), NORMALIZE)
def test_normalize(text: str, normal: str) -> None:
    assert normalize(text) == unicodedata.normalize("NFKD", normal)
    assert normalize(normalize(text)) == normalize(text)


TOKENS = [
    ("Hello, World!", [("hello", "Hello"), ("world", "World")]),
    ("J-CODE", [("j", "J"), ("code", "CODE")]),
    ("O’Brien's", [("o", "O"), ("brien", "Brien"), ("s", "s")]),
    ("snake_case", [("snake", "snake"), ("case", "case")]),
    ("3.5 kg, $1,000", [("3", "3"), ("5", "5"), ("kg", "kg"), ("1", "1"), ("000", "000")]),
    ("Café Straße", [("cafe", "Café"), ("strasse", "Straße")]),
    ("cafe\u0301!", [("cafe", "cafe\u0301")]),
    ("fen\u00adtanyl", [("fentanyl", "fen\u00adtanyl")]),
    ("東京都", [("東", "東"), ("京", "京"), ("都", "都")]),
    ("ภาษาไทย", [("ภ", "ภ"), ("า", "า"), ("ษ", "ษ"), ("า", "า"), ("ไ", "ไ"), ("ท", "ท"), ("ย", "ย")]),
    ("한국 뉴스", [(unicodedata.normalize("NFKD", c), c) for c in "한국뉴스"]),
    ("💊fentanyl🚀", [("fentanyl", "fentanyl")]),
    ("𝐁𝐨𝐥𝐝 text", [("bold", "𝐁𝐨𝐥𝐝"), ("text", "text")]),
    ("½", [("1", "½"), ("2", "½")]),
    ("हिंदी", [("हिंदी", "हिंदी")]),
    ("", []),
    (" \n\t ", []),
]


@pytest.mark.parametrize(("text", "tokens"), TOKENS)
def test_tokenize_maps_back_to_original_offsets(text: str, tokens: list[tuple[str, str]]) -> None:
    got = tokenize(text)
    assert [(t.text, text[t.start : t.end]) for t in got] == tokens
