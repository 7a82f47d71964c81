"""The Slack channel: a Block Kit message posted to an incoming webhook.

An alert is a header (the headline), a section (the snippet with matched terms in bold,
then a link to the article), and a context line (outlet, time, watchlist, terms), with a
plain `text` fallback for notifications. A digest is a header, a count, and one section
per watchlist listing its stories; past Slack's 50 blocks the last block says how many
stories were left out.

Every feed string is escaped (&, <, > become entities), so `<!channel>`, `<@U…>` and
`<url|label>` in a headline arrive as text; the only links are the ones we build from
http(s) URLs; `link_names` is never set. The webhook URL is a secret: it is resolved when
the channel is built and redacted from every message.

Slack answers 200 `ok` on success; any other answer is a failure (see notify/http.py for
the status table). A revoked webhook answers 404 `no_service`, 403 or 410: permanent.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from ..config import ChannelConfig, resolve
from ..config.secrets import scrubbed
from ..models import Alert, DeliveryResult, Digest
from . import http, render
from .sanitize import slack_escape, slack_text

# Block Kit limits (https://api.slack.com/reference/block-kit).
MAX_BLOCKS = 50
HEADER_CHARS = 150
SECTION_CHARS = 3000
CONTEXT_ELEMENT_CHARS = 300  # Slack allows more; a context line is meant to be short
FALLBACK_CHARS = 3000
TITLE_CHARS = 250  # a headline inside a section or digest line
MAX_LINK_CHARS = 2000  # an escaped link target; longer ones are left out

Block = dict[str, Any]


def mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": False}


def link(url: str | None, label: str) -> str | None:
    """A mrkdwn link to the alert's URL when render.safe_link accepts it (and it is not
    absurdly long once escaped); label already escaped."""
    url = render.safe_link(url)
    if url is None:
        return None
    target = slack_escape(url).replace("|", "%7C")
    return f"<{target}|{label}>" if len(target) <= MAX_LINK_CHARS else None


def headline(alert: Alert) -> str:
    """The escaped title, linked when the alert has an http(s) link."""
    title = slack_text(render.title_of(alert), TITLE_CHARS)
    return link(alert.link, title) or title


def bold(text: str) -> str:
    """`*text*` with any surrounding spaces kept outside the markers (Slack needs that)."""
    core = text.strip()
    if not core:
        return text
    start = text.index(core)
    return f"{text[:start]}*{core}*{text[start + len(core) :]}"


def marked_snippet(alert: Alert) -> str:
    """The escaped snippet with matched terms in bold."""
    return "".join(
        bold(slack_escape(text)) if marked else slack_escape(text)
        for text, marked in render.snippet_segments(alert)
    ).strip()


def health_payload(alert: Alert) -> dict[str, Any]:
    """A short message: what happened to which feed (or channel), and where to look."""
    title = slack_text(render.title_of(alert), HEADER_CHARS)
    read = link(alert.link, "The feed") or ""
    body = slack_text(alert.snippet, SECTION_CHARS - len(read) - 1)
    blocks: list[Block] = [
        {"type": "header", "text": plain(title)},
        {"type": "section", "text": mrkdwn("\n".join(part for part in (body, read) if part))},
        {"type": "context", "elements": [mrkdwn("watchdesk feed health")]},
    ]
    fallback = slack_text(render.heading(alert), FALLBACK_CHARS)
    return {"text": fallback, "blocks": blocks, "unfurl_links": False, "unfurl_media": False}


def alert_payload(alert: Alert) -> dict[str, Any]:
    if alert.kind == "health":
        return health_payload(alert)
    title = slack_text(render.title_of(alert), HEADER_CHARS)
    blocks: list[Block] = [{"type": "header", "text": plain(title)}]
    body = marked_snippet(alert)
    read = link(alert.link, "Read the article") or ""
    if len(body) + len(read) + 1 > SECTION_CHARS:
        body = slack_text(alert.snippet, SECTION_CHARS - len(read) - 1)
    text = "\n".join(part for part in (body, read) if part)
    if text:
        blocks.append({"type": "section", "text": mrkdwn(text)})
    context = [
        f"*{slack_text(render.outlet_of(alert), 100)}*",
        render.published_text(alert.published),
        f"watchlist *{slack_text(alert.watchlist, 100)}*",
    ]
    if alert.terms:
        context.append("matched: " + slack_text(", ".join(alert.terms), CONTEXT_ELEMENT_CHARS - 9))
    if alert.test:
        context.append("_test alert_")
    blocks.append({"type": "context", "elements": [mrkdwn(c) for c in context]})
    fallback = slack_text(render.heading(alert), FALLBACK_CHARS)
    return {"text": fallback, "blocks": blocks, "unfurl_links": False, "unfurl_media": False}


def story_line(story: render.Story) -> str:
    lead = story.lead
    line = f"• {headline(lead)} — {slack_text(render.outlet_of(lead), 100)}, "
    line += render.published_text(lead.published)
    if len(story.alerts) > 1:
        line += f" ({len(story.alerts)} hits)"
    if story.terms:
        line += f"\n    matched: {slack_text(', '.join(story.terms), 200)}"
    also = render.also_in_text(story.also_in)
    if also:
        line += f"\n    {slack_text(also, 200)}"
    return line


def watchlist_sections(group: render.WatchlistGroup) -> list[tuple[Block, int, int]]:
    """Sections of at most SECTION_CHARS listing the group's stories, each with how many
    stories and alerts it shows."""
    title = f"*{slack_text(group.watchlist, 100)}* — {render.plural(group.count, 'alert')}"
    sections: list[tuple[Block, int, int]] = []
    lines, stories, alerts = [title], 0, 0
    for story in group.stories:
        line = story_line(story)
        if stories and len("\n".join([*lines, line])) > SECTION_CHARS:
            sections.append(({"type": "section", "text": mrkdwn("\n".join(lines))}, stories, alerts))
            lines, stories, alerts = [title + " (continued)"], 0, 0
        lines.append(line)
        stories += 1
        alerts += len(story.alerts)
    sections.append(({"type": "section", "text": mrkdwn("\n".join(lines))}, stories, alerts))
    return sections


def digest_payload(digest: Digest) -> dict[str, Any]:
    count = render.digest_count(digest)
    summary = f"*{count}*"
    note = render.capped_note(digest)
    if note:
        summary += f"\n{note}"
    head: list[Block] = [
        {"type": "header", "text": plain(slack_text(f"watchdesk: {digest.title}", HEADER_CHARS))},
        {"type": "section", "text": mrkdwn(summary)},
    ]
    body = [s for g in render.group_alerts(digest.alerts) for s in watchlist_sections(g)]
    if len(head) + len(body) > MAX_BLOCKS:
        keep = MAX_BLOCKS - len(head) - 1
        left_stories = sum(s for _, s, _ in body[keep:])
        left_alerts = sum(a for _, _, a in body[keep:])
        more = f"…and {render.plural(left_stories, 'more story', 'more stories')} "
        more += f"({render.plural(left_alerts, 'alert')}) not shown here: see `watchdesk hits`."
        body = [*body[:keep], ({"type": "context", "elements": [mrkdwn(more)]}, 0, 0)]
    fallback = slack_text(
        f"[watchdesk] {digest.title}: {count}" + (f". {note}" if note else ""), FALLBACK_CHARS
    )
    return {
        "text": fallback,
        "blocks": head + [block for block, _, _ in body],
        "unfurl_links": False,
        "unfurl_media": False,
    }


class SlackChannel:
    def __init__(self, name: str, webhook_url: str, *, timeout: float = http.DEFAULT_TIMEOUT):
        self.name = name
        self._scrub = http.url_redactor(webhook_url)  # every message we return passes through it
        self._timeout = timeout
        self._endpoint = http.Endpoint(webhook_url)

    @classmethod
    def from_config(cls, config: ChannelConfig) -> SlackChannel:
        from . import ChannelNotAvailable

        url = resolve(config.options["webhook"])
        if render.safe_link(url) is None:
            raise ChannelNotAvailable(f"channel {config.name!r}: the webhook secret is not an http(s) URL")
        return cls(config.name, url)

    async def send(self, alert: Alert, *, key: str) -> DeliveryResult:
        return await self._post(alert_payload(alert))

    async def send_digest(self, digest: Digest, *, key: str) -> DeliveryResult:
        return await self._post(digest_payload(digest))

    async def _post(self, payload: dict[str, Any]) -> DeliveryResult:
        body = json.dumps(payload, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json; charset=utf-8"}
        try:
            answer = await self._endpoint.post(body, headers, deadline=self._timeout)
        except (httpx.HTTPError, TimeoutError) as e:
            return scrubbed(http.failure_result(e, "Slack", scrub=self._scrub), self._scrub)
        return scrubbed(self._result(answer), self._scrub)

    def _result(self, answer: http.Answer) -> DeliveryResult:
        said = answer.said(self._scrub)
        if answer.status == 200:
            if answer.body.strip() == b"ok":
                return DeliveryResult(True)
            return DeliveryResult(False, f"Slack answered 200 without 'ok': {said or '(empty)'}")
        if answer.status in (403, 404, 410):
            return DeliveryResult(
                False,
                f"Slack answered HTTP {answer.status} {said}: the webhook is revoked, "
                "disabled or wrong (make a new one and update the secret)",
                permanent=True,
            )
        return http.status_result(answer, "Slack", self._scrub)

    async def aclose(self) -> None:
        await self._endpoint.aclose()
