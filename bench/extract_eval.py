"""Extraction accuracy and speed on ../shared/corpus/articles: watchdesk vs stock trafilatura.

    python bench/extract_eval.py [--corpus PATH] [--rounds N]

For each source group and in total: `with` snippets found / total, `without` snippets
absent / total, and ms per page (p50, p95) for
  - watchdesk: extract_page() in the bounded worker (a separate process with a deadline
    and an address-space limit), timed end to end from the event loop, IPC included;
  - stock: trafilatura.extract(page) with its defaults, in this process.
Scoring follows the corpus MANIFEST: whitespace collapsed on both sides, substring test.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import re
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import trafilatura

from watchdesk.ingest.extract import extract_page
from watchdesk.ingest.workers import CpuPool

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
_SPACE = re.compile(r"\s+")


def norm(text: str) -> str:
    return _SPACE.sub(" ", text or "").strip()


def load_pages(corpus: Path) -> list[tuple[str, dict[str, object], bytes]]:
    pages = []
    for meta in sorted((corpus / "articles").glob("*/*.json")):
        if meta.name == "INDEX.json":
            continue
        truth = json.loads(meta.read_text())
        file = meta.parent / truth["file"]
        raw = file.read_bytes()
        if file.suffix == ".gz":
            raw = gzip.decompress(raw)
        pages.append((meta.parent.name, truth, raw))
    return pages


class Score:
    def __init__(self) -> None:
        self.found = self.with_total = self.absent = self.without_total = 0
        self.ms: list[float] = []

    def add(self, truth: dict[str, object], text: str, ms: float) -> None:
        body = norm(text)
        for snippet in truth.get("with", []) or []:  # type: ignore[union-attr]
            self.with_total += 1
            self.found += norm(str(snippet)) in body
        for snippet in truth.get("without", []) or []:  # type: ignore[union-attr]
            self.without_total += 1
            self.absent += norm(str(snippet)) not in body
        self.ms.append(ms)

    def row(self, name: str) -> str:
        ms = sorted(self.ms)
        p50 = statistics.median(ms)
        p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
        return (
            f"{name:28} {self.found:>4}/{self.with_total:<4} {self.absent:>4}/{self.without_total:<4} "
            f"{p50:8.1f} {p95:8.1f}"
        )


async def run_watchdesk(pages: list[tuple[str, dict[str, object], bytes]], rounds: int) -> dict[str, Score]:
    pool = CpuPool(workers=1, memory_limit=1536 * 2**20)
    scores: dict[str, Score] = defaultdict(Score)
    try:
        await pool.run(extract_page, b"<html><body><p>warm up</p></body></html>", timeout=60)
        for group, truth, raw in pages:
            best = float("inf")
            text = ""
            for _ in range(rounds):
                start = time.perf_counter()
                result = await pool.run(extract_page, raw, truth.get("url"), timeout=30)
                best = min(best, (time.perf_counter() - start) * 1000)
                text = result.text
            scores[group].add(truth, text, best)
            scores["TOTAL"].add(truth, text, best)
    finally:
        pool.close()
    return scores


def run_stock(pages: list[tuple[str, dict[str, object], bytes]], rounds: int) -> dict[str, Score]:
    scores: dict[str, Score] = defaultdict(Score)
    extract: Callable[..., str | None] = trafilatura.extract
    for group, truth, raw in pages:
        best = float("inf")
        text = ""
        for _ in range(rounds):
            start = time.perf_counter()
            text = extract(raw) or ""
            best = min(best, (time.perf_counter() - start) * 1000)
        scores[group].add(truth, text, best)
        scores["TOTAL"].add(truth, text, best)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--rounds", type=int, default=3, help="time each page N times, keep the best")
    args = parser.parse_args()
    if not (args.corpus / "articles").is_dir():
        sys.exit(f"corpus not found at {args.corpus} (pass --corpus)")
    pages = load_pages(args.corpus)
    stock = run_stock(pages, args.rounds)
    ours = asyncio.run(run_watchdesk(pages, args.rounds))
    print(f"{len(pages)} pages, best of {args.rounds} timings per page")
    print(f"{'extractor / group':28} {'with':>9} {'without':>9} {'p50 ms':>8} {'p95 ms':>8}")
    for group in sorted(k for k in stock if k != "TOTAL") + ["TOTAL"]:
        print(ours[group].row(f"watchdesk  {group}"))
        print(stock[group].row(f"stock      {group}"))
    ratio = statistics.median(ours["TOTAL"].ms) / statistics.median(stock["TOTAL"].ms)
    print(f"watchdesk / stock, median ms per page: {ratio:.2f}x")


if __name__ == "__main__":
    main()
