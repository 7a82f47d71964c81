"""The story fixtures: a feed with a sports item and a darknet-market story, and the
story's page. Written for these tests (tests/data/story/); the real seed story from
../shared/corpus/seed is used where it is present."""

from __future__ import annotations

from pathlib import Path

from server import LocalServer

STORY = Path(__file__).parent / "data" / "story"


def serve_story(srv: LocalServer, folder: Path = STORY, story_path: str = "/story/market") -> str:
    """Serve folder/feed.xml at /feed.xml (ARTICLE_BASE -> the server) and its story page."""
    feed = (folder / "feed.xml").read_bytes().replace(b"ARTICLE_BASE", srv.base.encode())
    srv.route("/feed.xml", feed, headers={"Content-Type": "application/rss+xml"})
    page = (folder / "article.html").read_bytes()
    srv.route(story_path, page, headers={"Content-Type": "text/html; charset=utf-8"})
    return srv.url("/feed.xml")
