"""Alerts and digests as email messages: headers and a text/plain + text/html body.

Headers (feed text only ever reaches Subject, after sanitize.header_text):
- Message-ID  `<alert.{sha256(key)[:32]}@{domain}>` (`digest.` for digests), from the
  outbox idempotency key: a retried delivery carries the same Message-ID, so a
  duplicate (a crash between "sent" and "marked sent") is recognisable as one.
- In-Reply-To and References `<story.{sha256(story_key)[:32]}@{domain}>`: every alert on
  the same story names the same (never sent) parent, so mail clients thread them.
- List-Id `watchdesk {slug} <{slug}.watchdesk.{domain}>`, one per watchlist, for filters.
- From and To come from the channel's config only; there is no Reply-To.
`domain` is the domain of the configured From address.

The HTML part is built only from escaped text: html.escape on every feed string, and
links only from http(s) URLs (render.safe_link).
"""

from __future__ import annotations

import hashlib
import random
import re
import sys
from collections.abc import Sequence
from datetime import datetime
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import Compat32
from email.utils import format_datetime, formataddr, getaddresses, parseaddr
from html import escape

from ..models import Alert, Digest
from . import render
from .sanitize import header_text, one_line

FALLBACK_DOMAIN = "watchdesk.invalid"
_DOMAIN = re.compile(r"^[a-z0-9-]+(?:\.[a-z0-9-]+)*$")
_STYLE = "font-family:sans-serif;line-height:1.4"
_MUTED = "color:#555;font-size:13px"
# Messages are built with the stdlib's compat32 MIME classes: EmailMessage with the
# default policy parses every header through the header registry (~1.2 ms a message,
# which bounded delivery throughput); these take ~0.4 ms, serialisation included, and
# ~0.16 ms with POLICY and boundary() below.


class FastCompat32(Compat32):
    """compat32 with a short cut when serialising a header: a value of printable ASCII
    that fits on one line comes out as `Name: value`, which is exactly what compat32's
    Header folding makes of it (tests/test_email.py checks that) at a tenth of the cost;
    every other value is folded by compat32 as before. Most of a message's 17 headers
    (MIME headers, addresses, Message-ID, Date, List-Id...) take the short cut."""

    def _fits(self, name: str, value: object) -> bool:
        return (
            isinstance(value, str)
            and bool(self.max_line_length)
            and len(name) + 2 + len(value) <= (self.max_line_length or 0)
            and value.isascii()
            and value.isprintable()
        )

    def fold(self, name: str, value: str) -> str:
        if self._fits(name, value):
            return f"{name}: {value}{self.linesep}"
        return super().fold(name, value)

    def fold_binary(self, name: str, value: str) -> bytes:
        if self._fits(name, value):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


POLICY = FastCompat32()


def sender_domain(sender: str) -> str:
    """The domain of the From address, for Message-ID and List-Id; a safe fallback."""
    domain = parseaddr(sender)[1].rpartition("@")[2].strip().rstrip(".").lower()
    return domain if domain and _DOMAIN.match(domain) else FALLBACK_DOMAIN


