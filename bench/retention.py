"""Retention: pruning a big database, and what it costs the poll path meanwhile.

1. A database of --entries entries (1,000,000 by default) is generated directly through
   the store's tables (search-index rows included, the matcher's own tokens), seen over
   the last --days days (180), 1% of them with a hit, in a file with
   auto_vacuum=INCREMENTAL (as new databases are made).
2. Prune to --keep days (90) the way the daemon does (retention.prune_through): batches
   through the store's writer thread, each sized for ~50 ms of write lock and followed
   by nine times as long idle, then the freed pages given back. Printed: rows/s, batches, the longest write-lock hold, the
   file size before and after.
3. The poll path with pruning alongside vs without: --polls poll-like commits (an entry
   with its index row and the feed's state, the same write a poll with one new entry
   makes) through the same store, on a second generated database, timed alone and then
   while a prune of the same size runs beside them; printed as the ratio of the median
   commit latency and of the total wall time (goal <= 1.1x).

    python bench/retention.py                     # 1,000,000 entries
    python bench/retention.py --entries 200000    # quicker

Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from watchdesk.language import fts_tokens
from watchdesk.store import open_db, retention
from watchdesk.store.engine import Store

WORDS = [
    "council",
    "police",
    "budget",
    "school",
    "fentanyl",
    "seized",
    "port",
    "city",
    "mayor",
    "court",
    "county",
    "water",
    "road",
    "election",
    "health",
    "hospital",
    "overdose",
    "market",
    "darknet",
    "arrest",
    "federal",
    "state",
    "report",
    "storm",
]
DAY = 86400.0


def make_database(path: Path, entries: int, days: float, seed: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("VACUUM")  # an empty file takes the mode now
    conn.close()
    db = open_db(path)
    rng = random.Random(seed)
    now = time.time()
    with db.atomic():
        for i in range(100):
            db.execute(
                "INSERT INTO feeds (config_url, url, name, next_check_at, created_at) VALUES (?, ?, ?, ?, ?)",
                [
                    f"http://127.0.0.1/feed/{i}",
                    f"http://127.0.0.1/feed/{i}",
                    f"Feed {i}",
                    now,
                    now - days * DAY,
                ],
            )
    batch = 20_000
    for start in range(0, entries, batch):
        rows, index, hits = [], [], []
        for i in range(start, min(entries, start + batch)):
            title = " ".join(rng.choices(WORDS, k=8))
            text = " ".join(rng.choices(WORDS, k=120))
            seen = now - rng.random() * days * DAY
            rows.append((i + 1, 1 + i % 100, f"k{i}", title, title, text, "summary", seen, seen))
            index.append((i + 1, fts_tokens(title, text)))
            if rng.random() < 0.01:
                hits.append((i + 1, seen))
        with db.atomic():
            db.conn.executemany(
                "INSERT INTO entries (id, feed_id, key, title, summary, text, text_source, published, seen_at, "
                "alerting) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
                rows,
            )
            db.conn.executemany("INSERT INTO entries_fts (rowid, tokens) VALUES (?, ?)", index)
            db.conn.executemany(
                "INSERT INTO hits (entry_id, watchlist, query, terms, snippet, snippet_marks, created_at) "
                "VALUES (?, 'drugs', 'fentanyl', '[]', '', '[]', ?)",
                hits,
            )
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


async def prune(store: Store, cutoffs: retention.Cutoffs) -> retention.Pruned:
    """The daemon's way (Runtime.prune): batches through the writer thread, idle between."""
    return await retention.prune_through(store, cutoffs)


def _commit(db, feed_id: int, key: str, now: float) -> None:  # type: ignore[no-untyped-def]
    """What a poll that stored one entry writes: the entry, its index row, the feed."""
    with db.atomic():
        cursor = db.execute(
            "INSERT INTO entries (feed_id, key, title, summary, text, text_source, seen_at, alerting) "
            "VALUES (?, ?, 'new story', '', 'council meets on the budget', 'summary', ?, 1)",
            [feed_id, key, now],
        )
        db.execute(
            "INSERT INTO entries_fts (rowid, tokens) VALUES (?, ?)",
            [cursor.lastrowid, fts_tokens("new story", "council meets on the budget")],
        )
        db.execute(
            "UPDATE feeds SET last_polled_at = ?, next_check_at = ? WHERE id = ?", [now, now + 900, feed_id]
        )


async def polls(store: Store, count: int, tag: str) -> tuple[list[float], float]:
    latencies = []
    started = time.perf_counter()
    for i in range(count):
        t = time.perf_counter()
        await store.write(_commit, 1 + i % 100, f"{tag}{i}", time.time())
        latencies.append(time.perf_counter() - t)
        await asyncio.sleep(0.001)  # polls arrive spread out, not back to back
    return latencies, time.perf_counter() - started


async def alongside(path: Path, count: int, cutoffs: retention.Cutoffs) -> tuple[list[float], float, float]:
    store = Store.open(path)
    try:
        alone, alone_wall = await polls(store, count, "a")
        pruning = asyncio.create_task(prune(store, cutoffs))
        beside, beside_wall = await polls(store, count, "b")
        await pruning
    finally:
        store.close()
    ratio = statistics.median(beside) / statistics.median(alone)
    return alone, ratio, beside_wall / alone_wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=180)
    parser.add_argument("--keep", type=float, default=90)
    parser.add_argument("--polls", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.db"
        t = time.perf_counter()
        make_database(path, args.entries, args.days, args.seed)
        print(f"generated {args.entries:,} entries in {time.perf_counter() - t:.0f} s")
        cutoffs = retention.Cutoffs(entries=time.time() - args.keep * DAY)
        before = path.stat().st_size

        async def run() -> retention.Pruned:
            store = Store.open(path)
            try:
                return await prune(store, cutoffs)
            finally:
                store.close()

        t = time.perf_counter()
        pruned = asyncio.run(run())
        took = time.perf_counter() - t
        after = path.stat().st_size
        print(
            f"pruned {pruned.entries:,} entries in {took:.1f} s: {pruned.entries / took:,.0f} rows/s, "
            f"{pruned.batches} batches, longest write-lock hold {pruned.longest_batch * 1000:.0f} ms"
        )
        print(
            f"file {before / 2**20:,.0f} MB before, {after / 2**20:,.0f} MB after ({pruned.bytes_freed / 2**20:,.0f} MB given back)"
        )

        path2 = Path(tmp) / "poll.db"
        make_database(path2, args.entries, args.days, args.seed + 1)
        alone, ratio, wall = asyncio.run(alongside(path2, args.polls, cutoffs))
        print(
            f"poll-path commit: median {statistics.median(alone) * 1000:.2f} ms alone; with pruning alongside "
            f"{ratio:.2f}x the median latency, {wall:.2f}x the wall time (goal <= 1.1x)"
        )


if __name__ == "__main__":
    main()
