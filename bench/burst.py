"""One poll that brings --items (10,000) new entries, each with an article page to fetch
and extract (issue 15: "10,000 new pages in one poll complete"): `watchdesk poll --once`
in a subprocess, on a feed and its pages served from 127.0.0.1, [polling] max_entries
as large, fetch_article = "always". Prints its exit status and wall time, the entries
stored, where each entry's text came from (text_source: the page, or the feed's own
text with the reason), and the hits.

    python bench/burst.py                   # 10,000 pages (about a minute on 2 cores)
    python bench/burst.py --items 2000

Not a test: it prints figures. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

WORDS = ["harbour", "council", "river", "police", "seizure", "market", "ferry", "school", "report", "budget"]


def article(i: int) -> bytes:
    body = " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(120))
    special = " A fentanyl seizure was reported." if i % 100 == 0 else ""
    return (
        f"<html><head><title>Story {i}</title></head><body><article><h1>Story {i}</h1>"
        f"<p>Story {i} begins. {body}{special}</p><p>{body} Story {i} ends.</p></article></body></html>"
    ).encode()


def feed(items: int, base: str) -> bytes:
    now = formatdate(time.time(), usegmt=True)
    entries = "".join(
        f"<item><title>Story {i}</title><link>{base}/a/{i}</link><guid>{base}/a/{i}</guid>"
        f"<description>Short {i}.</description><pubDate>{now}</pubDate></item>"
        for i in range(items)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>Burst</title><link>{base}/</link>'
        f"{entries}</channel></rss>"
    ).encode()


def serve(items: int) -> tuple[ThreadingHTTPServer, str]:
    state: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path == "/feed.xml":
                data, kind = state["feed"], "application/rss+xml"
            elif self.path.startswith("/a/") and self.path[3:].isdigit():
                data, kind = article(int(self.path[3:])), "text/html; charset=utf-8"
            else:
                data, kind = b"not here", "text/plain"
                self.send_response(404)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    base = f"http://127.0.0.1:{server.server_address[1]}"
    state["feed"] = feed(items, base)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, base


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--items", type=int, default=10_000, help="new entries (and pages) in the one poll")
    p.add_argument("--concurrency", type=int, default=50, help="[network] concurrency and per_host")
    args = p.parse_args()
    server, base = serve(args.items)
    with tempfile.TemporaryDirectory(prefix="watchdesk-burst-") as tmp:
        folder = Path(tmp)
        (folder / "watchlists").mkdir()
        (folder / "watchlists" / "drugs.toml").write_text('match = ["fentanyl"]\nnotify = ["console"]\n')
        (folder / "watchdesk.toml").write_text(
            '[watchdesk]\ndatabase = "watchdesk.db"\nwatchlists = "watchlists/"\n\n'
            f'[polling]\nmax_entries = {args.items}\nfetch_article = "always"\nbackfill = "1d"\n\n'
            f'[network]\nallow = ["127.0.0.1/32"]\nconcurrency = {args.concurrency}\n'
            f'per_host = {args.concurrency}\nper_host_delay = "0s"\nrobots = false\n\n'
            f'[[feed]]\nurl = "{base}/feed.xml"\nname = "Burst"\n'
        )
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "watchdesk", "--config", str(folder / "watchdesk.toml"), "poll", "--once"],
            capture_output=True,
            text=True,
            cwd=folder,
        )
        wall = time.perf_counter() - start
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        db = sqlite3.connect(folder / "watchdesk.db")
        stored = db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        sources = Counter(
            (s if len(s) < 80 else s[:77] + "...") for (s,) in db.execute("SELECT text_source FROM entries")
        )
        hits = db.execute("SELECT COUNT(*) FROM hits").fetchone()[0]
        db.close()
    server.shutdown()
    print(
        f"burst: one poll of a feed with {args.items} new entries, each page fetched and extracted "
        f"(concurrency = per_host = {args.concurrency}, {os.cpu_count()} CPUs)"
    )
    print(
        f"poll --once: exit {done.returncode} after {wall:.1f} s, CPU {cpu.ru_utime + cpu.ru_stime:.1f} s "
        f"(it and its workers)"
    )
    print(
        f"entries stored: {stored} of {args.items}; hits: {hits} (every 100th page names fentanyl: {args.items // 100})"
    )
    print("text_source: " + ", ".join(f"{k} {v}" for k, v in sources.most_common()))
    if done.returncode != 0:
        print("stderr (last 1,500 characters):\n" + done.stderr[-1500:])
    ok = done.returncode == 0 and stored == args.items
    print(f"goal, every entry of the burst stored and the poll completed: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
