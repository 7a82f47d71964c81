"""ops/logfmt.py: the code's `event key=%s ...` messages written as logfmt and JSON lines,
each key paired with its own argument, secrets still scrubbed."""

from __future__ import annotations

import ast
import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from watchdesk.config.secrets import REDACTED, Redactor, scrub_logs
from watchdesk.ops.logfmt import (
    TEMPLATE_ATTR,
    JsonFormatter,
    LogfmtFormatter,
    fields,
    formatter,
    install,
    keep_templates,
    logfmt_value,
)

SRC = Path(__file__).resolve().parents[1] / "src" / "watchdesk"
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
BASE = ("ts", "level", "logger")

# A strict logfmt reader: key=value pairs separated by one space; a bare value has no
# space, quote, `=`, backslash or control character; a quoted one only the escapes
# \" \\ \n \r \t \uXXXX.
_PAIR = re.compile(
    r"([A-Za-z_][A-Za-z0-9_.-]*)="
    r'(?:"((?:[^"\\\x00-\x1f\x7f-\x9f]|\\["\\nrt]|\\u[0-9a-f]{4})*)"|([^\s"=\\\x00-\x1f\x7f-\x9f]+))'
    r"(?: (?=\S)|$)"
)
_UNESCAPE = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}


def parse_logfmt(line: str) -> dict[str, str]:
    found: dict[str, str] = {}
    at = 0
    while at < len(line):
        m = _PAIR.match(line, at)
        assert m, f"not logfmt at {at}: {line[at:]!r} (line {line!r})"
        assert m[1] not in found, f"key {m[1]} twice in {line!r}"
        if m[2] is not None:
            found[m[1]] = re.sub(
                r"\\(u[0-9a-f]{4}|.)",
                lambda e: chr(int(e[1][1:], 16)) if e[1].startswith("u") else _UNESCAPE[e[1]],
                m[2],
            )
        else:
            found[m[1]] = m[3]
        at = m.end()
    return found


def record(
    msg: object, *args: Any, name: str = "watchdesk.pipeline", level: int = logging.ERROR
) -> logging.LogRecord:
    return logging.getLogger(name).makeRecord(name, level, __file__, 1, msg, args, None)


def line(msg: object, *args: Any) -> dict[str, str]:
    return parse_logfmt(LogfmtFormatter().format(record(msg, *args)))


@pytest.fixture
def templates() -> Iterator[None]:
    """keep_templates() for one test: the record factory is put back after it."""
    saved = logging.getLogRecordFactory()
    keep_templates()
    yield
    logging.setLogRecordFactory(saved)


@pytest.fixture
def channel_logger() -> Iterator[tuple[logging.Logger, io.StringIO, logging.StreamHandler[io.StringIO]]]:
    """A logger of its own with a handler writing to a buffer (not propagating)."""
    logger = logging.getLogger("wd_test_ops.channel")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream, handler
    logger.removeHandler(handler)
    logger.propagate = True


def test_values_with_spaces_come_out_whole_and_quoted() -> None:
    text = LogfmtFormatter().format(
        record(
            "feed_failed feed=%s feed_url=%s kind=%s error=%s",
            "DOJ Office of Public Affairs",
            "https://www.justice.gov/news/rss?type=press_release",
            "rate_limited",
            "HTTP 503; Retry-After 120s",
        )
    )
    assert text.startswith("ts=")
    assert text.endswith(
        ' level=error logger=watchdesk.pipeline event=feed_failed feed="DOJ Office of Public Affairs" '
        'feed_url="https://www.justice.gov/news/rss?type=press_release" kind=rate_limited '
        'error="HTTP 503; Retry-After 120s"'
    )


def test_a_feed_name_with_quotes_and_equals_parses_back() -> None:
    name = 'Dept. of "Justice" = x'
    text = LogfmtFormatter().format(record("feed_polled feed=%s new=%d hits=%d alerts=%d", name, 3, 1, 0))
    assert "\n" not in text
    parsed = parse_logfmt(text)
    assert parsed["feed"] == name
    assert (parsed["event"], parsed["new"], parsed["hits"], parsed["alerts"]) == (
        "feed_polled",
        "3",
        "1",
        "0",
    )


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("plain", "plain"),
        ("", '""'),
        ("a b", '"a b"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("a=b", '"a=b"'),
        ("back\\slash", '"back\\\\slash"'),
        ("two\nlines\r\tend", '"two\\nlines\\r\\tend"'),
        ("\x1b[31mred", '"\\u001b[31mred"'),
        ("\u202eevil", '"\\u202eevil"'),
        ("caf\u00e9", "caf\u00e9"),
        ("non\u00a0breaking", '"non\u00a0breaking"'),
    ],
)
def test_logfmt_values_are_quoted_and_escaped(value: str, written: str) -> None:
    assert logfmt_value(value) == written
    assert parse_logfmt(f"k={written}") == {"k": value}


