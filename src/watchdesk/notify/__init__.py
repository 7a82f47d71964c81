"""Alert channels behind one Protocol. Each channel renders an Alert and delivers it."""

from __future__ import annotations

from typing import Protocol

from ..config import ChannelConfig
from ..models import Alert, DeliveryResult, Digest


class Channel(Protocol):
    name: str

    async def send(self, alert: Alert, *, key: str) -> DeliveryResult:
        """Deliver one alert. `key` is the outbox idempotency key (stable across retries).
        Never raises for delivery problems: returns the outcome."""
        ...

    async def send_digest(self, digest: Digest, *, key: str) -> DeliveryResult:
        """Deliver several alerts as one message."""
        ...

    async def aclose(self) -> None: ...


class ChannelNotAvailable(Exception):
    """A configured channel type this version cannot deliver through yet."""


def build_channel(config: ChannelConfig) -> Channel:
    if config.type == "console":
        from .console import ConsoleChannel

        return ConsoleChannel(config.name)
    raise ChannelNotAvailable(
        f"channel {config.name!r}: type {config.type!r} is not delivered by this version yet"
    )


__all__ = ["Channel", "ChannelNotAvailable", "build_channel"]
