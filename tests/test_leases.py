"""Several daemons on one PostgreSQL: feed leases, channel leases, schema upgrades at
once, and the search index's translation. Real PostgreSQL (skipped without one)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from pg_fixture import drop_database, fresh_database, requires_postgres

from watchdesk.errors import StoreError
from watchdesk.store import feeds as feed_store
from watchdesk.store import outbox as outbox_store
from watchdesk.store import pg, pgschema
from watchdesk.store.engine import Store, open_database
from watchdesk.store.search import UNINDEXED, pg_tokens, tsquery

NOW = 1_800_000_000.0


@pytest.fixture
def url() -> Iterator[str]:
    made = fresh_database()
    try:
        yield made
    finally:
        drop_database(made)


def _feeds(url: str, n: int) -> None:
    db = open_database(url)
    try:
        feed_store.sync_feeds(db, [(f"https://h{i}.example/feed", f"feed {i}") for i in range(n)], NOW)
    finally:
        db.close()


@requires_postgres
def test_two_daemons_never_claim_one_feed(url: str) -> None:
    _feeds(url, 200)
    a = Store.open(url, node="a", lease=60)
    b = Store.open(url, node="b", lease=60)
    try:

        async def claim(store: Store) -> list[int]:
            return [row.id for row in await store.claim_feeds(NOW, 120)]

        async def both() -> tuple[list[int], list[int]]:
            return await asyncio.gather(claim(a), claim(b))

        got_a, got_b = asyncio.run(both())
        assert not set(got_a) & set(got_b)
        assert len(got_a) + len(got_b) == 200  # 120 and the 80 left, in either order
        # Leased: nothing more is due for anyone, not even the holder's next look.
        assert asyncio.run(a.claim_feeds(NOW, 100)) == []
        assert asyncio.run(a.read(feed_store.next_due_at, now=NOW)) is None
        held = {r.leased_by for r in feed_store.all_feeds(a.db)}
        assert held == {"a", "b"}
    finally:
        a.close()
        b.close()


@requires_postgres
def test_a_dead_daemons_lease_runs_out_and_is_taken_over(url: str) -> None:
    _feeds(url, 3)
    a = Store.open(url, node="a", lease=30)
    b = Store.open(url, node="b", lease=30)
    try:
        assert len(asyncio.run(a.claim_feeds(NOW, 10))) == 3
        assert asyncio.run(b.claim_feeds(NOW + 29, 10)) == []  # a's lease still runs
        taken = asyncio.run(b.claim_feeds(NOW + 31, 10))  # a died: its leases ran out
        assert len(taken) == 3 and {r.leased_by for r in taken} == {"b"}
    finally:
        a.close()
        b.close()


@requires_postgres
def test_renewal_keeps_a_long_poll_its_own(url: str) -> None:
    _feeds(url, 2)
    a = Store.open(url, node="a", lease=30)
    b = Store.open(url, node="b", lease=30)
    try:
        rows = asyncio.run(a.claim_feeds(NOW, 10))
        asyncio.run(a.renew_feeds([rows[0].id], NOW + 20))  # still polling the first
        taken = asyncio.run(b.claim_feeds(NOW + 31, 10))
        assert [r.id for r in taken] == [rows[1].id]
    finally:
        a.close()
        b.close()


@requires_postgres
def test_the_polls_own_update_releases_the_lease(url: str) -> None:
    _feeds(url, 1)
    a = Store.open(url, node="a", lease=30)
    try:
        (row,) = asyncio.run(a.claim_feeds(NOW, 10))

        def polled(db: object) -> None:
            with db.atomic():  # type: ignore[attr-defined]
                feed_store.update_feed(
                    db,  # type: ignore[arg-type]
                    row.id,
                    {"next_check_at": NOW + 900, "leased_by": None, "lease_until": None, "polled_by": "a"},
                )

        asyncio.run(a.write(polled))
        (after,) = feed_store.all_feeds(a.db)
        assert (after.leased_by, after.lease_until, after.polled_by) == (None, None, "a")
        assert asyncio.run(a.claim_feeds(NOW + 899, 10)) == []
        assert len(asyncio.run(a.claim_feeds(NOW + 900, 10))) == 1
    finally:
        a.close()


@requires_postgres
def test_a_clean_stop_gives_every_lease_back(url: str) -> None:
    _feeds(url, 4)
    a = Store.open(url, node="a", lease=600)
    b = Store.open(url, node="b", lease=600)
    try:
        asyncio.run(a.claim_feeds(NOW, 10))
        assert asyncio.run(a.claim_channels(["desk"], NOW)) == {"desk"}
        asyncio.run(a.release())
        assert len(asyncio.run(b.claim_feeds(NOW + 1, 10))) == 4
        assert asyncio.run(b.claim_channels(["desk"], NOW + 1)) == {"desk"}
    finally:
        a.close()
        b.close()


@requires_postgres
def test_one_daemon_per_channel_until_its_lease_runs_out(url: str) -> None:
    a = Store.open(url, node="a", lease=30)
    b = Store.open(url, node="b", lease=30)
    try:
        assert asyncio.run(a.claim_channels(["desk", "slack"], NOW)) == {"desk", "slack"}
        assert asyncio.run(b.claim_channels(["desk", "slack", "email"], NOW + 10)) == {"email"}
        assert asyncio.run(a.claim_channels(["desk"], NOW + 20)) == {"desk"}  # renewed
        assert asyncio.run(b.claim_channels(["desk", "slack"], NOW + 40)) == {"slack"}  # desk renewed at 20
        assert outbox_store.channel_holders(a.db, NOW + 39) == {"desk": "a", "slack": "b", "email": "b"}
    finally:
        a.close()
        b.close()


@requires_postgres
def test_daemons_starting_together_upgrade_the_schema_once(url: str) -> None:
    errors: list[BaseException] = []
    stores: list[Store] = []

    def start(node: str) -> None:
        try:
            stores.append(Store.open(url, node=node))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=start, args=(f"n{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        applied = stores[0].db.execute(f"SELECT name FROM {pgschema.MIGRATIONS_TABLE}").fetchall()
        assert [r[0] for r in applied] == [name for name, _sql in pgschema.MIGRATIONS]
    finally:
        for store in stores:
            store.close()


@requires_postgres
def test_a_database_of_something_else_is_refused(url: str) -> None:
    db = pg.connect(url)
    db.execute("CREATE TABLE invoices (id int)")
    db.close()
    with pytest.raises(StoreError, match="has tables but not watchdesk's"):
        Store.open(url, node="a")


@requires_postgres
def test_reading_commands_never_create_or_upgrade(url: str) -> None:
    with pytest.raises(StoreError, match="no watchdesk tables yet"):
        open_database(url, read_only=True)
    open_database(url).close()  # a writing command creates them
    open_database(url, read_only=True).close()


@requires_postgres  # psycopg: installed with the tests, as the server is in CI
def test_an_unreachable_server_is_one_clear_error() -> None:
    with pytest.raises(StoreError, match=r"cannot be reached.*check that PostgreSQL runs there"):
        pg.connect("postgresql://nobody@127.0.0.1:1/watchdesk")


def test_a_password_is_never_shown() -> None:
    assert pg.shown("postgresql://wd:s3cret@db.example:5432/w") == "postgresql://wd:***@db.example:5432/w"


# ---- the search index on PostgreSQL ---------------------------------------------------


def test_fts_expressions_become_tsqueries() -> None:
    assert tsquery('"fentanyl"') == f"(('fentanyl')) | '{UNINDEXED}'"
    assert tsquery('("dark web" AND "opioid" *)') == f"((('dark' & 'web') & ('opioid':*))) | '{UNINDEXED}'"
    assert tsquery('("j code" OR "jcode")') == f"((('j' & 'code') | ('jcode'))) | '{UNINDEXED}'"
    assert tsquery('"o\'brien"') == f"(('o\\'brien')) | '{UNINDEXED}'"
    assert tsquery('""') is None  # nothing to narrow on: every entry is a candidate


@requires_postgres
def test_an_article_too_big_for_a_tsvector_is_still_found(url: str) -> None:
    assert pg_tokens("a " + "x" * 3000) == [UNINDEXED]
    db = open_database(url)
    try:
        feed_store.sync_feeds(db, [("https://h.example/feed", "H")], NOW)
        db.execute(
            "INSERT INTO entries (feed_id, key, title, summary, text, text_source, seen_at, alerting) "
            "VALUES (1, 'k', 't', '', '', 'feed', 0, 1)"
        )
        db.execute(
            "INSERT INTO entries_search (entry_id, tokens) VALUES (1, array_to_tsvector(?::text[]))",
            [pg_tokens("fentanyl " + "y" * 5000)],
        )
        query = tsquery('"fentanyl"')
        found = db.execute(
            "SELECT entry_id FROM entries_search WHERE tokens @@ ?::tsquery", [query]
        ).fetchall()
        assert found == [(1,)]
    finally:
        db.close()


@requires_postgres
def test_a_poll_that_outlived_its_lease_writes_nothing(url: str) -> None:
    _feeds(url, 1)
    a = Store.open(url, node="a", lease=30)
    b = Store.open(url, node="b", lease=30)
    try:
        (row,) = asyncio.run(a.claim_feeds(NOW, 10))
        (taken,) = asyncio.run(b.claim_feeds(NOW + 31, 10))  # a stalled past its lease
        assert asyncio.run(a.renew_feeds([row.id], NOW + 32)) == 1  # a's renewal finds it lost
        assert asyncio.run(b.renew_feeds([row.id], NOW + 32)) == 0
        late = {"next_check_at": NOW + 900, "etag": "a's", "leased_by": None, "lease_until": None}
        with pytest.raises(feed_store.LeaseLost):
            feed_store.update_feed(a.db, row.id, late, holder="a")
        (after,) = feed_store.all_feeds(a.db)
        assert (after.leased_by, after.etag) == ("b", None)  # b's lease and schedule stand
        feed_store.update_feed(b.db, taken.id, {**late, "etag": "b's"}, holder="b")
        assert feed_store.all_feeds(a.db)[0].etag == "b's"
    finally:
        a.close()
        b.close()


@requires_postgres
def test_a_channel_stays_one_daemons_through_a_send_longer_than_its_lease(url: str) -> None:
    """The lease of a channel is renewed while its delivery round runs: a send that takes
    longer than the lease (a slow webhook) is never taken over and sent twice."""
    import time

    from watchdesk.models import Alert, DeliveryResult
    from watchdesk.outbox import Drainer

    a = Store.open(url, node="a", lease=2)
    b = Store.open(url, node="b", lease=2)
    alert = Alert(watchlist="w", title="t", link=None, outlet="o", published=None, terms=(), snippet="s")
    with a.db.atomic():
        outbox_store.enqueue(a.db, "k1", "slow", alert, hit_id=None, now=time.time() - 1)

    class Slow:
        name = "slow"

        def __init__(self) -> None:
            self.started = asyncio.Event()
            self.release = asyncio.Event()
            self.sent = 0

        async def send(self, alert: Alert, *, key: str) -> DeliveryResult:
            self.started.set()
            await self.release.wait()
            self.sent += 1
            return DeliveryResult(True)

        async def aclose(self) -> None:
            return None

    async def go() -> list[set[str]]:
        slow = Slow()
        drain = asyncio.ensure_future(Drainer(a, {"slow": slow}, time.time, lambda: 0.0).drain())
        await slow.started.wait()
        tries = []
        end = time.monotonic() + 3.5  # well past the 2 s lease
        while time.monotonic() < end:
            tries.append(await b.claim_channels(["slow"], time.time()))
            await asyncio.sleep(0.1)
        slow.release.set()
        summary = await drain
        assert summary.sent == 1 and slow.sent == 1
        return tries

    try:
        assert all(t == set() for t in asyncio.run(go()))
    finally:
        a.close()
        b.close()
