"""The webhook channel: each alert (or digest) POSTed as JSON, optionally signed.

Request:
    POST <url>
    Content-Type: application/json
    X-Watchdesk-Event: alert | digest
    X-Watchdesk-Delivery: <outbox idempotency key>    same on every retry: dedupe on it
    X-Watchdesk-Timestamp: <unix seconds>             only when a secret is configured
    X-Watchdesk-Signature: sha256=<hex>               only when a secret is configured

    {"event": "alert", "channel": "...", "key": "...", "alert": {
        "watchlist": "...", "title": "...", "link": "https://..." | null, "outlet": ... | null,
        "published": "2026-11-02T23:00:00+00:00" | null, "terms": [...], "snippet": "...",
        "snippet_marks": [[start, end], ...], "query": "...", "story_key": "...", "test": false,
        "kind": "hit" | "health", "also_in": ["other outlet", ...]}}
        (kind health: a feed failing, stale, gone or recovered; a dead delivery)

    {"event": "digest", "channel": "...", "key": "...", "title": "...", "count": 12,
     "capped": 3, "watchlists": [{"watchlist": "...", "count": 5, "stories": [
        {"story_key": "...", "count": 2, "alerts": [<alert>, ...]}, ...]}, ...]}

Every string comes from a feed and is untrusted: escape it for wherever you show it.
`link` is only ever an http(s) URL (anything else is sent as null). Bodies are ASCII
(non-ASCII escaped as \\uXXXX).

Signature: with `secret = "env:NAME"` (or credential:), the signature is
    hex(HMAC-SHA256(key=secret, msg=timestamp + "." + body))
over the exact body bytes, where timestamp is the X-Watchdesk-Timestamp value. To verify,
recompute it, compare in constant time, and reject timestamps more than a few minutes
from your clock (that stops replays); `verify_signature` below does exactly that.

Answers: 2xx is delivered; 408/425/429/5xx, timeouts and connection errors are retried
(Retry-After honoured); 3xx and other 4xx are permanent (see notify/http.py).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from ..config import ChannelConfig, resolve
from ..config.secrets import scrubbed
from ..models import Alert, DeliveryResult, Digest
from . import http, render

SIGNATURE_HEADER = "X-Watchdesk-Signature"
TIMESTAMP_HEADER = "X-Watchdesk-Timestamp"
REPLAY_WINDOW = 300.0  # seconds a receiver should accept a timestamp for


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Watchdesk-Signature value for this timestamp and body."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str,
    body: bytes,
    timestamp: str,
    signature: str,
    *,
    now: float | None = None,
    tolerance: float = REPLAY_WINDOW,
) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent."""
    try:
        sent = float(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "watchlist": alert.watchlist,
        "title": alert.title,
        "link": render.safe_link(alert.link),
        "outlet": alert.outlet,
        "published": alert.published.isoformat() if alert.published else None,
        "terms": list(alert.terms),
        "snippet": alert.snippet,
        "snippet_marks": [list(mark) for mark in alert.snippet_marks],
        "query": alert.query,
        "story_key": alert.story_key,
        "test": alert.test,
        "kind": alert.kind,  # "hit", or "health" (a feed failing, stale, gone, recovered; a dead delivery)
        "also_in": list(alert.also_in),  # other outlets that carried the story, when it was sent
    }


def digest_json(digest: Digest) -> dict[str, Any]:
    return {
        "title": digest.title,
        "count": len(digest.alerts),
        "capped": digest.capped,
        "watchlists": [
            {
                "watchlist": group.watchlist,
                "count": group.count,
                "stories": [
                    {
                        "story_key": story.key,
                        "count": len(story.alerts),
                        "alerts": [alert_json(a) for a in story.alerts],
                    }
                    for story in group.stories
                ],
            }
            for group in render.group_alerts(digest.alerts)
        ],
    }


class WebhookChannel:
    def __init__(
        self,
        name: str,
        url: str,
        *,
        secret: str | None = None,
        timeout: float = http.DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ):
        self.name = name
        self._secret = secret
        self._scrub = http.url_redactor(url, *((secret,) if secret else ()))  # for every message
        self._timeout = timeout
        self._clock = clock
        self._endpoint = http.Endpoint(url)

    @classmethod
    def from_config(cls, config: ChannelConfig) -> WebhookChannel:
        from . import ChannelNotAvailable

        secret_ref = config.options.get("secret")
        secret = resolve(secret_ref) if secret_ref else None
        try:
            return cls(config.name, config.options["url"], secret=secret)
        except ValueError:
            raise ChannelNotAvailable(f"channel {config.name!r}: url is not a usable http(s) URL") from None

    async def send(self, alert: Alert, *, key: str) -> DeliveryResult:
        return await self._post("alert", key, {"alert": alert_json(alert)})

    async def send_digest(self, digest: Digest, *, key: str) -> DeliveryResult:
        return await self._post("digest", key, digest_json(digest))

    async def _post(self, event: str, key: str, fields: dict[str, Any]) -> DeliveryResult:
        document = {"event": event, "channel": self.name, "key": key, **fields}
        body = json.dumps(document, ensure_ascii=True, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Watchdesk-Event": event,
            "X-Watchdesk-Delivery": key,
        }
        if self._secret is not None:
            timestamp = str(int(self._clock()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)
        try:
            answer = await self._endpoint.post(body, headers, deadline=self._timeout)
        except (httpx.HTTPError, TimeoutError) as e:
            return scrubbed(http.failure_result(e, "webhook", scrub=self._scrub), self._scrub)
        return scrubbed(http.status_result(answer, "webhook", self._scrub), self._scrub)

    async def aclose(self) -> None:
        await self._endpoint.aclose()
