"""Make feed text safe for where it is shown (HARDENING.md, Output)."""

from __future__ import annotations

import re

# C0 and C1 controls except \t and \n; DEL; bidi embeddings/overrides and isolates.
_TERMINAL_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def for_terminal(text: str) -> str:
    """Strip control characters and bidi overrides; keep newlines and tabs."""
    return _TERMINAL_UNSAFE.sub("", text)


def one_line(text: str) -> str:
    """for_terminal, and on one line."""
    return " ".join(for_terminal(text).split())