def _token(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def message_id(kind: str, key: str, domain: str) -> str:
    return f"<{kind}.{_token(key)}@{domain}>"


def story_thread_id(story_key: str, domain: str) -> str:
    return f"<story.{_token(story_key)}@{domain}>"


def list_slug(watchlist: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", watchlist.lower()).strip("-")[:60].strip("-")
    return slug or "watchlist-" + _token(watchlist)[:8]


def list_id(watchlist: str, domain: str) -> str:
    slug = list_slug(watchlist)
    return f"watchdesk {slug} <{slug}.watchdesk.{domain}>"


def _header(name: str, value: str) -> str:
    """A header value; non-ASCII text as RFC 2047 encoded words, folded for `name`."""
    return value if value.isascii() else Header(value, "utf-8", header_name=name).encode()


def _addresses(value: str) -> str:
    """Addresses from the config, with non-ASCII display names encoded."""
    if value.isascii():
        return value
    return ", ".join(formataddr(pair, charset="utf-8") for pair in getaddresses([value]))


def boundary() -> str:
    """A multipart boundary in the stdlib's style. Chosen here, the generator does not
    make one: it compiles a regular expression per message (~0.1 ms) to check the parts
    for it. No check is needed: both parts are base64 (utf-8 text), and a base64 line
    never starts with `--`."""
    return f"{'=' * 15}{random.randrange(sys.maxsize):019d}=="


def _base(subject: str, sender: str, recipients: Sequence[str], now: datetime) -> MIMEMultipart:
    message = MIMEMultipart("alternative", boundary=boundary(), policy=POLICY)
    message["Subject"] = _header("Subject", header_text(subject))
    message["From"] = _addresses(sender)
    message["To"] = _addresses(", ".join(recipients))
    message["Date"] = format_datetime(now)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies
    return message


def _bodies(message: MIMEMultipart, text: str, html: str) -> MIMEMultipart:
    message.attach(MIMEText(text, "plain", "utf-8", policy=POLICY))
    message.attach(MIMEText(html, "html", "utf-8", policy=POLICY))
    return message


def alert_message(
    alert: Alert, *, key: str, sender: str, recipients: Sequence[str], now: datetime
) -> MIMEMultipart:
    domain = sender_domain(sender)
    message = _base(render.heading(alert), sender, recipients, now)
    message["Message-ID"] = message_id("alert", key, domain)
    if alert.story_key:
        parent = story_thread_id(alert.story_key, domain)
        message["In-Reply-To"] = parent
        message["References"] = parent
    message["List-Id"] = list_id(alert.watchlist, domain)  # ASCII: a slug and a checked domain
    return _bodies(message, render.alert_text(alert), _page(alert_html(alert)))


def digest_message(
    digest: Digest, *, key: str, sender: str, recipients: Sequence[str], now: datetime
) -> MIMEMultipart:
    domain = sender_domain(sender)
    subject = f"[watchdesk] {one_line(digest.title)}: {render.digest_count(digest)}"
    message = _base(subject, sender, recipients, now)
    message["Message-ID"] = message_id("digest", key, domain)
    watchlists = {a.watchlist for a in digest.alerts}
    if len(watchlists) == 1:
        message["List-Id"] = list_id(watchlists.pop(), domain)
    else:
        message["List-Id"] = f"watchdesk digest <digest.watchdesk.{domain}>"
    return _bodies(message, render.digest_text(digest), _page(digest_html(digest)))


# ---- HTML, from escaped text only -----------------------------------------------------


def _page(body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>\n'
        f'<body style="{_STYLE}">\n{body}\n</body></html>\n'
    )


def _linked(text: str, url: str | None) -> str:
    """Escaped text, as a link when url is an http(s) URL."""
    link = render.safe_link(url)
    return f'<a href="{escape(link, quote=True)}">{escape(text)}</a>' if link else escape(text)


def marked_snippet_html(alert: Alert) -> str:
    return "".join(
        f"<mark><strong>{escape(text)}</strong></mark>" if marked else escape(text)
        for text, marked in render.snippet_segments(alert)
    ).strip()


def alert_html(alert: Alert) -> str:
    meta = " · ".join(
        escape(part)
        for part in (
            render.outlet_of(alert),
            render.published_text(alert.published),
            f"watchlist: {one_line(alert.watchlist)}",
        )
    )
    parts = [
        f'<h2 style="font-size:18px;margin:0 0 4px">{_linked(render.title_of(alert), alert.link)}</h2>',
        f'<p style="{_MUTED};margin:0 0 12px">{meta}</p>',
    ]
    snippet = marked_snippet_html(alert)
    if snippet:
        parts.append(f"<p>{snippet}</p>")
    if alert.terms:
        parts.append(f'<p style="{_MUTED}">Matched: {escape(one_line(", ".join(alert.terms)))}</p>')
    if alert.test:
        parts.append(f'<p style="{_MUTED}">This is a test alert (watchdesk notify-test).</p>')
    return "\n".join(parts)


def digest_html(digest: Digest) -> str:
    parts = [
        f'<h2 style="font-size:18px">{escape(one_line(digest.title))}</h2>',
        f"<p><strong>{escape(render.digest_count(digest))}</strong></p>",
    ]
    note = render.capped_note(digest)
    if note:
        parts.append(f'<p style="{_MUTED}">{escape(note)}</p>')
    for group in render.group_alerts(digest.alerts):
        count = render.plural(group.count, "alert")
        parts.append(f'<h3 style="font-size:16px">{escape(one_line(group.watchlist))} ({count})</h3>')
        parts.append("<ul>")
        for story in group.stories:
            lead = story.lead
            hits = f" ({len(story.alerts)} hits)" if len(story.alerts) > 1 else ""
            meta = f"{render.outlet_of(lead)}, {render.published_text(lead.published)}{hits}"
            item = f"{_linked(render.title_of(lead), lead.link)}<br>"
            item += f'<span style="{_MUTED}">{escape(meta)}'
            if story.terms:
                item += f" · matched: {escape(one_line(', '.join(story.terms)))}"
            also = render.also_in_text(story.also_in)
            if also:
                item += f" · {escape(also)}"
            parts.append(f"<li>{item}</span></li>")
        parts.append("</ul>")
    return "\n".join(parts)
