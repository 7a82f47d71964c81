"""`hits` and `stories`: what was stored and what became of it, copies under their story."""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

import click

from ..notify.sanitize import one_line
from ..store import hits as hit_store
from ..store import stories as story_store
from .common import iso, json_line, load, read_db, since_option, when, zone


@click.command()
@click.option("--watchlist", "-w", help="Only this watchlist.")
@click.option("--feed", "feed_name", metavar="NAME", help="Only hits from this feed (its name, any case).")
@click.option(
    "--alerted/--not-alerted",
    default=None,
    help="Only hits queued to at least one channel, or only hits queued to none.",
)
@click.option("--since", metavar="DURATION", help="Only hits stored in this past window, e.g. 7d, 12h.")
@click.option("--limit", default=100, show_default=True, help="At most this many.")
@click.option(
    "--all-copies", is_flag=True, help="Each copy of a story on its own (default: under its story)."
)
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per hit (times ISO 8601, with offset)."
)
@click.pass_context
def hits(
    ctx: click.Context,
    watchlist: str | None,
    feed_name: str | None,
    alerted: bool | None,
    since: str | None,
    limit: int,
    all_copies: bool,
    as_json: bool,
) -> None:
    """Stored hits, newest first: where each was alerted (and in what state), or why not.

    Times are in [watchdesk] timezone."""
    config = load(ctx, check_secrets=False)
    tz = zone(config)
    rows = hit_store.list_hits(
        read_db(config),
        watchlist=watchlist,
        since=since_option(since),
        limit=limit,
        feed=feed_name,
        alerted=alerted,
    )
    if not all_copies:  # another outlet's copy of a story shows under the story, not again
        rows = hit_store.group_copies(rows)
    for row in rows:
        if as_json:
            click.echo(json_line(_hit_json(row, tz)))
            continue
        click.echo(
            f"hit {row['id']}  {when(row['created_at'], tz)}  {one_line(row['watchlist'])}  {one_line(row['title'])}"
        )
        published = f"published {when(row['published'], tz)}" if row["published"] is not None else "undated"
        click.echo(
            f"    {one_line(row['feed'])} | {published} | {one_line(row['link'] or '')} | "
            f"matched {one_line(', '.join(row['terms']))}"
        )
        click.echo(f"    {_hit_fate(row, tz)}")
        if row.get("copies"):
            copies = ", ".join(f"{one_line(c['feed'])} (hit {c['id']})" for c in row["copies"])
            click.echo(f"    also in: {copies}")
        click.echo(f"    {one_line(row['snippet'])}")
    if not rows and not as_json:
        click.echo("no hits", err=True)


def _digest_json(delivery: dict[str, Any], tz: tzinfo) -> dict[str, Any] | None:
    if delivery["digest_at"] is None:
        return None
    return {"title": delivery["digest_title"], "window_end": iso(delivery["digest_at"], tz)}


def _hit_json(row: dict[str, Any], tz: tzinfo) -> dict[str, Any]:
    """One hit for `hits --json`: `alerted` is true when it queued at least one delivery,
    `alerted_to` lists them; times are ISO 8601 with their offset, in `tz`."""
    alerted_to = [
        {
            "channel": d["channel"],
            "status": d["status"],
            "outbox_id": d["outbox_id"],
            "sent_at": iso(d["sent_at"], tz),
            "digest": _digest_json(d, tz),
        }
        for d in row["deliveries"]
    ]
    digests = [d["digest"] for d in alerted_to if d["digest"] is not None]
    return {
        "id": row["id"],
        "watchlist": row["watchlist"],
        "feed": row["feed"],
        "title": row["title"],
        "link": row["link"],
        "story": row["story"],
        "published": iso(row["published"], tz),
        "created_at": iso(row["created_at"], tz),
        "alerted": bool(alerted_to),
        "alerted_to": alerted_to,
        "duplicate_of": row["duplicate_of"],
        "duplicate_of_feed": row["duplicate_of_feed"],
        "outside_backfill": row["outside_backfill"],
        "digest": digests[0] if digests else None,
        "query": row["query"],
        "terms": row["terms"],
        "snippet": row["snippet"],
        "text_source": row["text_source"],
        **({"copies": [_hit_json(c, tz) for c in row["copies"]]} if "copies" in row else {}),
    }


def _hit_fate(row: dict[str, Any], tz: tzinfo) -> str:
    """`alerted: console (sent ...), slack (pending, waiting for ...)`, or why not."""
    if row["deliveries"]:
        parts = []
        for d in row["deliveries"]:
            state = d["status"]
            if d["sent_at"] is not None:
                state += f" {when(d['sent_at'], tz)}"
            if d["digest_at"] is not None:
                digest = one_line(d["digest_title"] or f"the digest of {when(d['digest_at'], tz)}")
                state += {"pending": ", waiting for ", "sent": " in "}.get(d["status"], ", in ") + digest
            parts.append(f"{one_line(d['channel'])} ({state})")
        fate = "alerted: " + ", ".join(parts)
        return fate + ("; stored outside the backfill window" if row["outside_backfill"] else "")
    reasons = []
    if row["duplicate_of"] is not None:
        reasons.append(f"duplicate of hit {row['duplicate_of']} ({one_line(row['duplicate_of_feed'])})")
    if row["outside_backfill"]:
        reasons.append("stored outside the backfill window")
    return "not alerted" + (": " + "; ".join(reasons) if reasons else "")


@click.command()
@click.option(
    "--since", default="7d", show_default=True, metavar="DURATION", help="Stories seen in this past window."
)
@click.option("--watchlist", "-w", help="Only stories this watchlist hit.")
@click.option("--limit", default=100, show_default=True, help="At most this many.")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per story (times ISO 8601, with offset)."
)
@click.pass_context
def stories(ctx: click.Context, since: str, watchlist: str | None, limit: int, as_json: bool) -> None:
    """Stories (one story across its outlets' copies), most recently seen first. Times are
    in [watchdesk] timezone."""
    config = load(ctx, check_secrets=False)
    tz = zone(config)
    rows = story_store.list_stories(
        read_db(config), since=since_option(since), watchlist=watchlist, limit=limit
    )
    for row in rows:
        if as_json:
            click.echo(
                json_line(
                    {**row, "first_seen": iso(row["first_seen"], tz), "last_seen": iso(row["last_seen"], tz)}
                )
            )
            continue
        outlets = row["outlets"]
        click.echo(f"story {row['id']}  {one_line(row['title'])}")
        click.echo(
            f"    {len(outlets)} outlet{'' if len(outlets) == 1 else 's'}, {row['copies']} "
            f"cop{'y' if row['copies'] == 1 else 'ies'}; first seen {when(row['first_seen'], tz)}, "
            f"last {when(row['last_seen'], tz)}"
        )
        click.echo(f"    {one_line(', '.join(outlets))}")
        if row["watchlists"]:
            click.echo(f"    hit by: {one_line(', '.join(row['watchlists']))}")
    if not rows and not as_json:
        click.echo("no stories", err=True)


ARCHIVE_COMMANDS = (hits, stories)
