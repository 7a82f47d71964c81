"""One alert per story: syndicated copies across outlets join the first alert.

Real parts: four outlets' feeds and article pages (each in its own page template) on a
local HTTP server, the real pipeline (extraction in its worker), Slack deliveries to a
local receiver, SQLite; a restart between copies.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from html import escape
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_config
from server import LocalServer

from watchdesk.cli import main
from watchdesk.config import load_config
from watchdesk.runtime import Runtime

NOW = datetime.now(UTC).timestamp()
RSS_TYPE = {"Content-Type": "application/rss+xml; charset=utf-8"}

STORY = [
    "Federal agents arrested four people in Toledo on Tuesday and seized more than 30,000 counterfeit "
    "pills pressed with fentanyl, the Justice Department said, calling it one of the largest seizures "
    "in northern Ohio this year.",
    "Prosecutors said the group bought the pills on a dark web market and resold them through encrypted "
    "messaging apps to buyers in at least six states, shipping them in vacuum-sealed packages hidden "
    "inside children's toys and kitchen appliances.",
    "Investigators with the Drug Enforcement Administration traced the shipments after a 19-year-old "
    "college student in Michigan died of an overdose in March. Her family found a package addressed to "
    "a post office box that agents later linked to the ring's leader.",
    "The indictment, unsealed in federal court in Toledo, charges the four with conspiracy to distribute "
    "fentanyl resulting in death, a charge that carries a mandatory minimum sentence of twenty years in "
    "prison. Two of the defendants also face money laundering counts for moving cryptocurrency through "
    "a chain of exchange accounts opened under false names.",
    "Agents searched three homes and a storage unit, where they found two pill presses, bags of powder "
    "later identified as fentanyl and a nitazene analog, and about 180,000 dollars in cash. A laboratory "
    "test showed that six in ten of the seized pills contained a potentially lethal dose.",
    "The case is part of a nationwide effort against online drug markets led by the Joint Criminal "
    "Opioid and Darknet Enforcement team, which has brought charges against hundreds of vendors since "
    "it was created. Officials urged parents to talk with their children about pills bought online.",
    "All four defendants appeared before a magistrate judge on Wednesday and were ordered held without "
    "bail pending a detention hearing next week. Their lawyers did not respond to requests for comment.",
]
OTHER = [
    "Police in Spokane seized 12 pounds of methamphetamine and two handguns during a traffic stop on "
    "Interstate 90 late Sunday, the county sheriff's office said, arresting a driver from Idaho.",
    "Deputies said a trained dog alerted to the trunk of the rental car, where the drugs were hidden in "
    "a spare tire well. The driver told investigators he had been paid to deliver the package to a "
    "parking lot in Seattle but did not know who would collect it.",
    "The sheriff said the seizure was the third on the same stretch of highway this month and that the "
    "department would add patrols near the state line. The driver was booked into the county jail on "
    "charges of possession with intent to distribute and unlawful possession of a firearm.",
    "A spokesperson for the regional drug task force said methamphetamine seizures have doubled since "
    "last year even as fentanyl seizures have drawn more attention, and that most of the drugs are "
    "trafficked along interstate highways from the south.",
    "The driver is scheduled to appear in superior court on Thursday. The sheriff's office asked anyone "
    "with information about the intended recipients to call its tip line.",
]


def edited(paragraphs: list[str], fraction: float, seed: int) -> list[str]:
    """`fraction` of the words replaced by others, as a copy editor would touch a wire story."""
    rng = random.Random(seed)
    out = []
    for p in paragraphs:
        words = p.split()
        for i in rng.sample(range(len(words)), int(len(words) * fraction)):
            words[i] = rng.choice(["local", "officials", "reported", "county", "area", "said"])
        out.append(" ".join(words))
    return out


TEMPLATES = {
    "Toledo Blade": (
        '<header><nav><a href="/">Home</a> <a href="/news">News</a> <a href="/sports">Sports</a></nav></header>'
        "<main><article><h1>{title}</h1><p class='byline'>By Staff</p>{body}</article></main>"
        "<aside><h3>Most read</h3><ul><li>Ice storm closes schools</li><li>Mud Hens sign pitcher</li></ul></aside>"
        "<footer>Copyright Toledo Blade. All rights reserved. Privacy policy. Terms of use.</footer>"
    ),
    "Detroit Free Press": (
        "<div class='top'><a href='/subscribe'>Subscribe for $1</a></div>"
        "<div class='story'><h1 class='headline'>{title}</h1><div class='body'>{body}</div></div>"
        "<div class='related'><h4>Related</h4><p>Michigan overdose deaths fall for second year</p></div>"
        "<div class='foot'>Contact us | Newsletters | Corrections</div>"
    ),
    "WTOL 11": (
        "<nav>Weather Traffic Video Live</nav><section><article><h2>{title}</h2>{body}</article></section>"
        "<section class='promo'>Download the WTOL 11 app for breaking news alerts</section>"
    ),
    "Cleveland.com": (
        "<header>cleveland.com | Sign in</header><article><h1>{title}</h1>{body}"
        "<p class='credit'>The Associated Press contributed to this report.</p></article>"
        "<footer>Advance Local Media LLC. Ad choices.</footer>"
    ),
}


def page(outlet: str, title: str, paragraphs: list[str]) -> bytes:
    body = "".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    inner = TEMPLATES[outlet].format(title=escape(title), body=body)
    return f"<!doctype html><html><head><title>{escape(title)} | {outlet}</title></head><body>{inner}</body></html>".encode()


def feed_of(server: LocalServer, outlet: str, items: list[tuple[str, str]]) -> bytes:
    """RSS with a teaser per item; `items` are (slug, title)."""
    parts = []
    for n, (slug, title) in enumerate(items):
        when = format_datetime(datetime.fromtimestamp(NOW - 60 * n, UTC))
        link = server.url(f"/{slug}")
        parts.append(
            f"<item><title>{escape(title)}</title><link>{link}</link><guid>{link}</guid>"
            f"<pubDate>{when}</pubDate><description>Read the full story.</description></item>"
        )
    return (
        f"<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>{escape(outlet)}</title>"
        + "".join(parts)
        + "</channel></rss>"
    ).encode()


@pytest.fixture(autouse=True)
def hook(server: LocalServer, monkeypatch: pytest.MonkeyPatch, database: str) -> None:
    """Every test here on both stores (the `database` fixture: SQLite, then PostgreSQL)."""
    server.route("/hook", b"ok")
    monkeypatch.setenv("HOOK_URL", server.url("/hook"))
    monkeypatch.setitem(STORE, "database", database)


STORE = {"database": "watchdesk.db"}


def slack_texts(server: LocalServer) -> list[str]:
    return [json.loads(r.body)["text"] for r in server.hits("/hook")]


def config_for(tmp_path: Path, server: LocalServer, outlets: list[str], watchlists: dict[str, str]) -> Path:
    feeds = [{"url": server.url(f"/feed/{i}"), "name": name} for i, name in enumerate(outlets)]
    return write_config(
        tmp_path,
        feeds,
        watchlists,
        polling='fetch_article = "always"\nbackfill = "all"',
        extra='[channel.newsroom]\ntype = "slack"\nwebhook = "env:HOOK_URL"\n',
        database=STORE["database"],
        network='per_host_delay = "0s"',  # every page is on 127.0.0.1: no second between them
    )


@pytest.fixture
def poll(tmp_path: Path) -> Iterator[object]:
    def run(config: Path, feed_index: int) -> None:
        """A fresh daemon each time (a restart loses nothing): poll one feed, deliver."""
        rt = Runtime(load_config(config))
        try:
            rows = [r for r in rt.all_feeds() if r.config_url.endswith(f"/feed/{feed_index}")]
            asyncio.run(rt.poll_feeds(rows))
            asyncio.run(rt.drain())
        finally:
            asyncio.run(rt.aclose())

    yield run


def test_a_story_and_three_copies_alert_once_and_list_four_outlets(
    tmp_path: Path, server: LocalServer, poll: object
) -> None:
    outlets = list(TEMPLATES)
    title = "Four charged after fentanyl pill ring bust in Toledo"
    copies = [
        (title, STORY),  # the original
        ("Toledo ring sold fentanyl pills bought on dark web, feds say", STORY),  # a rewritten headline
        (title, STORY[:-1]),  # the last paragraph cut
        (  # a dateline, a local paragraph, a credit line
            title,
            [
                "TOLEDO, Ohio (AP) — " + STORY[0],
                *STORY[1:3],
                "In Cleveland, county health officials said fentanyl was involved in most of the 600 "
                "overdose deaths recorded last year, and that counterfeit pills were a growing share.",
                *STORY[3:],
            ],
        ),
    ]
    for i, (outlet, (headline, paragraphs)) in enumerate(zip(outlets, copies, strict=True)):
        server.route(f"/story-{i}", page(outlet, headline, edited(paragraphs, 0.03, i) if i else paragraphs))
        server.route(f"/feed/{i}", feed_of(server, outlet, [(f"story-{i}", headline)]), headers=RSS_TYPE)
    config = config_for(tmp_path, server, outlets, {"opioids": 'match = ["fentanyl"]\nnotify = ["newsroom"]'})
    for i in range(4):  # each poll a new process-like runtime: a restart between any two copies
        poll(config, i)  # type: ignore[operator]
    assert slack_texts(server) == [f"[watchdesk] opioids: {title}"]
    out = CliRunner().invoke(main, ["--config", str(config), "stories", "--json"]).output
    stories = [json.loads(line) for line in out.splitlines()]
    assert len(stories) == 1
    assert stories[0]["outlets"] == outlets and stories[0]["copies"] == 4
    grouped = CliRunner().invoke(main, ["--config", str(config), "hits", "--json"]).output.splitlines()
    assert len(grouped) == 1 and len(json.loads(grouped[0])["copies"]) == 3
    every = CliRunner().invoke(main, ["--config", str(config), "hits", "--all-copies", "--json"]).output
    assert len(every.splitlines()) == 4


def test_a_copy_that_newly_matches_a_second_watchlist_alerts_that_watchlist_only(
    tmp_path: Path, server: LocalServer, poll: object
) -> None:
    outlets = ["Toledo Blade", "Detroit Free Press"]
    title = "Four charged after pill ring bust in Toledo"
    update = [
        STORY[0],
        STORY[1],
        STORY[2],
        STORY[3] + " Officials said a carfentanil shipment was also seized.",
        *STORY[4:],
    ]
    server.route("/story-0", page(outlets[0], title, STORY))
    server.route("/story-1", page(outlets[1], title, update))
    for i, outlet in enumerate(outlets):
        server.route(f"/feed/{i}", feed_of(server, outlet, [(f"story-{i}", title)]), headers=RSS_TYPE)
    config = config_for(
        tmp_path,
        server,
        outlets,
        {
            "opioids": 'match = ["fentanyl"]\nnotify = ["newsroom"]',
            "carfentanil": 'match = ["carfentanil"]\nnotify = ["newsroom"]',
        },
    )
    poll(config, 0)  # type: ignore[operator]
    poll(config, 1)  # type: ignore[operator]
    assert slack_texts(server) == [f"[watchdesk] opioids: {title}", f"[watchdesk] carfentanil: {title}"]
    (story,) = [
        json.loads(x)
        for x in CliRunner().invoke(main, ["--config", str(config), "stories", "--json"]).output.splitlines()
    ]
    assert story["copies"] == 2 and story["watchlists"] == ["carfentanil", "opioids"]


def test_two_different_stories_on_one_topic_alert_twice(
    tmp_path: Path, server: LocalServer, poll: object
) -> None:
    """Precision first: a false merge is a lost alert."""
    outlets = ["Toledo Blade", "WTOL 11"]
    server.route("/story-0", page(outlets[0], "Four charged after fentanyl pill ring bust", STORY))
    server.route(
        "/story-1",
        page(outlets[1], "Driver arrested with meth and guns on I-90", OTHER + ["Fentanyl was not found."]),
    )
    for i, outlet in enumerate(outlets):
        server.route(f"/feed/{i}", feed_of(server, outlet, [(f"story-{i}", f"Story {i}")]), headers=RSS_TYPE)
    config = config_for(tmp_path, server, outlets, {"drugs": 'match = ["fentanyl"]\nnotify = ["newsroom"]'})
    poll(config, 0)  # type: ignore[operator]
    poll(config, 1)  # type: ignore[operator]
    assert len(slack_texts(server)) == 2
    lines = CliRunner().invoke(main, ["--config", str(config), "stories", "--json"]).output.splitlines()
    assert len(lines) == 2


def test_stories_disabled_keeps_url_identity(tmp_path: Path, server: LocalServer, poll: object) -> None:
    outlets = ["Toledo Blade", "Detroit Free Press"]
    for i, outlet in enumerate(outlets):
        server.route(f"/story-{i}", page(outlet, "Four charged after fentanyl pill ring bust", STORY))
        server.route(
            f"/feed/{i}", feed_of(server, outlet, [(f"story-{i}", "Four charged")]), headers=RSS_TYPE
        )
    config = config_for(tmp_path, server, outlets, {"opioids": 'match = ["fentanyl"]\nnotify = ["newsroom"]'})
    config.write_text(config.read_text() + "\n[stories]\nenabled = false\n")
    poll(config, 0)  # type: ignore[operator]
    poll(config, 1)  # type: ignore[operator]
    assert len(slack_texts(server)) == 2  # two URLs, two stories, as before stories existed


# ---- the corpus: distinct articles never merge ---------------------------------------------


def test_forty_distinct_corpus_articles_alert_forty_times(
    tmp_path: Path, server: LocalServer, corpus: Path, poll: object
) -> None:
    """Distinct real articles (several on the same topics: technology, climate, politics)
    served by four outlets: one alert each, none merged into another's story."""
    pages = sorted((corpus / "articles" / "trafilatura").glob("*.html"))[:40]
    assert len(pages) == 40
    outlets = list(TEMPLATES)
    by_feed: dict[int, list[tuple[str, str]]] = {i: [] for i in range(4)}
    for n, path in enumerate(pages):
        server.route(f"/a{n}", path.read_bytes(), headers={"Content-Type": "text/html; charset=utf-8"})
        by_feed[n % 4].append((f"a{n}", f"Article {n}"))
    for i, items in by_feed.items():
        server.route(f"/feed/{i}", feed_of(server, outlets[i], items), headers=RSS_TYPE)
    config = config_for(tmp_path, server, outlets, {"all": 'match = ["/./"]\nnotify = ["newsroom"]'})
    for i in range(4):
        poll(config, i)  # type: ignore[operator]
    stories = (
        CliRunner().invoke(main, ["--config", str(config), "stories", "--json", "--limit", "100"]).output
    )
    assert len(stories.splitlines()) == 40
    assert len(slack_texts(server)) == 40


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def poll_at(config: Path, feed_index: int, clock: Clock) -> Runtime:
    rt = Runtime(load_config(config), clock=clock, rand=lambda: 0.5)
    rows = [r for r in rt.all_feeds() if r.config_url.endswith(f"/feed/{feed_index}")]
    asyncio.run(rt.poll_feeds(rows))
    asyncio.run(rt.drain())
    return rt


