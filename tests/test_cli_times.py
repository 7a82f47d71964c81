"""Times a person reads are in [watchdesk] timezone with its abbreviation; every --json
time is ISO 8601 with its offset (issue 12). Before, `feeds`, `hits` and `outbox show`
printed UTC without saying so while digests used the configured zone."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from click.testing import CliRunner
from conftest import poll_once, write_config
from server import LocalServer

from watchdesk.cli.main import main

ZONE = "America/Chicago"


def rss() -> bytes:
    now = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        "<item><guid>t-1</guid><title>Agents seize fentanyl</title><link>https://example.org/a</link>"
        f"<description>Agents seized fentanyl pills.</description><pubDate>{now}</pubDate></item>"
        "</channel></rss>"
    ).encode()


def cli(config: Path, *args: str) -> str:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_human_times_carry_the_zone_and_json_times_their_offset(tmp_path: Path, server: LocalServer) -> None:
    server.route("/feed", rss(), headers={"Content-Type": "application/rss+xml"})
    feed = {"url": server.url("/feed"), "name": "Metro", "fetch_article": "never"}
    config = write_config(
        tmp_path,
        [feed],
        {"drugs": "match = ['fentanyl']\n"},
        polling='backfill = "all"',
        extra="",
    )
    config.write_text(config.read_text().replace("[watchdesk]\n", f'[watchdesk]\ntimezone = "{ZONE}"\n', 1))
    poll_once(config)
    now = datetime.now(ZoneInfo(ZONE))
    abbreviation, offset = now.strftime("%Z"), now.isoformat()[-6:]  # CST and -06:00 in winter
    assert abbreviation in ("CST", "CDT") and offset in ("-06:00", "-05:00")

    hits = cli(config, "hits")
    assert re.search(rf"hit \d+  \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d {abbreviation}  drugs", hits), hits
    assert "UTC" not in hits
    shown = cli(config, "outbox", "show", "1")
    assert re.search(rf"next attempt: \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d {abbreviation}\n", shown), shown

    [hit] = [json.loads(line) for line in cli(config, "hits", "--json").splitlines()]
    for key in ("created_at", "published"):
        assert hit[key].endswith(offset), hit
        assert abs(datetime.fromisoformat(hit[key]).timestamp() - time.time()) < 600

    feeds = cli(config, "feeds")
    assert f" {abbreviation} " in feeds.splitlines()[1] and "UTC" not in feeds
    [view] = [json.loads(line) for line in cli(config, "feeds", "--json").splitlines()]
    assert view["next_check_at"].endswith(offset) and view["last_polled_at"].endswith(offset)

    [story] = [json.loads(line) for line in cli(config, "stories", "--json").splitlines()]
    assert story["first_seen"].endswith(offset)
    assert "first seen " in cli(config, "stories") and abbreviation in cli(config, "stories")


def test_utc_stays_written_as_z_and_utc(tmp_path: Path, server: LocalServer) -> None:
    server.route("/feed", rss(), headers={"Content-Type": "application/rss+xml"})
    feed = {"url": server.url("/feed"), "name": "Metro", "fetch_article": "never"}
    config = write_config(tmp_path, [feed], {"drugs": "match = ['fentanyl']\n"}, polling='backfill = "all"')
    poll_once(config)
    [hit] = [json.loads(line) for line in cli(config, "hits", "--json").splitlines()]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", hit["created_at"])
    assert " UTC  drugs" in cli(config, "hits")
