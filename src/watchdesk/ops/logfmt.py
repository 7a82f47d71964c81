"""Log lines a machine reads: logfmt and JSON lines, from the messages the code writes.

The code logs an event name, then `key=%s` pairs, then maybe free text:

    log.error("feed_failed feed=%s feed_url=%s kind=%s error=%s", name, url, kind, error)
    log.error("config_invalid problem=%s: %s (keeping the running config)", kind, e)

Merged into one string, a value with a space (`feed=DOJ Office of Public Affairs`) runs
into the next key. These formatters read the format string instead, pair each key with
the arguments its value takes, and write every value whole:

    ts=2026-03-02T09:15:30.123+00:00 level=error logger=watchdesk.pipeline event=feed_failed
    feed="DOJ Office of Public Affairs" feed_url=https://... kind=http error="HTTP 503; ..."

(one line). The format string, as this module reads it:

- an event: a lower-case word (`feed_failed`, `pruned`) at the start;
- pairs: ` key=VALUE`, VALUE running to the next space (`%s`, `%d`, `/%s/`, `%.0fs`, or
  a constant such as `soon`); `%s: %s` is one value (`error=TypeError: message`), while
  a colon followed by words ends it (`chars=%d: taken as no match`: the words are text);
- free text after the pairs: `(in parentheses)`, `: after a colon`, or after the event
  alone (`config_reloaded %s`): written as `msg`, formatted, without its parentheses.

A message that does not start that way (a library's `Loaded 5 plugins`, a bare word with
free text after it that has no `_`) is written whole as `msg`. A key that repeats a field
(`ts level logger event msg exc stack`) or an earlier key gets a `_` appended.

Secrets: config.secrets' log filter (on the loggers it scrubs) merges a record's
arguments into its message, scrubs that, and drops the arguments, before any handler
sees the record. Such a record is split back into pairs along the format string, which
`keep_templates()` keeps on every record when it is made (the format string is code, not
data), and only when the scrubbed message still has every literal part of it (event,
`key=`, separators); otherwise it is written whole as `msg`. (One logged without
arguments is its own template: its scrubbed message is read as one.) So what is written
of a scrubbed record is always the scrubbed text, nothing more. Tracebacks are written from
`exc_text`, which the filter scrubs too. Without `keep_templates()` a scrubbed record is
written whole as `msg` (never split by guesswork).

Splitting a scrubbed record finds each separator from the left, so a value that itself
contains the next separator (a feed named `x feed_url=y`) splits early there; records
with their arguments (every watchdesk logger today) are paired exactly.

Wiring (cli/common.py setup_logging): `install(handler, "logfmt" | "json")`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal

__all__ = [
    "FORMATS",
    "TEMPLATE_ATTR",
    "JsonFormatter",
    "LogfmtFormatter",
    "fields",
    "formatter",
    "install",
    "keep_templates",
    "logfmt_value",
]

FORMATS = ("logfmt", "json")
TEMPLATE_ATTR = "msg_template"  # the record's format string, kept by keep_templates()
RESERVED = ("ts", "level", "logger", "event", "msg", "exc", "stack")
MAX_TEMPLATE_CHARS = 2000  # a longer format string is no template: written whole as msg
MAX_SPLIT_CHARS = 1_000_000  # a longer scrubbed message is written whole as msg

# printf-style conversions, as logging's `msg % args` reads them.
_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?[diouxXeEfFgGcrsa%]")
_EVENT = re.compile(r"[a-z][a-z0-9_]*(?=\s|$)")
_KEY = re.compile(r"\s+([A-Za-z_][A-Za-z0-9_]*)=")
_VALUE = re.compile(r"\S*")
_COLON_SPEC = re.compile(rf" ({_SPEC.pattern})(?=\s|$)")  # the second half of `%s: %s`
_PARENTHESES = re.compile(r"(\s*\()(.*)(\)\s*)", re.DOTALL)
_TEXT = re.compile(r"(:?\s+|:)(.*)", re.DOTALL)
_INT_SPECS = ("%d", "%i", "%u")
_INT = re.compile(r"-?[0-9]+")

# What acts on a terminal or splits a line: C0 and C1 controls, DEL, bidi marks,
# embeddings, overrides and isolates, line and paragraph separators (as cli/common.py's
# json_line; ops may not import cli). Written as escapes in both formats.
_TERMINAL = r"\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_INERT = r"\x00-\x1f" + _TERMINAL
_PLAIN = re.compile(rf'[^\s"=\\{_INERT}]+')
_ESCAPED = re.compile(rf'["\\{_INERT}]')
_JSON_INERT = re.compile(f"[{_TERMINAL}]")  # json.dumps escapes C0 itself
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


@dataclass(frozen=True, slots=True)
class _Slot:
    """A value in the format string: its key (None: the free text) and its text."""

    key: str | None
    text: str
    args: int  # how many positional arguments it takes
    pattern: re.Pattern[str]  # its literal parts, around anything its conversions wrote


@dataclass(frozen=True, slots=True)
class _Template:
    event: str
    literals: tuple[str, ...]  # before, between and after the slots: one more than slots
    slots: tuple[_Slot, ...]


def _slot(key: str | None, text: str) -> _Slot:
    args, pattern, at = 0, [], 0
    for m in _SPEC.finditer(text):
        pattern.append(re.escape(text[at : m.start()]))
        if m.group() == "%%":
            pattern.append("%%?")  # "%%" stays as it is in a message logged without arguments
        else:
            args += 1 + m.group().count("*")
            pattern.append(".*?")
        at = m.end()
    pattern.append(re.escape(text[at:]))
    return _Slot(key, text, args, re.compile("".join(pattern), re.DOTALL))


@lru_cache(maxsize=2048)
def _parse(template: str) -> _Template | None:
    """The event, the pairs and the free text of a format string (see the module); None
    when it does not start with an event."""
    m = None if len(template) > MAX_TEMPLATE_CHARS else _EVENT.match(template)
    if not m:
        return None
    literals: list[str] = []
    slots: list[_Slot] = []
    literal, at = m.group(), m.end()
    while key := _KEY.match(template, at):
        literal += key.group()
        value = _VALUE.match(template, key.end())
        assert value is not None  # \S* matches anywhere
        end = value.end()
        while template[end - 1 : end] == ":" and (more := _COLON_SPEC.match(template, end)):
            end = more.end()  # `error=%s: %s`: one value
        if template[end - 1 : end] == ":" and end < len(template) and end > key.end():
            end -= 1  # `chars=%d: taken as no match`: the colon starts the text
        literals.append(literal)
        slots.append(_slot(key.group(1), template[key.end() : end]))
        literal, at = "", end
    rest = template[at:]
    if rest:
        if not slots and "_" not in m.group():
            return None  # "starting up": prose, not an event
        text = _PARENTHESES.fullmatch(rest) or _TEXT.fullmatch(rest)
        if text is None:
            return None
        literals.append(literal + text.group(1))
        slots.append(_slot(None, text.group(2)))
        literal = text.group(3) if text.re is _PARENTHESES else ""
    literals.append(literal)
    return _Template(m.group(), tuple(literals), tuple(slots))


def _with_args(
    template: _Template, args: tuple[Any, ...] | Mapping[str, Any], message: str
) -> list[str] | None:
    """Each slot formatted with its own arguments; None unless they make `message`."""
    values, used = [], 0
    try:
        for slot in template.slots:
            if isinstance(args, Mapping):
                values.append(slot.text % args)
            else:
                values.append(slot.text % tuple(args[used : used + slot.args]))
                used += slot.args
    except (TypeError, ValueError, KeyError):
        return None
    if not isinstance(args, Mapping) and used != len(args):
        return None
    joined = template.literals[0] + "".join(
        v + lit for v, lit in zip(values, template.literals[1:], strict=True)
    )
    return values if joined == message else None


def _split(template: _Template, message: str) -> list[str] | None:
    """`message` cut along the template's literal parts (a record whose arguments are
    already in its message); None unless every part is there, in order."""
    first, last = template.literals[0], template.literals[-1]
    if not template.slots:
        return [] if message == first else None
    if len(message) > MAX_SPLIT_CHARS or not message.startswith(first) or not message.endswith(last):
        return None
    at, end = len(first), len(message) - len(last)
    if end < at:
        return None
    values = []
    for i, slot in enumerate(template.slots):
        if i == len(template.slots) - 1:
            value, at = message[at:end], end
        else:
            found = message.find(template.literals[i + 1], at, end)
            if found < 0:
                return None
            value, at = message[at:found], found + len(template.literals[i + 1])
        if not slot.pattern.fullmatch(value):
            return None
        values.append(value)
    return values if at == end else None


def fields(record: logging.LogRecord) -> tuple[str | None, list[tuple[str, str | int]], str | None]:
    """The record's event, its pairs (in order) and its free text (`msg`). A message that
    does not follow the pattern: (None, [], the whole message). Raises as getMessage()
    does for arguments that do not fit the format string (a logging error, as always)."""
    message = record.getMessage()
    template, values = None, None
    if record.args and isinstance(record.msg, str):  # not merged yet: paired exactly
        template = _parse(record.msg)
        values = None if template is None else _with_args(template, record.args, message)
    else:  # merged and scrubbed (args None: only with the kept template), or no arguments
        source = record.__dict__.get(TEMPLATE_ATTR) if record.args is None else record.msg
        if isinstance(source, str) and "%" not in source:
            source = message  # it had no arguments: the message is the (scrubbed) template
        template = _parse(source) if isinstance(source, str) else None
        values = None if template is None else _split(template, message)
    if template is None or values is None:
        return None, [], message
    pairs: list[tuple[str, str | int]] = []
    text = None
    taken = set(RESERVED)
    for slot, value in zip(template.slots, values, strict=True):
        if slot.key is None:
            text = value
            continue
        key = slot.key
        while key in taken:
            key += "_"
        taken.add(key)
        pairs.append((key, int(value) if slot.text in _INT_SPECS and _INT.fullmatch(value) else value))
    return template.event, pairs, text


def logfmt_value(value: str) -> str:
    """A value as logfmt writes it: bare when it is plain, else in double quotes with `"`
    and `\\` escaped, newlines, tabs and carriage returns as \\n \\t \\r, and the other
    controls (and what acts on a terminal) as \\uXXXX. The empty value is `""`."""
    if _PLAIN.fullmatch(value):
        return value
    return '"' + _ESCAPED.sub(lambda m: _ESCAPES.get(m.group()) or f"\\u{ord(m.group()):04x}", value) + '"'


class _Formatter(logging.Formatter):
    """The fields of a record, in order: ts, level, logger, `node` (when set: several
    daemons on one database), event, the pairs, msg, exc, stack."""

    def __init__(self, node: str | None = None):
        super().__init__()
        self.node = node

    def record_fields(self, record: logging.LogRecord) -> list[tuple[str, str | int]]:
        event, pairs, text = fields(record)
        found: list[tuple[str, str | int]] = [
            ("ts", datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")),
            ("level", record.levelname.lower()),
            ("logger", record.name),
        ]
        if self.node:
            found.append(("node", self.node))
        if event is not None:
            found.append(("event", event))
        found += pairs
        if text is not None:
            found.append(("msg", text))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:  # the scrubbing filter leaves only this, scrubbed
            found.append(("exc", record.exc_text))
        if record.stack_info:
            found.append(("stack", self.formatStack(record.stack_info)))
        return found


class LogfmtFormatter(_Formatter):
    """One logfmt line per record: `key=value` pairs separated by single spaces."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(
            f"{key}={value if isinstance(value, int) else logfmt_value(value)}"
            for key, value in self.record_fields(record)
        )