def test_a_digest_lists_the_other_outlets(tmp_path: Path, server: LocalServer) -> None:
    outlets = ["Toledo Blade", "Detroit Free Press", "WTOL 11", "Cleveland.com"]
    title = "Four charged after fentanyl pill ring bust in Toledo"
    for i, outlet in enumerate(outlets):
        server.route(f"/story-{i}", page(outlet, title, edited(STORY, 0.02, i) if i else STORY))
        server.route(f"/feed/{i}", feed_of(server, outlet, [(f"story-{i}", title)]), headers=RSS_TYPE)
    config = config_for(
        tmp_path,
        server,
        outlets,
        {"opioids": 'match = ["fentanyl"]\nnotify = ["newsroom"]\ndelivery = "hourly"'},
    )
    clock = Clock(NOW)
    for i in range(4):
        asyncio.run(poll_at(config, i, clock).aclose())
    assert server.hits("/hook") == []  # waiting for the hourly digest
    clock.now += 2 * 3600
    asyncio.run(poll_at(config, 0, clock).aclose())
    (digest,) = [json.loads(r.body) for r in server.hits("/hook")]
    text = json.dumps(digest["blocks"])
    assert "also in: Detroit Free Press, WTOL 11 (+1)" in text
    assert "1 alert" in digest["text"]


