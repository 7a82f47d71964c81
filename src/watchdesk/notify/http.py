"""POSTing to an HTTP endpoint for the channels that do (Slack, webhook), and what an
answer means for the outbox.

| answer                                    | DeliveryResult                          |
|-------------------------------------------|-----------------------------------------|
| 2xx                                       | ok (Slack also needs the body `ok`)     |
| 408, 425, 429, 5xx                        | transient; retry_after from Retry-After |
| 3xx (redirects are not followed)          | permanent                               |
| any other 4xx (400, 401, 403, 404, 410...) | permanent                               |
| timeout, connection or protocol error     | transient                               |
| invalid URL or scheme                     | permanent                               |

Messages never contain the URL or any other secret passed as `secrets`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

import httpx

from .. import __version__
from ..models import DeliveryResult
from ..net import parse_retry_after
from ..sanitize import one_line
from ..secrets import redact

USER_AGENT = f"watchdesk/{__version__}"
DEFAULT_TIMEOUT = 30.0
MAX_ANSWER_BYTES = 4096  # we only read the start of an answer: enough for an error text
TRANSIENT_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes  # at most MAX_ANSWER_BYTES

    @property
    def text(self) -> str:
        return one_line(self.body.decode("utf-8", "replace"))[:200]


def new_client(timeout: float = DEFAULT_TIMEOUT) -> httpx.AsyncClient:
    """One per channel: no environment proxies, no redirects, a per-operation timeout."""
    return httpx.AsyncClient(
        trust_env=False,
        follow_redirects=False,
        timeout=httpx.Timeout(timeout),
        # Answers are read raw and only their start: nothing to inflate (HARDENING.md, HTTP).
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
    )


async def post(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    deadline: float = DEFAULT_TIMEOUT,
) -> Answer:
    """POST body; the whole exchange within `deadline` seconds. Raises httpx.HTTPError or
    TimeoutError (see failure_result)."""
    async with asyncio.timeout(deadline):
        async with client.stream("POST", url, content=body, headers=dict(headers)) as response:
            head = bytearray()
            async for chunk in response.aiter_raw():
                head += chunk
                if len(head) >= MAX_ANSWER_BYTES:
                    break
            return Answer(
                response.status_code,
                {k.lower(): v for k, v in response.headers.items()},
                bytes(head[:MAX_ANSWER_BYTES]),
            )


def status_result(answer: Answer, service: str) -> DeliveryResult:
    """The outcome of an answer by its status alone (see the table above)."""
    status = answer.status
    said = f": {answer.text}" if answer.text else ""
    if 200 <= status < 300:
        return DeliveryResult(True)
    if status in TRANSIENT_STATUSES or status >= 500:
        retry_after = parse_retry_after(answer.headers.get("retry-after"))
        return DeliveryResult(False, f"{service} answered HTTP {status}{said}", retry_after=retry_after)
    if 300 <= status < 400:
        return DeliveryResult(
            False, f"{service} answered HTTP {status} (a redirect; check the configured URL)", permanent=True
        )
    return DeliveryResult(False, f"{service} answered HTTP {status}{said}", permanent=True)


def failure_result(error: BaseException, service: str, *secrets: str) -> DeliveryResult:
    """The outcome of a request that got no answer; the text is redacted of `secrets`."""
    if isinstance(error, TimeoutError | httpx.TimeoutException):
        return DeliveryResult(False, f"{service}: no answer in time ({type(error).__name__})")
    detail = redact(f"{type(error).__name__}: {error}".rstrip(": "), *secrets)
    if isinstance(error, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return DeliveryResult(
            False, f"{service}: the configured URL is not usable ({detail})", permanent=True
        )
    return DeliveryResult(False, f"{service}: {detail}")


MIN_TOKEN_CHARS = 8  # a path segment or query value this long may be a token


def url_secrets(url: str) -> tuple[str, ...]:
    """The strings to redact for a secret URL: the URL itself and its path and query.
    Raises ValueError (without the URL) when httpx cannot use it."""
    try:
        parts = httpx.URL(url)
    except httpx.InvalidURL:
        raise ValueError("not a usable URL") from None
    tail = parts.raw_path.decode("ascii", "replace")
    pieces = [p for p in re.split(r"[/?&=;]", tail) if len(p) >= MIN_TOKEN_CHARS]
    found = {url, str(parts), *pieces, *(unquote(p) for p in pieces)}
    if len(tail) > 1:
        found.add(tail)
    return tuple(sorted(found, key=len, reverse=True))  # the whole URL is replaced before its pieces
