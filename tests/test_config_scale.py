"""A big config loads in linear work (issue 15; the timing itself: bench/config_load.py):
feed scopes are casefolded once per load, not once per watchlist file; the line of a key
is looked up only when a problem is reported; TOML is read by rtoml (compiled) exactly
as tomllib reads it, and whatever rtoml refuses is tomllib's to judge and report."""

from __future__ import annotations

import random
import tomllib
from pathlib import Path

import pytest
import rtoml

from watchdesk.config import load_config, tomlcheck, tomlchunks
from watchdesk.config.watchlists import load_watchlists
from watchdesk.errors import ConfigError


class Counted(str):
    calls = 0

    def casefold(self) -> str:
        Counted.calls += 1
        return str.casefold(self)


class Feed:
    def __init__(self, n: int):
        self.name = Counted(f"Feed {n}")
        self.tags = (Counted("local"), Counted(f"region{n % 5}"))


def test_feed_scopes_are_casefolded_once_per_load_not_per_watchlist(tmp_path: Path) -> None:
    for n in range(20):
        (tmp_path / f"w{n:02d}.toml").write_text(f'match = ["word{n}"]\nfeeds = ["FEED {n}", "Local"]\n')
    feeds = [Feed(n) for n in range(50)]
    Counted.calls = 0
    watchlists, problems = load_watchlists(tmp_path, ["console"], feeds)
    assert problems == [] and len(watchlists) == 20
    assert Counted.calls <= 3 * len(feeds)  # each name and tag once (not 20 times)


def write(folder: Path, feeds: int, *, bad_feed: int | None = None) -> Path:
    (folder / "watchlists").mkdir(parents=True)
    for n in range(3):
        (folder / "watchlists" / f"w{n}.toml").write_text(f'match = ["word{n}"]\nfeeds = ["Feed {n}"]\n')
    (folder / "feeds").mkdir()
    tables = []
    for n in range(feeds):
        interval = '\ninterval = "soon"' if n == bad_feed else ""
        tables.append(f'[[feed]]\nurl = "https://s{n}.example.org/rss"\nname = "Feed {n}"{interval}\n')
    (folder / "feeds" / "all.toml").write_text("\n".join(tables))
    config = folder / "watchdesk.toml"
    config.write_text(
        '[watchdesk]\nfeeds = ["feeds/*.toml"]\n\n'
        + "\n".join(tables[:2]).replace("s0.", "m0.").replace("s1.", "m1.").replace("Feed ", "Main ")
    )
    return config


def test_no_line_is_looked_up_in_a_valid_feed_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path, 2000)
    scanned: list[int] = []
    real = tomlcheck.locate

    def counting(text: str, *args: object) -> dict[tuple[object, ...], int]:
        scanned.append(len(text))
        return real(text, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(tomlcheck, "locate", counting)
    loaded = load_config(config, check_secrets=False)
    assert len(loaded.feeds) == 2002
    # only the three small watchlist files (whose query lines a Watchlist keeps)
    assert len(scanned) == 3 and max(scanned) < 100

    scanned.clear()
    (tmp_path / "feeds" / "all.toml").unlink()
    write(tmp_path / "bad", 2000, bad_feed=1500)
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "bad" / "watchdesk.toml", check_secrets=False)
    assert [str(p).split(": ", 1)[0] for p in e.value.problems] == [
        f"{tmp_path / 'bad' / 'feeds' / 'all.toml'}:6004"
    ]
    assert max(scanned) > 100_000  # the feeds file was scanned, because of its problem