def test_the_shapes_the_code_writes() -> None:
    """A value with literal text around its conversion, `%s: %s` as one value, text after a
    colon, text in parentheses with a conversion in it, free text after the event alone,
    a constant value, and an event with nothing after it."""
    got = line(
        "regex_timeout pattern=/%s/ field=%s chars=%d: taken as no match (it backtracks too much)",
        "a+b",
        "text",
        1200,
    )
    assert {k: v for k, v in got.items() if k not in BASE} == {
        "event": "regex_timeout",
        "pattern": "/a+b/",
        "field": "text",
        "chars": "1200",
        "msg": "taken as no match (it backtracks too much)",
    }
    got = line(
        "feed_poll_not_recorded feed=%s error=%s: %s (the store refuses writes; next try in %.0fs)",
        "F x",
        "OperationalError",
        "database is locked",
        119.6,
    )
    assert {k: v for k, v in got.items() if k not in BASE} == {
        "event": "feed_poll_not_recorded",
        "feed": "F x",
        "error": "OperationalError: database is locked",
        "msg": "the store refuses writes; next try in 120s",
    }
    got = line("config_reloaded %s", "2 feeds added, 1 removed")
    assert {k: v for k, v in got.items() if k not in BASE} == {
        "event": "config_reloaded",
        "msg": "2 feeds added, 1 removed",
    }
    got = line("entries_waiting feed=%s new=%d waiting=%d next_check=soon", "A", 1, 2)
    assert got["next_check"] == "soon" and got["waiting"] == "2"
    got = line("daemon_stopped")
    assert {k: v for k, v in got.items() if k not in BASE} == {"event": "daemon_stopped"}
    got = line("interval_x interval=%.0fs (every entry new)", 300.0)
    assert (got["interval"], got["msg"]) == ("300s", "every entry new")


def test_messages_that_do_not_follow_the_pattern_are_msg() -> None:
    for msg, args, text in [
        ("Loaded %d plugins from %s", (5, "/x"), "Loaded 5 plugins from /x"),
        ("HTTP Request: %s %s", ("GET", "https://e.org/"), "HTTP Request: GET https://e.org/"),
        ("starting up now", (), "starting up now"),
        (ValueError("an object, not a string"), (), "an object, not a string"),
    ]:
        got = line(msg, *args)
        assert set(got) == {*BASE, "msg"} and got["msg"] == text


def test_a_key_that_repeats_a_field_gets_an_underscore() -> None:
    got = line("odd_event msg=%s level=%s level=%s", "a", "b", "c")
    assert (got["msg_"], got["level_"], got["level__"], got["level"]) == ("a", "b", "c", "error")


def test_mapping_arguments_pair_too() -> None:
    got = line("ev_x a=%(a)s b=%(b)d", {"a": "x y", "b": 2})
    assert (got["a"], got["b"]) == ("x y", "2")


def test_an_exception_is_one_escaped_field() -> None:
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        rec = logging.getLogger("watchdesk.daemon").makeRecord(
            "watchdesk.daemon", logging.ERROR, __file__, 1, "poll_tick_failed", (), sys.exc_info()
        )
    text = LogfmtFormatter().format(rec)
    assert "\n" not in text
    got = parse_logfmt(text)
    assert got["event"] == "poll_tick_failed"
    assert got["exc"].startswith("Traceback (most recent call last):\n")
    assert got["exc"].endswith("ValueError: bad\nthing")
    data = json.loads(JsonFormatter().format(rec))
    assert data["exc"] == got["exc"]


