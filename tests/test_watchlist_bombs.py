"""Watchlists as an attack surface: what a hostile or careless watchlist costs, and what
the user sees instead of a stalled, swapping or crashing daemon.

- regexes: all of them share a time budget per article; they match with the GIL let go;
  `check` refuses patterns that backtrack catastrophically and ones that would take
  gigabytes to compile (file:line:column);
- queries and TOML: nesting is bounded, with a clear error, never a RecursionError;
- size: terms per watchlist and in all are bounded, with a clear error at check.

Memory and time bounds are checked on `watchdesk check` run as a child process under an
address-space limit, with a generous timeout; no test here asserts a timing.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import write_config

from watchdesk.config import watchlists as watchlist_config
from watchdesk.config.watchlists import load_watchlist_file, load_watchlists
from watchdesk.errors import QuerySyntaxError
from watchdesk.language.query import MAX_DEPTH, regex_backtracking
from watchdesk.matching import match as matching
from watchdesk.matching.match import REGEX_BUDGET, REGEX_TIME_LIMIT, compile_matcher
from watchdesk.models import Article, Watchlist

MEMORY_LIMIT = 200 * 2**20  # bytes of address space `watchdesk check` gets


def check_in_child(config: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`watchdesk check` as a child process limited to MEMORY_LIMIT of address space."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    return subprocess.run(
        [sys.executable, "-m", "watchdesk", "--config", str(config), "check"],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def watchlist_file(tmp_path: Path, text: str, name: str = "w") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def problems_of(path: Path) -> list[str]:
    _, problems = load_watchlist_file(path, {"console"}, set())
    return [str(p) for p in problems]


def position(path: Path, needle: str) -> str:
    """`file:line:column` of the first `needle` in the file."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return f"{path}:{number}:{line.index(needle) + 1}"
    raise AssertionError(needle)


# ---- 7 (a): one time budget per article for all regexes -----------------------------


def slow_watchlists(count: int) -> list[Watchlist]:
    """`count` distinct regexes that each backtrack for ages on a run of a's (built directly,
    as only a watchlist that passed no check can hold them), and one plain watchlist."""
    slow = [Watchlist(f"slow{i}", (f"/(a|aa)+{i}?$/",)) for i in range(count)]
    return [*slow, Watchlist("opioids", ("fentanyl",))]


def test_all_regexes_of_an_article_share_one_time_budget(caplog: pytest.LogCaptureFixture) -> None:
    matcher = compile_matcher(slow_watchlists(20))
    article = Article(title="", text="fentanyl " + "a" * 60 + "b")  # 2^60 ways to fail, per regex
    results: list[matching.MatchResult] = []
    with caplog.at_level(logging.WARNING, logger="watchdesk.matching.match"):
        worker = threading.Thread(target=lambda: results.append(matcher.match_result(article)), daemon=True)
        worker.start()
        worker.join(120)  # a hang guard only: the budget makes it about REGEX_BUDGET
    (result,) = results
    assert [h.watchlist for h in result.hits] == ["opioids"]  # no exception, the rest still matches
    assert not result.complete
    assert sorted(s.watchlist for s in result.skipped) == sorted(f"slow{i}" for i in range(20))
    reasons = [s.reason for s in result.skipped]
    most_timeouts = round(REGEX_BUDGET / REGEX_TIME_LIMIT)
    assert reasons.count("timeout") <= most_timeouts  # the budget is shared, not per regex
    assert reasons.count("budget") >= 20 - most_timeouts
    assert {(s.query, s.field) for s in result.skipped if s.watchlist == "slow7"} == {
        ("/(a|aa)+7?$/", "text")
    }
    budget_logs = [r.getMessage() for r in caplog.records if "regex_budget_exhausted" in r.getMessage()]
    assert len(budget_logs) == 1  # once per article, naming a watchlist and its query
    assert "watchlist=slow" in budget_logs[0] and "query='/(a|aa)+" in budget_logs[0]


def test_each_article_gets_the_whole_budget_again() -> None:
    matcher = compile_matcher(slow_watchlists(8))
    first = matcher.match_result(Article("", "a" * 40 + "b"))
    second = matcher.match_result(Article("", "a" * 40 + "b"))
    assert len(first.skipped) == len(second.skipped) == 8
    assert any(s.reason == "timeout" for s in second.skipped)  # not all "budget": it started afresh


