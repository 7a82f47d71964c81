"""Group commit (Store.write_grouped): writes queued while one is being written share the
next transaction; one that fails is rolled back alone; on SQLite and on PostgreSQL.

The writer is held on a real write (a threading.Event) while the grouped writes queue,
so what forms one group is decided by the test, not by timing."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pg_fixture import drop_database, fresh_database, requires_postgres

from watchdesk.store import feeds as feed_store
from watchdesk.store import sql
from watchdesk.store.engine import Store, open_database

NOW = 1_800_000_000.0


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=requires_postgres)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "watchdesk.db")
        return
    made = fresh_database()
    try:
        yield made
    finally:
        drop_database(made)


def _table(db: Any) -> None:
    with db.atomic():
        db.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER PRIMARY KEY, txn TEXT)")


def _txn(db: Any) -> str:
    """The transaction a statement runs in, on PostgreSQL (SQLite: its COMMITs are
    counted by a trace instead, _commits)."""
    from watchdesk.store.sql import is_postgres

    return str(db.execute("SELECT txid_current()").fetchone()[0]) if is_postgres(db) else ""


def _insert(db: Any, n: int, fail: bool = False) -> int:
    db.execute("INSERT INTO t (n, txn) VALUES (?, ?)", [n, _txn(db)])
    if fail:
        raise ValueError(f"write {n} refused")
    return n * 10


def _rows(store: Store) -> list[tuple[int, str]]:
    async def go() -> list[tuple[int, str]]:
        return await store.read(lambda db: [tuple(r) for r in db.execute("SELECT n, txn FROM t ORDER BY n")])

    return asyncio.run(go())


async def _hold(store: Store) -> tuple[asyncio.Future[Any], threading.Event]:
    """A grouped call that is being written, and waits until the event is set."""
    started, release = threading.Event(), threading.Event()

    def wait(db: Any) -> None:
        started.set()
        release.wait(10)

    held = asyncio.ensure_future(store.groups.call(wait))
    assert await asyncio.to_thread(started.wait, 10)
    return held, release


def _grouped(store: Store, calls: list[Any]) -> list[Any]:
    """These grouped writes (fn(db)) queued behind a held group, so that they are written
    as one group; what each caller got."""

    async def go() -> list[Any]:
        held, release = await _hold(store)
        tasks = [asyncio.ensure_future(store.write_grouped(call)) for call in calls]
        for _ in range(3):
            await asyncio.sleep(0)  # every task has queued its write
        release.set()
        await held
        return await asyncio.gather(*tasks, return_exceptions=True)

    return asyncio.run(go())


def _inserts(calls: list[tuple[int, bool]]) -> list[Any]:
    return [functools.partial(_insert, n=n, fail=fail) for n, fail in calls]


def _commits(store: Store) -> list[str]:
    seen: list[str] = []
    if store.kind == "sqlite":
        store.db.conn.set_trace_callback(lambda sql: seen.append(sql) if sql.strip() == "COMMIT" else None)
    return seen


@pytest.fixture
def store(target: str) -> Iterator[Store]:
    """An open store (either backend) with the table t."""
    opened = Store.open(target)
    try:
        asyncio.run(opened.write(_table))
        yield opened
    finally:
        opened.close()


def test_writes_queued_together_commit_in_one_transaction(store: Store) -> None:
    before = store.groups.groups
    commits = _commits(store)
    got = _grouped(store, _inserts([(n, False) for n in range(50)]))
    assert got == [n * 10 for n in range(50)]  # each caller gets its own result
    assert store.groups.groups - before == 2  # the held one, then the fifty
    rows = _rows(store)
    assert [n for n, _txn in rows] == list(range(50))
    if store.kind == "sqlite":
        assert commits.count("COMMIT") == 2  # the held group's and the fifty's
    else:
        assert len({txn for _n, txn in rows}) == 1


def test_one_refused_write_fails_alone_and_the_others_commit(store: Store) -> None:
    calls = [(n, n == 4) for n in range(10)]
    got = _grouped(store, _inserts(calls))
    assert isinstance(got[4], ValueError) and "write 4 refused" in str(got[4])
    assert [g for i, g in enumerate(got) if i != 4] == [n * 10 for n in range(10) if n != 4]
    # The group was rolled back and each ran again alone: nothing twice, nothing of 4.
    assert [n for n, _txn in _rows(store)] == [n for n in range(10) if n != 4]


def test_a_write_the_database_refuses_fails_alone(store: Store) -> None:
    """The database itself refuses one write of the group (a duplicate key; on PostgreSQL
    the error arrives only when the pipeline syncs): that caller gets the error, the
    others commit, once each."""
    asyncio.run(store.write(lambda db: _insert(db, 100)))
    before = store.groups.groups
    got = _grouped(store, _inserts([(n, False) for n in (1, 2, 100, 3)]))
    assert got[0] == 10 and got[1] == 20 and got[3] == 30
    assert isinstance(got[2], Exception) and ("t.n" in str(got[2]) or "t_pkey" in str(got[2]))
    assert [n for n, _txn in _rows(store)] == [1, 2, 3, 100]
    assert store.groups.groups - before == 2  # the held group, then the four (rolled back, then alone)


def test_a_count_read_inside_a_group_is_the_true_count(store: Store) -> None:
    """A grouped write that reads how many rows its statement changed gets the true count,
    also while its group's statements are pipelined (PostgreSQL sends them without
    waiting, and the count arrives with the answer)."""
    asyncio.run(store.write(lambda db: [_insert(db, n) for n in (1, 2)]))

    def changed(db: Any, n: int) -> tuple[int, bool]:
        pipelining = sql.pipelining(db)
        return db.execute("UPDATE t SET txn = 'x' WHERE n = ?", [n]).rowcount, pipelining

    got = _grouped(store, [functools.partial(changed, n=n) for n in (1, 5, 2)])
    assert [count for count, _p in got] == [1, 0, 1]
    assert all(p == (store.kind == "postgresql") for _c, p in got)  # a group pipelines on PostgreSQL


def test_an_idle_store_writes_a_grouped_call_at_once(store: Store) -> None:
    async def one_by_one() -> list[int]:
        return [await store.write_grouped(_insert, n) for n in range(5)]

    before = store.groups.groups
    assert asyncio.run(one_by_one()) == [0, 10, 20, 30, 40]
    assert store.groups.groups - before == 5  # nothing waited for company


def test_a_closed_store_refuses_grouped_writes(target: str) -> None:
    store = Store.open(target)
    asyncio.run(store.write(_table))
    store.close()
    with pytest.raises(RuntimeError):
        asyncio.run(asyncio.wait_for(store.write_grouped(_insert, 1), 10))


def test_grouped_feed_saves_write_what_each_said(target: str) -> None:
    """Feed saves of one group (on PostgreSQL one UPDATE per set of columns, the rows as
    arrays): each feed gets exactly its own values, NULLs, whole and fractional numbers
    included, and a feed saved twice in the group ends with its second save."""
    db = open_database(target)
    try:
        feed_store.sync_feeds(db, [(f"https://h{i}.example/feed", f"feed {i}") for i in range(5)], NOW)
        ids = [row.id for row in feed_store.all_feeds(db)]
    finally:
        db.close()
    base = {
        "status": "ok",
        "consecutive_errors": 0,
        "last_error": None,
        "leased_by": None,
        "lease_until": None,
    }
    saves: list[tuple[int, dict[str, Any]]] = [
        (ids[0], {**base, "next_check_at": NOW + 900, "last_http_status": 304, "polled_by": "a"}),
        (ids[1], {**base, "next_check_at": NOW + 901.25, "last_http_status": 304, "polled_by": "a"}),
        (
            ids[2],
            {
                **base,
                "status": "failing",
                "consecutive_errors": 3,
                "last_error": "timeout",
                "failing_since": NOW,
            },
        ),
        (ids[3], {**base, "next_check_at": 1_900_000_000, "last_http_status": None, "polled_by": None}),
        (ids[0], {**base, "next_check_at": NOW + 1800, "last_http_status": 200, "polled_by": "a"}),  # again
        (ids[4], {"etag": 'W/"x\'y"', "body_hash": "ab" * 32, "overflows": 2}),
    ]

    def save(fid: int, changes: dict[str, Any]) -> Any:
        return lambda d: feed_store.update_feed(d, fid, dict(changes), holder="a")

    store = Store.open(target, node="a")
    try:
        got = _grouped(store, [save(fid, changes) for fid, changes in saves])
        assert got == [None] * len(saves)
        rows = {r.id: r for r in feed_store.all_feeds(store.db)}
    finally:
        store.close()
    final: dict[int, dict[str, Any]] = {}
    for fid, changes in saves:
        final[fid] = changes  # the last save of a feed is what it says
    for fid, changes in final.items():
        for column, value in changes.items():
            assert getattr(rows[fid], column) == value, (fid, column)
    assert rows[ids[4]].status == "new" and rows[ids[4]].next_check_at is not None  # untouched columns


def test_a_savepoint_rolled_back_in_a_group_keeps_the_saves_before_it(target: str) -> None:
    """A grouped call that rolls back a savepoint of its own (and carries on) undoes its
    own work only: a feed save queued before it in the group (on PostgreSQL batched,
    not yet sent) is still written."""
    db = open_database(target)
    try:
        feed_store.sync_feeds(db, [("https://h.example/feed", "feed")], NOW)
        [fid] = [row.id for row in feed_store.all_feeds(db)]
    finally:
        db.close()

    def save(d: Any) -> None:
        feed_store.update_feed(d, fid, {"last_http_status": 304, "leased_by": None}, holder="a")

    def careful(d: Any) -> str:
        try:
            with d.atomic():
                d.execute("UPDATE feeds SET last_error = 'mine' WHERE id = ?", [fid])
                raise ValueError("changed my mind")
        except ValueError:
            return "rolled back"
        return "kept"

    store = Store.open(target, node="a")
    try:
        asyncio.run(store.write(_table))
        assert _grouped(store, [save, careful]) == [None, "rolled back"]
        [row] = feed_store.all_feeds(store.db)
    finally:
        store.close()
    assert row.last_http_status == 304 and row.last_error is None


@requires_postgres
def test_a_lost_lease_in_a_group_refuses_only_that_feed() -> None:
    """Two daemons: a's lease on one feed ran out and b took it. a's polls of three feeds
    save in one group: the taken feed's save is refused (LeaseLost), the others commit."""
    url = fresh_database()
    try:
        db = open_database(url)
        try:
            feed_store.sync_feeds(db, [(f"https://h{i}.example/feed", f"feed {i}") for i in range(3)], NOW)
        finally:
            db.close()
        a = Store.open(url, node="a", lease=60)
        b = Store.open(url, node="b", lease=60)
        try:
            ids = sorted(row.id for row in asyncio.run(a.claim_feeds(NOW, 10)))
            assert len(ids) == 3
            taken = asyncio.run(b.claim_feeds(NOW + 120, 10))  # a's leases ran out
            assert len(taken) == 3
            # b finished two of them; it still holds the middle one.
            for fid in (ids[0], ids[2]):
                asyncio.run(
                    b.write(
                        lambda d, fid=fid: feed_store.update_feed(
                            d, fid, {"leased_by": None, "lease_until": None}, holder="b"
                        )
                    )
                )

            def save(d: Any, fid: int) -> int:
                feed_store.update_feed(d, fid, {"last_http_status": 304, "leased_by": None}, holder="a")
                return fid

            got = _grouped(a, [functools.partial(save, fid=fid) for fid in ids])
            assert got[0] == ids[0] and got[2] == ids[2]
            assert isinstance(got[1], feed_store.LeaseLost)
            rows = {r.id: r for r in feed_store.all_feeds(a.db)}
            assert rows[ids[0]].last_http_status == 304 and rows[ids[2]].last_http_status == 304
            assert rows[ids[1]].last_http_status is None and rows[ids[1]].leased_by == "b"
        finally:
            a.close()
            b.close()
    finally:
        drop_database(url)