class JsonFormatter(_Formatter):
    """One JSON object per line, the same fields as logfmt (a `%d` value as a number)."""

    def format(self, record: logging.LogRecord) -> str:
        line = json.dumps(dict(self.record_fields(record)), ensure_ascii=False)
        return _JSON_INERT.sub(lambda m: f"\\u{ord(m.group()):04x}", line)


def formatter(style: Literal["logfmt", "json"] | str, node: str | None = None) -> logging.Formatter:
    """The formatter named `style` (one of FORMATS); `node`: a `node=` field on every line.
    Raises ValueError for another style."""
    if style == "logfmt":
        return LogfmtFormatter(node)
    if style == "json":
        return JsonFormatter(node)
    raise ValueError(f"unknown log format {style!r} (one of: {', '.join(FORMATS)})")


def keep_templates() -> None:
    """Keep every record's format string, as `msg_template`, from when it is made: before
    any filter merges the arguments in (see the module). Once per process; safe to repeat."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "keeps_templates", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if isinstance(record.msg, str):
            record.__dict__[TEMPLATE_ATTR] = record.msg
        return record

    factory.keeps_templates = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def install(
    handler: logging.Handler, style: Literal["logfmt", "json"] | str, node: str | None = None
) -> None:
    """Write `handler`'s records as `style` (keep_templates() included), with `node` if given."""
    handler.setFormatter(formatter(style, node))
    keep_templates()
