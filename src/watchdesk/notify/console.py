"""The console channel: prints each alert to standard output (the embedded default)."""

from __future__ import annotations

import sys
from typing import TextIO

from ..models import Alert, DeliveryResult, Digest
from .render import digest_text, marked
from .sanitize import for_terminal, one_line


def render(alert: Alert) -> str:
    published = alert.published.strftime("%Y-%m-%d %H:%M UTC") if alert.published else "undated"
    head = "[watchdesk TEST] " if alert.test else "[watchdesk] "
    lines = [
        f"{head}{one_line(alert.title)}"
        if alert.kind == "health"
        else f"{head}{one_line(alert.watchlist)}: {one_line(alert.title)}",
        f"  {one_line(alert.outlet or 'unknown outlet')} | {published}",
    ]
    if alert.link:
        lines.append(f"  {one_line(alert.link)}")
    if alert.terms:
        lines.append(f"  matched: {one_line(', '.join(alert.terms))}")
    if alert.snippet:
        lines.append(f"  {one_line(marked(alert.snippet, alert.snippet_marks))}")
    return for_terminal("\n".join(lines)) + "\n"


class ConsoleChannel:
    def __init__(self, name: str = "console", stream: TextIO | None = None):
        self.name = name
        self._stream = stream

    async def send(self, alert: Alert, *, key: str) -> DeliveryResult:
        return self._write(render(alert))

    async def send_digest(self, digest: Digest, *, key: str) -> DeliveryResult:
        return self._write(for_terminal("[watchdesk] " + digest_text(digest)))

    def _write(self, text: str) -> DeliveryResult:
        stream = self._stream or sys.stdout
        try:
            stream.write(text)
            stream.flush()
        except OSError as e:
            return DeliveryResult(False, f"cannot write to the console: {e}")
        return DeliveryResult(True)

    async def aclose(self) -> None:
        return None
