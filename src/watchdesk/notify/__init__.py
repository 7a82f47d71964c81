"""Notify: alert channels behind one Protocol.

In: an Alert or a Digest and a ChannelConfig. Out: a DeliveryResult (sent, retry later or
failed for good); each channel renders (render, email_message, sanitize) and delivers."""

from __future__ import annotations

from typing import Protocol

from ..config import ChannelConfig
from ..errors import SecretError
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
    """A configured channel that cannot be built now: a secret that does not resolve, or
    an optional library (apprise) that is not installed."""


def build_channel(config: ChannelConfig) -> Channel:
    """The channel for a config entry, its secrets resolved now. Raises ChannelNotAvailable
    (naming the channel, never a secret value) when it cannot be built."""
    try:
        return _build(config)
    except SecretError as e:
        raise ChannelNotAvailable(f"channel {config.name!r}: {e}") from None
    except KeyError as e:
        raise ChannelNotAvailable(f"channel {config.name!r} needs {e.args[0]!r}") from None


def _build(config: ChannelConfig) -> Channel:
    if config.type == "console":
        from .console import ConsoleChannel

        return ConsoleChannel(config.name)
    if config.type == "email":
        from .email import EmailChannel

        return EmailChannel.from_config(config)
    if config.type == "slack":
        from .slack import SlackChannel

        return SlackChannel.from_config(config)
    if config.type == "webhook":
        from .webhook import WebhookChannel

        return WebhookChannel.from_config(config)
    if config.type == "apprise":
        from .apprise import AppriseChannel

        return AppriseChannel.from_config(config)
    raise ChannelNotAvailable(
        f"channel {config.name!r}: type {config.type!r} is not delivered by this version"
    )


__all__ = ["Channel", "ChannelNotAvailable", "build_channel"]