def test_fast_regexes_are_complete() -> None:
    matcher = compile_matcher([Watchlist("w", ("/\\d{3}-\\d{4}/",))])
    result = matcher.match_result(Article("", "call 555-1234"))
    assert result.complete and [h.watchlist for h in result.hits] == ["w"]
    assert result.skipped == ()


# ---- 7 (b): matching lets go of the GIL, and is safe from several threads -------------


def test_the_event_loop_runs_while_a_thread_matches_a_slow_regex(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(matching, "REGEX_TIME_LIMIT", 0.5)  # one long call into the regex engine
    monkeypatch.setattr(matching, "REGEX_BUDGET", 0.5)
    matcher = compile_matcher([Watchlist("slow", ("/(a|aa)+$/",))])
    article = Article("", "a" * 60 + "b")

    async def main() -> tuple[int, matching.MatchResult]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        ticks = 0
        result = await asyncio.to_thread(matcher.match_result, article)
        done.set()
        await task
        return ticks, result

    ticks, result = asyncio.run(main())
    assert [s.reason for s in result.skipped] == ["timeout"]  # half a second in the regex engine...
    assert ticks >= 20  # ...while the loop kept running (holding the GIL, it ticks about once)


def test_match_from_many_threads_at_once_gives_the_same_hits() -> None:
    lists = [
        Watchlist("re", ("/(?i)fent\\w+/ pills",)),
        Watchlist("near", ('"dark web" NEAR/5 fentanyl',)),
        Watchlist("plain", ("heroin OR carfentanil",)),
    ]
    matcher = compile_matcher(lists)
    articles = [
        Article(f"t{i}", f"Fentanyl{i} pills sold on the dark web, fentanyl and heroin {i}")
        for i in range(20)
    ]
    expected = [matcher.match(a) for a in articles]
    results: list[bool] = []
    start = threading.Barrier(6)

    def work() -> None:
        start.wait()
        results.append(
            all(matcher.match(a) == e for _ in range(20) for a, e in zip(articles, expected, strict=True))
        )

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == [True] * 6
    assert [h.watchlist for h in expected[0]] == ["re", "near", "plain"]


# ---- 7 (c): check refuses regexes that backtrack catastrophically ---------------------

CATASTROPHIC = [
    "(a|aa)+",
    "(a+)+",
    "(a*)*b",
    "(\\w+\\s?)*!",
    "(.*a){20}",
    "x(\\w+y)*",
    "(a{1,5})+",
    "(a+|b)+",
]
HARMLESS = [
    "(\\d+,)*\\d+",
    "\\bfentanyl\\w*",
    "(?:dark|deep) ?web",
    "\\d{3}-\\d{4}",
    "colou?r",
    "(?:\\w+\\s+){0,5}fentanyl",
    "(?:[a-z]+\\.)+onion",
    "\\$\\d+(?:,\\d{3})*(?:\\.\\d\\d)?",
    "(?i)j\\.?code",
    "(a|b)+c",
]


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_check_refuses_repetitions_that_can_backtrack_catastrophically(tmp_path: Path, pattern: str) -> None:
    toml = pattern.replace("\\", "\\\\")
    path = watchlist_file(tmp_path, f'description = "x"\nmatch = ["fentanyl", "pills /{toml}/"]\n')
    (problem,) = problems_of(path)
    group = pattern[pattern.index("(") :]
    assert problem.startswith(position(path, group.replace("\\", "\\\\")) + ": match query ")
    assert "nested repetition" in problem or "repeated alternatives overlap" in problem
    assert "exponential time" in problem


@pytest.mark.parametrize("pattern", HARMLESS)
def test_check_accepts_regexes_whose_repetitions_cannot_overlap(tmp_path: Path, pattern: str) -> None:
    toml = pattern.replace("\\", "\\\\")
    path = watchlist_file(tmp_path, f'match = ["fentanyl /{toml}/"]\n')
    assert problems_of(path) == []
    assert regex_backtracking(pattern) is None


def test_watchdesk_try_refuses_a_backtracking_regex_in_a_query_it_is_given() -> None:
    """`try` compiles its query straight into a matcher, which leaves the rule out: the
    command applies it first, as `check` does for watchlist files."""
    run = subprocess.run(
        [sys.executable, "-m", "watchdesk", "try", "fentanyl /(a|aa)+/", "--text", "fentanyl aaaa"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert "repeated alternatives overlap in regex" in run.stderr and "column 11" in run.stderr


def test_an_empty_matching_nested_repetition_is_refused_too(tmp_path: Path) -> None:
    path = watchlist_file(tmp_path, "match = ['fentanyl /(a*)*/', 'fentanyl /(\\w+\\s?)*$/']\n")
    assert len(problems_of(path)) == 2


def test_the_matcher_still_runs_a_catastrophic_regex_it_is_handed_under_its_time_limit() -> None:
    """Only `check` (loading) refuses them; a Watchlist built in code is matched, bounded."""
    result = compile_matcher([Watchlist("w", ("/(a|aa)+$/",))]).match_result(Article("", "a" * 50 + "b"))
    assert result.hits == [] and [s.reason for s in result.skipped] == ["timeout"]


# ---- 8: regexes that would take gigabytes to compile ---------------------------------


@pytest.mark.parametrize(
    ("pattern", "needle", "message"),
    [
        ("a{1000000000}", "{1000000000}", "repeats something 1,000,000,000 times: at most 1,000"),
        ("x\\d{1001,}", "{1001,}", "repeats something 1,001 times"),
        ("(?:(?:ab){100}){100}", "/(?:(?:ab)", "too large once its repetitions are counted out"),
        ("(" * 25 + "a" + ")" * 25, "(" * 5 + "a", "groups more than 20 deep"),
        ("a" * 1001, "/aaa", "regex is longer than 1000 characters"),
    ],
)
def test_check_refuses_regexes_too_large_to_compile(
    tmp_path: Path, pattern: str, needle: str, message: str
) -> None:
    path = watchlist_file(tmp_path, f"match = ['fentanyl', 'pills /{pattern}/']\n")
    (problem,) = problems_of(path)
    assert message in problem
    assert problem.startswith(position(path, needle) + ": match query ")


def test_a_regex_memory_bomb_is_refused_by_check_within_200_mb(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        [],
        {
            "bomb": "match = ['fentanyl', '/a{1000000000}/', '/(?:a{1000}){1000}/']\n",
            "fine": "match = ['/(?:\\d{3}-){2}\\d{4}/']\n",
        },
    )
    bomb = tmp_path / "watchlists" / "bomb.toml"
    done = check_in_child(config)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr
    assert f"{position(bomb, '{1000000000}')}: match query '/a{{1000000000}}/': regex repeats" in done.stderr
    assert (
        f"{position(bomb, '/(?:a{1000})')}: match query '/(?:a{{1000}}){{1000}}/': regex is too large"
        in done.stderr
    )
    assert "fine.toml" not in done.stderr


# ---- 9: nesting in queries and in TOML -----------------------------------------------


def near_chain(terms: int) -> str:
    return " NEAR/5 ".join("ab"[i % 2] for i in range(terms))


def test_a_chain_of_a_thousand_nears_is_a_check_error_not_a_crash(tmp_path: Path) -> None:
    query = near_chain(1000)
    config = write_config(tmp_path, [], {"chain": f"match = ['{query}']\n"})
    done = check_in_child(config)
    assert done.returncode == 2 and "RecursionError" not in done.stderr and "Traceback" not in done.stderr
    chain = tmp_path / "watchlists" / "chain.toml"
    column = query.index("NEAR", len(near_chain(MAX_DEPTH + 1))) + 1  # the NEAR one level too deep
    line = chain.read_text().splitlines()[0]
    assert f"{chain}:1:{line.index(query) + column}: match query" in done.stderr
    assert f"query nested too deeply (over {MAX_DEPTH} levels)" in done.stderr
    with pytest.raises(QuerySyntaxError, match="nested too deeply"):
        compile_matcher([Watchlist("chain", (query,))])  # what poll would compile: an error, no crash


def test_deep_parentheses_and_fields_are_check_errors(tmp_path: Path) -> None:
    deep = "(" * 1000 + "a" + ")" * 1000
    fields = "title:" * 1000 + "a"
    path = watchlist_file(tmp_path, f"match = ['{deep}', '{fields}']\n")
    problems = problems_of(path)
    assert len(problems) == 2 and all("nested too deeply" in p for p in problems)


def test_the_deepest_chain_allowed_matches_a_text_that_repeats_its_words() -> None:
    """A NEAR of NEARs of ... over a text made of its words: the pairings would multiply at
    each level; each NEAR keeps the first MAX_NEAR_SPANS, so this ends, and matches."""
    query = near_chain(MAX_DEPTH + 1)
    matcher = compile_matcher([Watchlist("chain", (query,))])
    hits: list[list[str]] = []
    worker = threading.Thread(
        target=lambda: hits.append([h.watchlist for h in matcher.match(Article("", "a b " * 10_000))]),
        daemon=True,
    )
    worker.start()
    worker.join(120)  # a hang guard: it takes well under a second
    assert hits == [["chain"]]


def test_a_near_of_widely_repeated_words_is_bounded_and_true() -> None:
    matcher = compile_matcher([Watchlist("w", ("fentanyl NEAR/1000 pills",))])
    (hit,) = matcher.match(Article("", "fentanyl pills " * 5000))
    assert {t.term for t in hit.terms} == {"fentanyl", "pills"}


@pytest.mark.parametrize(
    "value",
    ["[" * 10_000 + "]" * 10_000, "{ a = " * 10_000 + "1" + " }" * 10_000],
    ids=["arrays", "inline tables"],
)
@pytest.mark.parametrize("where", ["watchlist", "config"])
def test_deeply_nested_toml_is_a_check_error(tmp_path: Path, value: str, where: str) -> None:
    text = f"match = ['fentanyl']\n\nx = {value}\n"
    config = write_config(tmp_path, [], {"deep": text if where == "watchlist" else "match = ['a']\n"})
    if where == "config":
        config.write_text(config.read_text().replace("[polling]", f"x = {value}\n\n[polling]"))
    done = check_in_child(config)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "RecursionError" not in done.stderr
    file = tmp_path / "watchlists" / "deep.toml" if where == "watchlist" else config
    line = next(n for n, row in enumerate(file.read_text().splitlines(), 1) if row.startswith("x = "))
    assert f"{file}:{line}: TOML nested too deeply" in done.stderr


# ---- 11: terms per watchlist and in all ---------------------------------------------


def test_a_watchlist_with_more_queries_than_the_term_limit_is_refused_quickly(tmp_path: Path) -> None:
    count = watchlist_config.MAX_WATCHLIST_TERMS + 1
    lines = "".join(f"  'w{i}',\n" for i in range(count))
    config = write_config(tmp_path, [], {"big": f"match = [\n{lines}]\n"})
    started = time.monotonic()
    done = check_in_child(config)
    assert done.returncode == 2, done.stderr
    limit = f"{watchlist_config.MAX_WATCHLIST_TERMS:,}"
    expected = f"{tmp_path / 'watchlists' / 'big.toml'}:1: this watchlist has {count:,} queries"
    assert expected in done.stderr and f"over the limit of {limit} terms" in done.stderr
    assert time.monotonic() - started < 120  # (the hang guard of check_in_child, said plainly)


def test_terms_are_counted_in_every_query(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watchlist_config, "MAX_WATCHLIST_TERMS", 5)
    fine = watchlist_file(tmp_path, "match = ['a b', '\"c d\" OR ecstasy*']\n", "fine")  # 4 terms
    assert problems_of(fine) == []
    over = watchlist_file(tmp_path, "match = ['a b', '/x\\d/ OR ecstasy*']\nexclude = ['f -g']\n", "over")
    (problem,) = problems_of(over)
    assert problem == (
        f"{over}:1: this watchlist has 6 terms (words, phrases, prefixes and regexes), over the limit of "
        "5 terms: split it into smaller watchlists, or keep the terms that matter"
    )


def test_the_terms_of_all_watchlists_together_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watchlist_config, "MAX_TOTAL_TERMS", 5)
    folder = tmp_path / "watchlists"
    folder.mkdir()
    (folder / "a.toml").write_text("match = ['a b c']\n")
    (folder / "b.toml").write_text("match = ['d e f']\n")
    (folder / "c.toml").write_text("match = ['g']\n")
    loaded, problems = load_watchlists(folder, {"console"}, [])
    assert [w.name for w in loaded] == ["a", "c"]  # b is left out; the ones that fit stay
    (problem,) = problems
    assert str(problem).startswith(
        f"{folder / 'b.toml'}: with this watchlist's 3 terms the watchlists hold 6"
    )
    assert "over the limit of 5" in str(problem)


def test_the_regexes_of_all_watchlists_together_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watchlist_config, "MAX_TOTAL_REGEX_SIZE", 1500)
    folder = tmp_path / "watchlists"
    folder.mkdir()
    (folder / "a.toml").write_text("match = ['/x{1000}/']\n")
    (folder / "b.toml").write_text("match = ['/y{1000}/']\n")
    loaded, problems = load_watchlists(folder, {"console"}, [])
    assert [w.name for w in loaded] == ["a"]
    assert (
        "the regexes of all watchlists are too large together (2,000 items counted out, over 1,500)"
        in str(problems[0])
    )
