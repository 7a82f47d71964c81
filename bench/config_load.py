"""What loading a big config costs (issue 15): `load_config` on many feeds and watchlists.

    python bench/config_load.py                          # 100,000 feeds, 1,000 watchlist files
    python bench/config_load.py --feeds 20000 --watchlists 200
    python bench/config_load.py --feeds-files 10         # the feeds split over 10 feeds files
    python bench/config_load.py --profile 25             # cProfile: the 25 costliest functions
    python bench/config_load.py --src /tmp/before/src    # another checkout's src/ (e.g. HEAD)

It writes a temporary config: `--feeds` [[feed]] tables (url, name, two tags each; in
watchdesk.toml, or spread over `--feeds-files` files of [watchdesk] feeds), and
`--watchlists` watchlist files of a few queries each, every one scoped to a few feed names
and tags (`feeds = [...]`). Then a child process (this script with --load) runs
`load_config` once and reports its wall time, its CPU time (the figure to compare on a
busy machine) and peak RSS (ru_maxrss, of a process that
only imported watchdesk and loaded the config), and the peak of Python allocations during
the load when `--tracemalloc` is given (which slows the load several times: its time is
then not the figure to quote). The target: 100,000 feeds and 1,000 watchlists in <= 3 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TAGS = ("local", "federal", "health", "police", "courts", "darknet", "wire", "state")


def write(folder: Path, feeds: int, watchlists: int, feeds_files: int) -> Path:
    tables = []
    for i in range(feeds):
        tables.append(
            f'[[feed]]\nurl = "https://site{i}.example.org/feed.xml"\nname = "Feed {i}"\n'
            f'tags = ["{TAGS[i % len(TAGS)]}", "region{i % 50}"]\n'
        )
    head = '[watchdesk]\ndatabase = "watchdesk.db"\nwatchlists = "watchlists/"\n'
    if feeds_files:
        head += 'feeds = ["feeds/*.toml"]\n'
        (folder / "feeds").mkdir()
        per = -(-len(tables) // feeds_files)
        for n in range(feeds_files):
            part = tables[n * per : (n + 1) * per]
            (folder / "feeds" / f"part{n:04d}.toml").write_text("\n".join(part))
        tables = []
    (folder / "watchdesk.toml").write_text(head + '\n[polling]\ninterval = "15m"\n\n' + "\n".join(tables))
    wl = folder / "watchlists"
    wl.mkdir()
    for n in range(watchlists):
        scope = [f"Feed {(n * 7) % max(feeds, 1)}", TAGS[n % len(TAGS)], f"REGION{n % 50}"]
        (wl / f"topic{n:04d}.toml").write_text(
            f'description = "topic {n}"\n'
            f"match = ['fentanyl{n}', '\"dark web\" opioid{n}*', 'seizure{n} AND police']\n"
            f"exclude = ['recall{n}']\n"
            'notify = ["console"]\n'
            "feeds = [" + ", ".join(f'"{s}"' for s in scope) + "]\n"
        )
    return folder / "watchdesk.toml"


def rss_now_mib() -> float:
    """This process's resident size now (VmRSS; 0 where /proc has none)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def load(config: Path, profile: int, trace: bool) -> None:
    """In the child: load once, print the figures."""
    from watchdesk.config import load_config
    from watchdesk.errors import ConfigError

    before = rss_now_mib()  # the imports

    def once() -> Any:
        try:
            return load_config(config, check_secrets=False)
        except ConfigError as e:  # the figures are of a valid config
            sys.exit("\n".join(str(p) for p in e.problems[:5]))

    if trace:
        import tracemalloc

        tracemalloc.start()
    if profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        peak = ""
        start = time.perf_counter()
        prof.enable()
        loaded = once()
        prof.disable()
        took = time.perf_counter() - start
        pstats.Stats(prof).sort_stats("cumulative").print_stats(profile)
        pstats.Stats(prof).sort_stats("tottime").print_stats(profile)
    else:
        start, cpu = time.perf_counter(), time.process_time()
        loaded = once()
        took = time.perf_counter() - start
        peak = f", CPU {time.process_time() - cpu:.2f} s"
    if trace:
        import tracemalloc

        peak += f", Python allocations peak {tracemalloc.get_traced_memory()[1] / 2**20:.0f} MiB"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(
        f"load_config: {took:.2f} s for {len(loaded.feeds):,} feeds and {len(loaded.watchlists):,} "
        f"watchlists; peak RSS {rss:.0f} MiB{peak}; RSS {before:.0f} MiB before the load (imports), "
        f"{rss_now_mib():.0f} MiB after it (the config kept, and what the allocators did not give back)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=100_000)
    parser.add_argument("--watchlists", type=int, default=1_000)
    parser.add_argument("--feeds-files", type=int, default=0, help="spread the feeds over N feeds files")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print cProfile's top N")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="also the peak of Python allocations (its traces inflate the RSS figures)",
    )
    parser.add_argument("--src", type=Path, help="a src/ folder to import watchdesk from")
    parser.add_argument("--load", type=Path, help=argparse.SUPPRESS)  # the child's part
    args = parser.parse_args()
    if args.load:
        load(args.load, args.profile, args.tracemalloc)
        return
    with tempfile.TemporaryDirectory(prefix="watchdesk-bench-") as tmp:
        start = time.perf_counter()
        config = write(Path(tmp), args.feeds, args.watchlists, args.feeds_files)
        size = sum(f.stat().st_size for f in Path(tmp).rglob("*.toml"))
        print(f"wrote {size / 2**20:.1f} MiB of TOML in {time.perf_counter() - start:.1f} s")
        env = dict(os.environ)
        if args.src:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(args.src), env.get("PYTHONPATH")]))
        child = [sys.executable, __file__, "--load", str(config), "--profile", str(args.profile)]
        subprocess.run(child + (["--tracemalloc"] if args.tracemalloc else []), env=env, check=True)


if __name__ == "__main__":
    main()