SAME = [
    '[[feed]]\nurl = "https://a.example/x"\nname = "A"\n',
    "# c\n[watchdesk]\ndatabase = 'db'\n\n[[feed]]\nurl = 'https://a/x' # c\ntags = []\n\n[[ feed ]]  # c\nenabled = false\n",
    '[[feed]]\r\nurl = "https://a/x"\r\ntags = ["a", \'b"c\', "d\'e",]\r\n[channel.x]\r\ntype = "console"\r\n',
    '[polling]\ninterval = "1m"\n[[feed]]\nurl = "u"\n[network]\nallow = [\n  "10.0.0.0/8",\n]\n[[feed]]\nname = "é ü \t"\n',
    'a = 1\n[[feed]]\nurl = "u"\n[channel.x]\ntype = "console"\n[channel.y]\n[[feed]]\nurl = "v"\n[health]\n',
]
ODD = [  # valid TOML of shapes a config may have: both parsers must read them alike
    '[[feed]]\nurl = "u"\n[feed.x]\na = 1\n',  # a sub-table of the last feed
    '[[feed]]\nurl = "u\\u00e9"\n',  # an escape
    '[[feed]]\nurl = """u"""\n',  # a multi-line string
    'x = """\n[[feed]]\nurl = "u"\n"""\n',  # a [[feed]] line inside a string
    '[channel.x]\ntype = "a"\n[[feed]]\nurl = "u"\n[channel.y]\ntype = "b"\n',  # [channel] in two runs
    "[[feed]]\ninterval = 5\nweight = 1.5\nwhen = 2026-12-04T01:02:03Z\nday = 2026-12-04\n",
    "big = 123456789012345678901234567890\n",  # past 64 bits
]
INVALID = [  # not TOML: tomllib's message and line are what is reported
    ('[[feed]]\nurl = "u"\nurl = "v"\n', 3),  # duplicate key
    ('x = [\n[[feed]]\nurl = "u"\n["a"]]\n', 2),
    ('[[feed]]\nurl = "u"\n  ]\n', 3),
    ('[[feed]]\nurl = "u"\n[[feed]]\nurl = \n', 4),
]


@pytest.mark.parametrize("text", SAME + ODD)
def test_rtoml_reads_what_tomllib_reads(tmp_path: Path, text: str) -> None:
    """The canary of the rtoml pin: for valid TOML, rtoml and read_toml give what tomllib
    gives (values, types, order)."""
    expected = tomllib.loads(text)
    assert rtoml.loads(text) == expected
    path = tmp_path / "watchdesk.toml"
    path.write_bytes(text.encode())
    read = tomlcheck.read_toml(path, [])
    assert read is not None
    got = read[0]
    assert got == expected and list(got) == list(expected)
    assert [type(v) for v in got.values()] == [type(v) for v in expected.values()]


