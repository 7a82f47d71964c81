"""web.url_problem and web.same_resource_url answer most URLs without parsing them (a
100,000-feed config checks every URL): the short cut must give what the full path gives."""

from __future__ import annotations

import random
import re

import pytest

from watchdesk import web

URLS = [
    "https://example.com/feed",
    "https://example.com./feed",
    "http://a.b.c/x/y?z=1",
    "https://example.com/?",
    "https://example.com/a?",
    "https://example.com/a/./b",
    "https://example.com/a/../b",
    "https://example.com/a/..",
    "https://Example.com/feed",
    "https://example.com/%7Efeed",
    "https://example.com/feed#top",
    "https://example.com:443/feed",
    "https://example.com:8443/feed",
    "https://user@example.com/feed",
    "https://example.com",
    "https://a..b/feed",
    "https://" + "a" * 64 + ".com/feed",
    "https://" + ".".join(["a" * 60] * 5) + "/feed",
    "https://-/x",
    "https://ex ample.com/feed",
    "https://example.com/feed with space",
    "https://example.com:99999/feed",
    "https://[::1]/feed",
    "http:///feed",
    "https://xn--bcher-kva.example/feed",
    "https://bücher.example/feed",
]


def slow_problem(url: str) -> str | None:
    saved = web._PLAIN_HOST
    try:
        web._PLAIN_HOST = re.compile("(?!)")  # type: ignore[misc, assignment]  # matches nothing
        return web.url_problem(url)
    finally:
        web._PLAIN_HOST = saved  # type: ignore[misc]


def slow_form(url: str) -> str:
    saved = web._PLAIN_URL
    try:
        web._PLAIN_URL = re.compile("(?!)")  # type: ignore[misc, assignment]
        return web.same_resource_url(url)
    finally:
        web._PLAIN_URL = saved  # type: ignore[misc]


def generated(n: int) -> list[str]:
    rng = random.Random(15)
    parts = [
        "a",
        "b1",
        "-",
        "ex-ample",
        "A",
        "",
        "x" * 63,
        "%41",
        ":80",
        ":8080",
        "@",
        "#f",
        "?",
        "?q=1",
        "/.",
        "/..",
        " ",
    ]
    out = []
    for _ in range(n):
        host = ".".join(rng.choice(parts[:7]) for _ in range(rng.randint(1, 4)))
        tail = "".join(rng.choice(parts) for _ in range(rng.randint(0, 3)))
        out.append(f"{rng.choice(['http', 'https'])}://{host}{rng.choice(['', ':443', ':1'])}/{tail}")
    return out


@pytest.mark.parametrize("url", URLS + generated(400))
def test_the_short_cuts_agree_with_the_full_paths(url: str) -> None:
    assert web.url_problem(url) == slow_problem(url)
    assert web.same_resource_url(url) == slow_form(url)


def test_a_usual_feed_url_takes_the_short_cuts() -> None:
    assert web._PLAIN_HOST.match("https://www.justice.gov/feeds/opa/justice-news.xml")
    assert web._PLAIN_URL.match("https://www.justice.gov/feeds/opa/justice-news.xml")