def test_json_lines_have_the_same_fields() -> None:
    rec = record("feed_failed feed=%s errors=%d error=%s", "DOJ \u2028 x", 3, "HTTP 503\nmore")
    text = JsonFormatter().format(rec)
    assert "\n" not in text and "\u2028" not in text  # one line, even for a JSON-unaware reader
    data = json.loads(text)
    assert list(data) == ["ts", "level", "logger", "event", "feed", "errors", "error"]
    assert data["errors"] == 3  # a %d value is a number
    assert (data["feed"], data["error"], data["level"]) == ("DOJ \u2028 x", "HTTP 503\nmore", "error")
    ts = datetime.fromisoformat(data["ts"])
    assert ts.utcoffset() == timedelta(0)
    assert abs(ts.timestamp() - rec.created) < 0.001
    logfmt = parse_logfmt(LogfmtFormatter().format(rec))
    assert {k: str(v) for k, v in data.items()} == logfmt


def test_stack_info_is_a_field() -> None:
    rec = record("ev_x a=%s", 1)
    rec.stack_info = "Stack (most recent call last):\n  File x"
    got = parse_logfmt(LogfmtFormatter().format(rec))
    assert got["stack"] == rec.stack_info


def test_formatter_names() -> None:
    assert isinstance(formatter("logfmt"), LogfmtFormatter)
    assert isinstance(formatter("json"), JsonFormatter)
    with pytest.raises(ValueError, match="unknown log format"):
        formatter("xml")


def test_keep_templates_keeps_the_format_string_once(templates: None) -> None:
    factory = logging.getLogRecordFactory()
    keep_templates()
    assert logging.getLogRecordFactory() is factory  # not wrapped twice
    rec = logging.getLogger("x").makeRecord("x", logging.INFO, __file__, 1, "ev_x a=%s", ("v",), None)
    assert getattr(rec, TEMPLATE_ATTR) == "ev_x a=%s"


@pytest.mark.parametrize("style", ["logfmt", "json"])
def test_a_secret_never_appears_and_keys_stay_paired(
    style: str,
    templates: None,
    channel_logger: tuple[logging.Logger, io.StringIO, logging.StreamHandler[io.StringIO]],
) -> None:
    """Proves the scrubbing filter (config.secrets.scrub_logs) still applies: a secret
    passed as an argument and one in an exception's message are replaced, and the record,
    whose arguments the filter merged into its message, is still split into its pairs."""
    secret = "xoxb-Secret-Token-4242"
    logger, stream, handler = channel_logger
    install(handler, style)
    scrub = Redactor(secret)
    scrub_logs(scrub, "wd_test_ops")
    logger.error(
        "delivery_failed channel=%s url=%s error=%s",
        "ops alerts",
        f"https://hooks.example.org/services/{secret}",
        f"401 Unauthorized for token {secret}",
    )
    try:
        raise ValueError(f"cannot post with {secret}")
    except ValueError:
        logger.exception("post_failed channel=%s", "ops alerts")
    out = stream.getvalue()
    assert secret not in out
    lines = out.splitlines()
    assert len(lines) == 2
    first, second = (json.loads(x) if style == "json" else parse_logfmt(x) for x in lines)
    assert first["event"] == "delivery_failed" and first["channel"] == "ops alerts"
    assert first["url"] == f"https://hooks.example.org/services/{REDACTED}"
    assert first["error"] == f"401 Unauthorized for token {REDACTED}"
    assert second["event"] == "post_failed" and second["channel"] == "ops alerts"
    assert f"ValueError: cannot post with {REDACTED}" in second["exc"]
    del scrub


def test_a_scrubbed_record_logged_without_arguments_is_read_from_its_scrubbed_text(
    templates: None,
    channel_logger: tuple[logging.Logger, io.StringIO, logging.StreamHandler[io.StringIO]],
) -> None:
    secret = "xoxb-Secret-Token-4242"
    logger, stream, handler = channel_logger
    install(handler, "logfmt")
    scrub = Redactor(secret)
    scrub_logs(scrub, "wd_test_ops")
    logger.warning(f"token_refused url=https://hooks.example.org/{secret} (not retried)")
    out = stream.getvalue()
    assert secret not in out
    got = parse_logfmt(out.strip())
    assert (got["event"], got["url"], got["msg"]) == (
        "token_refused",
        f"https://hooks.example.org/{REDACTED}",
        "not retried",
    )
    del scrub


