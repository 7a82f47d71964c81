"""Issue 16, item 12: a parse that fails (here: its worker killed at the parse deadline,
a real kill of a real worker process) is the feed's recorded failure with a next check
time of its own, so the dispatcher does not fetch the feed again at every tick, and the
validators of a body that never parsed are not kept."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from conftest import write_config
from server import LocalServer

from watchdesk import pipeline
from watchdesk.config import load_config
from watchdesk.runtime import Runtime

RSS = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
    b"<item><guid>a</guid><title>fentanyl</title><link>https://example.org/a</link></item>"
    b"</channel></rss>"
)


def test_a_parse_killed_at_its_deadline_is_recorded_and_not_refetched_at_once(
    tmp_path: Path, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.route("/feed", RSS, headers={"Content-Type": "application/rss+xml", "ETag": '"v1"'})
    config = write_config(tmp_path, [{"url": server.url("/feed"), "name": "Slow"}], {"d": "match = ['x']\n"})
    monkeypatch.setattr(pipeline, "PARSE_DEADLINE", 1e-6)  # no parse finishes in time: the worker is killed

    async def go() -> None:
        rt = Runtime(load_config(config))
        try:
            [row] = await rt.due()
            summary = await rt.poll_one(row)
            assert summary.failed == 1 and summary.fetched == 0
            [after] = rt.all_feeds()
            assert after.status == "failing" and after.last_error and "parsing failed" in after.last_error
            assert after.etag is None and after.body_hash is None  # nothing kept from a body never parsed
            assert after.next_check_at is not None and after.next_check_at >= time.time() + 60
            assert await rt.due() == []  # the next tick finds nothing due: no fetch loop
            assert len(server.hits("/feed")) == 1
        finally:
            await rt.aclose()

    asyncio.run(go())