def test_copies_join_only_within_the_window(tmp_path: Path, server: LocalServer) -> None:
    """Signatures older than [stories] window are pruned: a copy after it is a new story."""
    outlets = ["Toledo Blade", "Detroit Free Press"]
    for i, outlet in enumerate(outlets):
        server.route(f"/story-{i}", page(outlet, f"Headline {i} about the ring", STORY))
        server.route(f"/feed/{i}", feed_of(server, outlet, [(f"story-{i}", f"Story {i}")]), headers=RSS_TYPE)
    config = config_for(tmp_path, server, outlets, {"opioids": 'match = ["fentanyl"]\nnotify = ["newsroom"]'})
    config.write_text(config.read_text() + '\n[stories]\nwindow = "2d"\n')
    clock = Clock(NOW)
    rt = poll_at(config, 0, clock)
    assert rt.db.execute("SELECT COUNT(*) FROM story_signatures").fetchone()[0] == 1
    asyncio.run(rt.aclose())
    clock.now += 3 * 86400
    rt = poll_at(config, 1, clock)
    try:
        assert rt.db.execute("SELECT COUNT(*) FROM stories").fetchone()[0] == 2
        assert rt.db.execute("SELECT COUNT(*) FROM story_signatures").fetchone()[0] == 1  # the old one pruned
    finally:
        asyncio.run(rt.aclose())
    assert len(slack_texts(server)) == 2


