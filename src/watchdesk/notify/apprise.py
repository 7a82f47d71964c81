"""The apprise channel (optional extra): delivery through the Apprise library to any of
the services it knows, from Apprise URLs held in a secret (`urls = "env:NAME"`; several
URLs separated by spaces or commas). Install with `pip install 'watchdesk[apprise]'`.

Apprise reports only success or failure, so every failure is transient: the outbox
retries it with backoff and, after its attempts run out, marks it dead.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..config import ChannelConfig, resolve
from ..models import Alert, DeliveryResult, Digest
from . import render
from .sanitize import header_text

DEFAULT_TIMEOUT = 60.0
INSTALL_HINT = "pip install 'watchdesk[apprise]'"


class AppriseChannel:
    def __init__(self, name: str, notifier: Any, *, timeout: float = DEFAULT_TIMEOUT):
        self.name = name
        self._notifier = notifier  # an apprise.Apprise holding the URLs
        self._timeout = timeout

    @classmethod
    def from_config(cls, config: ChannelConfig) -> AppriseChannel:
        from . import ChannelNotAvailable

        try:
            import apprise
        except ImportError:
            raise ChannelNotAvailable(
                f"channel {config.name!r}: type 'apprise' needs the Apprise library: {INSTALL_HINT}"
            ) from None
        # Apprise URLs carry tokens; its debug logs can show them.
        logger = logging.getLogger("apprise")
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)
        notifier = apprise.Apprise()
        if not notifier.add(resolve(config.options["urls"])):
            raise ChannelNotAvailable(
                f"channel {config.name!r}: Apprise does not recognise the URLs in {config.options['urls']}"
            )
        return cls(config.name, notifier)

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
        if bool(delivered):  # a bool (Apprise 1.x) or an AppriseResult (2.x): both truthy on success
            return DeliveryResult(True)
        return DeliveryResult(False, "apprise: a service did not accept the notification (see its logs)")

    async def aclose(self) -> None:
        return None
