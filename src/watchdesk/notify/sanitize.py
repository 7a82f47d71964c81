"""Make feed text safe for where it is shown: a terminal or log, Slack mrkdwn, HTML, mail headers."""

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


# ---- email headers ----------------------------------------------------------------------

# Every C0/C1 control (CR, LF, NUL, tab, NEL U+0085 included), DEL, the line and paragraph
# separators, and bidi marks, embeddings, overrides and isolates.
_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
SUBJECT_MAX = 200


def header_text(text: str, max_chars: int = SUBJECT_MAX) -> str:
    """A value safe for one email header line: unsafe characters become spaces, whitespace
    runs collapse, and the result is cut to max_chars (ending in an ellipsis when cut)."""
    cleaned = " ".join(_HEADER_UNSAFE.sub(" ", text).split())
    if len(cleaned) <= max_chars:
        return cleaned
    return cleaned[: max_chars - 1].rstrip() + "…"


# ---- Slack --------------------------------------------------------------------------------

_SLACK_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def slack_escape(text: str) -> str:
    """Escape &, < and > so Slack shows feed text literally: `<!channel>`, `<@U…>` and
    `<url|label>` become inert text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(text: str, max_chars: int) -> str:
    """one_line(text), escaped for Slack, at most max_chars long after escaping; a cut never
    splits an entity and ends in an ellipsis."""
    flat = one_line(text)
    escaped = slack_escape(flat)
    if len(escaped) <= max_chars:
        return escaped
    out: list[str] = []
    used = 0
    for char in flat:
        piece = _SLACK_ENTITIES.get(char, char)
        if used + len(piece) > max_chars - 1:
            break
        out.append(piece)
        used += len(piece)
    return "".join(out).rstrip() + "…"