def test_a_scrubbed_record_without_its_template_is_written_whole(
    channel_logger: tuple[logging.Logger, io.StringIO, logging.StreamHandler[io.StringIO]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without keep_templates() the merged message is not split by guesswork."""
    secret = "xoxb-Secret-Token-4242"
    logger, stream, handler = channel_logger
    monkeypatch.setattr(logging, "_logRecordFactory", logging.LogRecord)  # whatever set it before
    handler.setFormatter(LogfmtFormatter())
    scrub = Redactor(secret)
    scrub_logs(scrub, "wd_test_ops")
    logger.error("delivery_failed channel=%s error=%s", "ops alerts", f"bad {secret}")
    got = parse_logfmt(stream.getvalue().strip())
    assert got["msg"] == f"delivery_failed channel=ops alerts error=bad {REDACTED}"
    assert "event" not in got
    del scrub


def test_a_scrubbed_message_missing_a_literal_part_is_written_whole(templates: None) -> None:
    """When scrubbing took part of the format string's own text, the pairs cannot be
    trusted: the (scrubbed) message is written whole."""
    rec = record("delivery_failed channel=%s error=%s", "a", "b")
    rec.msg, rec.args = "delivery_failed channel=a [redacted]=b", None  # what the filter would leave
    assert fields(rec) == (None, [], "delivery_failed channel=a [redacted]=b")


# ---- every log call in src/ -------------------------------------------------------------


def log_calls() -> list[tuple[str, str, int]]:
    """(where, format string, number of arguments) of every `log.LEVEL(...)` in src/."""
    found = []
    for file in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LEVELS
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "log"
            ):
                where = f"{file.relative_to(SRC)}:{node.lineno}"
                first = node.args[0] if node.args else None
                assert isinstance(first, ast.Constant) and isinstance(first.value, str), (
                    f"{where}: a log message is a format string constant (`event key=%s`), "
                    "its values arguments"
                )
                found.append((where, first.value, len(node.args) - 1))
    return found


_CONVERSION = re.compile(r"%[#0\- +]*\d*(?:\.\d*)?([diouxXeEfFgGcrsa%])")


def dummy_args(template: str) -> tuple[Any, ...]:
    args: list[Any] = []
    for m in _CONVERSION.finditer(template):
        kind = m.group(1)
        if kind == "%":
            continue
        n = len(args)
        if kind in "diouxXc":
            args.append(40 + n)
        elif kind in "eEfFgG":
            args.append(1.25 + n)
        else:
            args.append(f'value {n} = "quoted" with spaces')
    return tuple(args)


CALLS = log_calls()


def test_the_call_sites_are_found() -> None:
    assert len(CALLS) >= 30
    assert any(t.startswith("feed_failed feed=%s") for _, t, _ in CALLS)


@pytest.mark.parametrize(("where", "template", "count"), CALLS, ids=[c[0] for c in CALLS])
def test_every_log_call_in_src_formats_with_its_keys_paired(where: str, template: str, count: int) -> None:
    args = dummy_args(template)
    assert len(args) == count, f"{where}: {count} arguments for {len(args)} conversions"
    rec = record(template, *args)
    got = parse_logfmt(LogfmtFormatter().format(rec))
    data = json.loads(JsonFormatter().format(rec))
    assert {k: str(v) for k, v in data.items()} == got
    keys = re.findall(r"\s([A-Za-z_][A-Za-z0-9_]*)=", template)
    if (
        not re.match(r"[a-z][a-z0-9_]*( [A-Za-z_][A-Za-z0-9_]*=|$)", template)
        and "_" not in template.split()[0]
    ):
        # Prose (`checking %s failed`): no event to pair keys to, written whole as msg.
        assert got == {**{k: got[k] for k in BASE}, "msg": template % args}, where
        return
    assert got["event"] == template.split()[0], f"{where}: no event"
    assert set(got) - {*BASE, "event", "msg"} == set(keys), f"{where}: keys not paired: {got}"
    # A key written `key=%X` (its value one conversion) carries exactly that argument.
    n = 0
    for m in _CONVERSION.finditer(template):
        if m.group(1) == "%":
            continue
        key = re.search(r"\s([A-Za-z_][A-Za-z0-9_]*)=$", template[: m.start()])
        rest = template[m.end() :]
        if key and (not rest or rest[0] == " " or (rest[0] == ":" and not rest.startswith(": %"))):
            assert got[key.group(1)] == m.group() % args[n], f"{where}: {key.group(1)}"
        n += 1
    # Every string argument is inside one value, never cut across two.
    for arg in args:
        if isinstance(arg, str):
            assert any(arg in value for value in got.values()), f"{where}: {arg!r} not whole"
