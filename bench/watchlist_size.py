"""What a big watchlist costs `watchdesk check` and `watchdesk poll --once`. Prints figures.

    python bench/watchlist_size.py                       # 10,000, 100,000, 250,000 and 800,000 terms
    python bench/watchlist_size.py --terms 50000 200000 --per-watchlist 50000
    python bench/watchlist_size.py --src /tmp/before     # another checkout's src/ (e.g. HEAD)

For each size it writes a temporary config (no feeds, the console channel) and
watchlists of that many single-word queries in all (invented 9-letter words, one per
line; 800,000 make 12 MB), `--per-watchlist` to a file (default: all in one file), then
runs the real commands as child processes and reports each one's wall time, exit status
and peak RSS (ru_maxrss of that child, from wait4; a child's counts what its parent held
when it forked, so this script holds little):

  check   `watchdesk check`: reads the TOML, checks every query (what an edit costs);
  poll    `watchdesk poll --once` with no feeds: loads and checks the config, compiles the
          matcher (what the daemon does at start and on every watchlist reload), polls nothing.

A size over the watchlist limits (docs/watchlists.md) is refused by both, with the
problem printed; its figures are then those of refusing it. `--src` runs the commands
with another source tree first on PYTHONPATH, for before/after figures: e.g.
`git archive HEAD src | tar -x -C /tmp/before` (the dependencies are this venv's).
"""

from __future__ import annotations

import argparse
import os
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def word(i: int) -> str:
    """The i-th invented word: 9 letters, distinct for distinct i (a bijection of 26**9)."""
    n = (i * 3_355_616_398_729 + 12_345) % 26**9
    return "".join(string.ascii_lowercase[n // 26**k % 26] for k in range(9))


def write_config(folder: Path, terms: int, per_file: int) -> Path:
    """Written a line at a time: this process stays small, and each child's peak RSS
    (which counts what the parent held when it forked) is the child's own."""
    (folder / "watchlists").mkdir()
    for k in range(0, terms, per_file):
        with (folder / "watchlists" / f"big{k // per_file:03}.toml").open("w") as f:
            f.write("match = [\n")
            for i in range(k, min(terms, k + per_file)):
                f.write(f"  '{word(i)}',\n")
            f.write("]\n")
    config = folder / "watchdesk.toml"
    config.write_text('[watchdesk]\ndatabase = "watchdesk.db"\nwatchlists = "watchlists/"\n')
    return config


def run(args: list[str], env: dict[str, str]) -> tuple[float, int, int, str]:
    """Wall seconds, exit status, peak RSS in MB, and the last line of its output."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    last = output.strip().splitlines()[-1] if output.strip() else ""
    return wall, proc.returncode, usage.ru_maxrss // 1024, last


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--terms", type=int, nargs="+", default=[10_000, 100_000, 250_000, 800_000])
    parser.add_argument("--per-watchlist", type=int, help="terms per watchlist file (default: all in one)")
    parser.add_argument("--src", type=Path, help="a source tree (its src/) to run instead of this one's")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = str(args.src.resolve() / "src")
    print(
        f"{'terms':>9} {'files':>5} {'MB':>6} {'command':>8} {'s':>7} {'exit':>5} {'peak MB':>8}  last line"
    )
    for terms in args.terms:
        with tempfile.TemporaryDirectory() as tmp:
            config = write_config(Path(tmp), terms, args.per_watchlist or terms)
            files = list((Path(tmp) / "watchlists").iterdir())
            size = sum(f.stat().st_size for f in files) / 1e6
            for name, command in (("check", ["check"]), ("poll", ["poll", "--once"])):
                argv = [sys.executable, "-m", "watchdesk", "--config", str(config), *command]
                wall, status, peak, last = run(argv, env)
                print(
                    f"{terms:>9,} {len(files):>5} {size:>6.1f} {name:>8} {wall:>7.1f} {status:>5} {peak:>8,}  {last[:80]}"
                )


if __name__ == "__main__":
    main()