@pytest.mark.parametrize(("text", "line"), INVALID)
def test_invalid_toml_is_reported_by_tomllib(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "watchdesk.toml"
    path.write_bytes(text.encode())
    with pytest.raises(tomllib.TOMLDecodeError):
        tomllib.loads(text)
    problems: list[object] = []
    assert tomlcheck.read_toml(path, problems) is None  # type: ignore[arg-type]
    [problem] = problems
    assert problem.line == line and problem.message.startswith("not valid TOML: "), problem  # type: ignore[attr-defined]


def test_random_feed_lists_read_as_tomllib_reads_them() -> None:
    rng = random.Random(15)
    pieces = [
        'url = "https://x.example/{n}"',
        "name = 'Feed {n}'",
        'tags = ["a{n}", "b"]',
        "tags=[ ]",
        "enabled = true",
        "enabled=false # off",
        "# comment {n}",
        "",
        '  backfill = "all"  ',
        'name = "x#{n}" # y',
    ]
    fast_used = 0
    for _ in range(200):
        lines = ["[watchdesk]", 'database = "w.db"']
        for n in range(rng.randint(1, 6)):
            lines.append(rng.choice(["[[feed]]", "  [[feed]] # f", "[polling]" if n == 2 else "[[feed]]"]))
            keys: set[str] = set()
            for piece in rng.sample(pieces, rng.randint(0, 5)):
                key = piece.split("=")[0].strip()
                if "=" in piece and key in keys:
                    continue
                keys.add(key)
                lines.append(piece.format(n=n))
        text = "\n".join(lines) + rng.choice(["", "\n"])
        try:
            expected = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            with pytest.raises(rtoml.TomlParsingError):
                rtoml.loads(text)
            continue
        assert rtoml.loads(text) == expected, text
        fast_used += 1
    assert fast_used > 100


# ---- a long run of [[feed]] tables is read in pieces (config/tomlchunks.py) -------------


def _pieces(text: str) -> tuple[object, int]:
    """tomlchunks.loads with pieces of one table, and how many rtoml calls it made."""
    calls = [0]
    real = tomlchunks.rtoml.loads

    def counting(t: str) -> object:
        calls[0] += 1
        return real(t)

    tomlchunks.rtoml.loads = counting  # type: ignore[assignment]
    try:
        return tomlchunks.loads(text, min_bytes=0, per_piece=1), calls[0]
    finally:
        tomlchunks.rtoml.loads = real  # type: ignore[assignment]


SPLIT = [  # plain runs of [[feed]] tables: read in pieces, and the same; their tables
    ('[watchdesk]\ndatabase = "w.db"\n\n[[feed]]\nurl = "https://a/1"\n[[feed]]\nurl = "https://a/2"\n', 2),
    ('[[feed]]\r\nurl = "https://a/1"\r\ntags = ["a",\r\n  "b"]\r\n[[ feed ]] # two\r\nname = "B"\r\n', 2),
    (
        "[polling]\ninterval = '1m'\n  [[feed]]  # one\nurl = 'u' # c\n\n[[feed]]\ntags = [ ]\n[[feed]]\nx = {a = 1}\n",
        3,
    ),
]


@pytest.mark.parametrize(("text", "tables"), SPLIT)
def test_a_plain_feed_list_is_read_in_pieces_and_is_the_same(text: str, tables: int) -> None:
    got, calls = _pieces(text)
    expected = tomllib.loads(text)
    assert got == expected and list(got) == list(expected)  # type: ignore[call-overload]
    assert calls == 1 + tables  # what precedes the first [[feed]], then one call per table


@pytest.mark.parametrize("text", SAME + ODD)
def test_anything_unusual_is_read_as_one_parse_reads_it(text: str) -> None:
    """Headers other than [[feed]] after the first feed, multi-line strings, a [[feed]]
    line inside a string: the whole file is parsed at once (or split where it is safe),
    and the result is tomllib's."""
    got, _calls = _pieces(text)
    assert got == tomllib.loads(text)


@pytest.mark.parametrize(("text", "line"), INVALID)
def test_a_piece_that_does_not_parse_is_reported_at_its_line(
    tmp_path: Path, text: str, line: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tomlchunks, "MIN_BYTES", 0)
    monkeypatch.setattr(tomlchunks, "PER_PIECE", 1)
    with pytest.raises(rtoml.TomlParsingError):
        tomlchunks.loads(text)
    path = tmp_path / "watchdesk.toml"
    path.write_bytes(text.encode())
    problems: list[object] = []
    assert tomlcheck.read_toml(path, problems) is None  # type: ignore[arg-type]
    [problem] = problems
    assert problem.line == line, problem  # type: ignore[attr-defined]


def test_random_feed_lists_read_in_pieces_as_tomllib_reads_them() -> None:
    rng = random.Random(1504)
    keys = ['url = "https://x.example/{n}"', "name = 'Feed {n}'", 'tags = ["a{n}",\n "b"]', "enabled = false"]
    split = 0
    for _ in range(200):
        lines = ["[watchdesk]", 'database = "w.db"', rng.choice(["", "[polling]\ninterval = '5m'"])]
        for n in range(rng.randint(1, 8)):
            lines.append(rng.choice(["[[feed]]", "  [[feed]] # f", "[[ feed ]]", "[[feed]]", "[health]"]))
            lines += [k.format(n=n) for k in rng.sample(keys, rng.randint(0, 4))]
            lines.append(rng.choice(["", "# note", "\n"]))
        text = "\n".join(lines)
        try:
            expected = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            with pytest.raises(rtoml.TomlParsingError):
                tomlchunks.loads(text, min_bytes=0, per_piece=2)
            continue
        got, calls = _pieces(text)
        assert got == expected, text
        split += calls > 1
    assert split > 50


def test_a_big_config_read_in_pieces_loads_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path / "a", 300)
    whole = load_config(config, check_secrets=False)
    monkeypatch.setattr(tomlchunks, "MIN_BYTES", 0)
    monkeypatch.setattr(tomlchunks, "PER_PIECE", 7)
    assert load_config(config, check_secrets=False).feeds == whole.feeds and len(whole.feeds) == 302
    write(tmp_path / "bad", 300, bad_feed=250)
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "bad" / "watchdesk.toml", check_secrets=False)
    assert [str(p).split(": ", 1)[0] for p in e.value.problems] == [
        f"{tmp_path / 'bad' / 'feeds' / 'all.toml'}:1004"
    ]
