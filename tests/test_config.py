"""Config and watchlist files: every problem reported at once, each with file and line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from watchdesk.config import load_config, parse_backfill, parse_duration, parse_size
from watchdesk.errors import ConfigError

GOOD_MAIN = """\
[watchdesk]
database = "state/watchdesk.db"

[polling]
interval = "10m"
backfill = "none"

[network]
allow = ["10.1.2.0/24"]

[[feed]]
url = "https://example.org/feed.xml"
name = "Example"
tags = ["wires"]

[channel.desk]
type = "email"
smtp = "smtp://relay.example.org:587"
from = "watchdesk@example.org"
to = ["desk@example.org"]
password = "env:WATCHDESK_TEST_SMTP"
"""


def make(tmp_path: Path, main: str, watchlists: dict[str, str]) -> Path:
    (tmp_path / "watchlists").mkdir()
    for name, text in watchlists.items():
        (tmp_path / "watchlists" / f"{name}.toml").write_text(textwrap.dedent(text))
    path = tmp_path / "watchdesk.toml"
    path.write_text(textwrap.dedent(main))
    return path


def check(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdesk", "--config", str(path), "check"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


def test_a_good_config_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDESK_TEST_SMTP", "s3cret")
    path = make(tmp_path, GOOD_MAIN, {"drugs": "match = ['fentanyl']\nnotify = ['desk', 'console']\n"})
    config = load_config(path)
    assert config.database == tmp_path / "state" / "watchdesk.db"
    assert config.polling.interval == 600 and config.polling.backfill == 0
    assert config.feeds[0].name == "Example" and config.feeds[0].tags == ("wires",)
    assert set(config.channels) == {"console", "desk"}
    assert config.watchlists[0].name == "drugs" and config.watchlists[0].notify == ("desk", "console")


def test_check_lists_every_problem_with_file_and_line(tmp_path: Path) -> None:
    main = """\
    [watchdesk]
    databse = "x.db"

    [polling]
    interval = "15 minutes"

    [[feed]]
    url = "ftp://example.org/feed"

    [[feed]]
    url = "https://example.org/a"
    tags = "wires"
    colour = "red"

    [channel.slacky]
    type = "slack"
    webhook = "https://hooks.slack.com/services/T000/B000/XXXX"

    [channel.desk]
    type = "email"
    smtp = "smtp://relay.example.org:587"
    from = "w@example.org"
    to = ["d@example.org"]
    password = "env:WATCHDESK_NOT_SET_ANYWHERE"
    """
    watchlist = """\
    description = "drugs"
    match = [
      'fentanyl',
      42,
    ]
    notify = ["console", "newsroom"]
    delivery = "weekly"
    """
    path = make(tmp_path, main, {"drugs": watchlist, "empty": "description = 'nothing'\n"})
    result = check(path)
    assert result.returncode == 2
    out = result.stderr
    wl = tmp_path / "watchlists" / "drugs.toml"
    expected = [
        f"{path}:2: unknown key 'databse' in [watchdesk]",
        f"{path}:5: polling.interval: '15 minutes' is not a duration",
        f"{path}:8: feed.url: 'ftp://example.org/feed' must start with http:// or https://",
        f"{path}:13: unknown key 'colour' in [feed]",
        f"{path}:17: channel.slacky.webhook: secrets are never written inline",
        f"{path}:24: channel 'desk': password: environment variable WATCHDESK_NOT_SET_ANYWHERE is not set",
        f"{wl}:2: watchlist.match: expected a list of strings",
        f"{wl}:6: notify names unknown channel 'newsroom'",
        f"{wl}:7: watchlist.delivery: 'weekly' is not a delivery",
        f"{tmp_path / 'watchlists' / 'empty.toml'}: a watchlist needs match",
    ]
    for line in expected:
        assert line in out, f"missing {line!r} in:\n{out}"
    assert "hooks.slack.com/services/T000/B000/XXXX" not in out + result.stdout  # never echo a secret


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = make(tmp_path, '[polling]\ninterval = "15m\n', {})
    result = check(path)
    assert result.returncode == 2
    assert f"{path}:2:" in result.stderr and "not valid TOML" in result.stderr


def test_watchlist_query_element_lines(tmp_path: Path) -> None:
    watchlist = """\
    match = [
      'fentanyl',
      '"dark web"',
    ]
    """
    path = make(tmp_path, "[polling]\n", {"w": watchlist})
    config = load_config(path)
    assert config.watchlists[0].lines == (2, 3)


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    result = check(tmp_path / "nope.toml")
    assert result.returncode == 2
    assert "nope.toml: cannot read" in result.stderr


def test_watchlist_feeds_must_name_a_feed_or_tag(tmp_path: Path) -> None:
    path = make(
        tmp_path,
        '[[feed]]\nurl = "https://example.org/f"\nname = "Ex"\ntags = ["wires"]\n',
        {"w": "match = ['x']\nfeeds = ['Ex', 'WIRES', 'ex', 'nosuch']\n"},
    )
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert [str(p) for p in e.value.problems] == [
        f"{tmp_path / 'watchlists' / 'w.toml'}:2: feeds names 'nosuch', which is no feed name or tag"
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1h", 3600), ("1h30m", 5400), ("2d", 172800), ("1w", 604800)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "m", "1.5h", "15 m", "-1h", "1y"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_backfill_and_sizes() -> None:
    assert parse_backfill("all") is None
    assert parse_backfill("none") == 0
    assert parse_backfill("24h") == 86400
    assert parse_size("10MiB") == 10 * 2**20
    assert parse_size(1234) == 1234
    with pytest.raises(ValueError):
        parse_size("lots")


def test_a_query_typo_is_reported_with_line_column_and_hint(tmp_path: Path) -> None:
    watchlist = """\
    match = [
      'fentanyl',
      '"dark web" NEAR/15 (opioid* OR pills',
      'carfentanil or nitazene',
    ]
    """
    path = make(tmp_path, "[polling]\n", {"drugs": watchlist})
    result = check(path)
    assert result.returncode == 2
    wl = tmp_path / "watchlists" / "drugs.toml"
    lines = result.stderr.splitlines()
    # file:line:column of the error itself (the ( left open; the lowercase "or"), as editors take it
    assert lines[0].startswith(f"{wl}:3:23: match query '\"dark web\" NEAR/15 (opioid* OR pills': unclosed (")
    assert lines[1].startswith(f"{wl}:4:16: match query 'carfentanil or nitazene': ")
    assert all(";" in line for line in lines)  # each comes with a hint


MULTI_LINE_AND_ESCAPED = r'''match = [
  """
  carfentanil
  AND NEAR/0 x""",
  "caf\u00e9 \"x\" AND )",
]
exclude = ["""fentanyl AND (pills"""]
'''


def test_a_query_error_in_a_multi_line_or_escaped_string_points_into_the_file(tmp_path: Path) -> None:
    path = make(tmp_path, "[polling]\n", {"drugs": MULTI_LINE_AND_ESCAPED})
    wl = tmp_path / "watchlists" / "drugs.toml"
    lines = check(path).stderr.splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [f"{wl}:4:7", f"{wl}:5:20", f"{wl}:7:28"]


@pytest.mark.parametrize("quote", ['"', "'", '"""', "'''"])
def test_string_position_points_at_each_character_of_a_string_value(quote: str) -> None:
    import tomllib

    from watchdesk.config.tomllines import locate, string_position

    for value in ["fentanyl", "dark web AND (pills", "a\tb c", ""]:
        text = f"match = [\n  'x', {quote}{value}{quote}, 'y',\n]\n"
        decoded = tomllib.loads(text)["match"][1]
        strings: dict[tuple[object, ...], tuple[int, int]] = {}
        locate(text, strings)
        lines = text.splitlines()
        for index, char in enumerate(decoded):
            line, column = string_position(lines, *strings[("match", 1)], index)
            assert lines[line - 1][column - 1] == char, (quote, value, index)
        line, column = string_position(lines, *strings[("match", 1)], len(decoded))
        assert lines[line - 1][column - 1 :].startswith(quote)  # past the end: the closing quote


def test_string_position_after_a_line_ending_backslash() -> None:
    from watchdesk.config.tomllines import locate, string_position

    text = 'match = ["""fentanyl AND \\\n    (pills"""]\n'
    strings: dict[tuple[object, ...], tuple[int, int]] = {}
    locate(text, strings)
    lines = text.splitlines()
    assert string_position(lines, *strings[("match", 0)], len("fentanyl AND ")) == (2, 5)  # the (
