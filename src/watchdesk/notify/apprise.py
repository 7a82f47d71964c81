"""The apprise channel (optional extra): delivery through the Apprise library to any of
the services it knows, from Apprise URLs held in a secret (`urls = "env:NAME"`; several
URLs separated by spaces or commas). Install with `pip install 'watchdesk[apprise]'`.

Apprise reports only success or failure, so every failure is transient: the outbox
retries it with backoff and, after its attempts run out, marks it dead.

An Apprise URL is a secret through and through (the token may be its host, user, path or
query): every record of the `apprise`, `requests` and `urllib3` loggers (which log the
path and query of what they POST, and what a service answered) is scrubbed of every piece
of the URLs while the channel lives, from before Apprise parses them; so is every message
the channel returns. Apprise's own debug logs stay off, as they can show what was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.charset
import logging
import re
from collections.abc import Iterator
from typing import Any

from ..config import ChannelConfig, resolve
from ..config.secrets import Redactor, scrub_logs, scrubbed
from ..models import Alert, DeliveryResult, Digest
from . import render
from .sanitize import header_text

DEFAULT_TIMEOUT = 60.0
INSTALL_HINT = "pip install 'watchdesk[apprise]'"
LIBRARY_LOGGERS = ("apprise", "requests", "urllib3")  # what logs while Apprise delivers


@contextlib.contextmanager
def keeping_email_charsets() -> Iterator[None]:
    """Undo what loading Apprise's plugins does to the whole process: its email plugin
    registers UTF-8 as quoted-printable (email.charset.add_charset), which would change
    the bodies of the email channel's messages (base64: see email_message.py)."""
    saved = dict(email.charset.CHARSETS)
    try:
        yield
    finally:
        email.charset.CHARSETS.clear()
        email.charset.CHARSETS.update(saved)


def urls_redactor(urls: str) -> Redactor:
    """Every URL in `urls` (separated by spaces or commas, as Apprise reads them), whole."""
    redactor = Redactor(urls.strip())
    for url in re.split(r"[\s,]+", urls.strip()):
        if url:
            redactor.add_url(url, whole=True)
    return redactor


class AppriseChannel:
    def __init__(
        self,
        name: str,
        notifier: Any,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        scrub: Redactor | None = None,
    ):
        self.name = name
        self._notifier = notifier  # an apprise.Apprise holding the URLs
        self._timeout = timeout
        self._scrub = scrub or Redactor()  # its logs are scrubbed while it is alive (scrub_logs)

    @classmethod
    def from_config(cls, config: ChannelConfig) -> AppriseChannel:
        from . import ChannelNotAvailable

        try:
            with keeping_email_charsets():
                import apprise
        except ImportError:
            raise ChannelNotAvailable(
                f"channel {config.name!r}: type 'apprise' needs the Apprise library: {INSTALL_HINT}"
            ) from None
        # Apprise URLs carry tokens; its debug logs can show them.
        logger = logging.getLogger("apprise")
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)
        urls = resolve(config.options["urls"])
        scrub = urls_redactor(urls)
        scrub_logs(scrub, *LIBRARY_LOGGERS)  # before add(): Apprise logs while it parses
        notifier = apprise.Apprise()
        with keeping_email_charsets():  # add() loads every plugin
            added = notifier.add(urls)
        if not added:
            raise ChannelNotAvailable(
                f"channel {config.name!r}: Apprise does not recognise the URLs in {config.options['urls']}"
            )
        scrub_logs(scrub, *LIBRARY_LOGGERS)  # and the loggers of the plugins add() imported
        return cls(config.name, notifier, scrub=scrub)

    async def send(self, alert: Alert, *, key: str) -> DeliveryResult:
        return await self._notify(render.heading(alert), render.alert_text(alert))

    async def send_digest(self, digest: Digest, *, key: str) -> DeliveryResult:
        title = f"[watchdesk] {digest.title}: {render.digest_count(digest)}"
        return await self._notify(title, render.digest_text(digest))

    async def _notify(self, title: str, body: str) -> DeliveryResult:
        try:
            async with asyncio.timeout(self._timeout):
                delivered = await self._notifier.async_notify(title=header_text(title), body=body)
        except TimeoutError:
            return DeliveryResult(False, f"apprise: no answer within {self._timeout:g}s")
        except Exception as e:  # a plugin's own failure: its text may hold the URL
            return scrubbed(DeliveryResult(False, f"apprise: {type(e).__name__}: {e}"), self._scrub)
        if bool(delivered):  # a bool (Apprise 1.x) or an AppriseResult (2.x): both truthy on success
            return DeliveryResult(True)
        return DeliveryResult(False, "apprise: a service did not accept the notification (see its logs)")

    async def aclose(self) -> None:
        return None