def test_one_feeds_recurring_teaser_headline_alerts_every_day(tmp_path: Path, server: LocalServer) -> None:
    """A teaser joins a story by its title only from another feed: a feed's own daily
    'Morning briefing: ...' headline is a new story each day."""
    title = "Morning briefing: the five things you need to know today"
    days = []
    for day in range(2):
        link = server.url(f"/brief-{day}")
        when = format_datetime(datetime.fromtimestamp(NOW + 86400 * day, UTC))
        days.append(
            f"<item><title>{title}</title><link>{link}</link><guid>{link}</guid><pubDate>{when}</pubDate>"
            f"<description>Fentanyl seizure {day} and more.</description></item>"
        )
    config = write_config(
        tmp_path,
        [{"url": server.url("/feed/0"), "name": "Metro"}],
        {"opioids": 'match = ["fentanyl"]\nnotify = ["newsroom"]'},
        polling='fetch_article = "never"\nbackfill = "all"',
        extra='[channel.newsroom]\ntype = "slack"\nwebhook = "env:HOOK_URL"\n',
        database=STORE["database"],
    )
    head = "<?xml version='1.0'?><rss version='2.0'><channel><title>Metro</title>"
    clock = Clock(NOW)
    for day in range(2):
        server.route(
            "/feed/0", (head + "".join(days[: day + 1]) + "</channel></rss>").encode(), headers=RSS_TYPE
        )
        asyncio.run(poll_at(config, 0, clock).aclose())
        clock.now += 86400
    assert len(slack_texts(server)) == 2
