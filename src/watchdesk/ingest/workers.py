"""A bounded pool of worker processes for CPU-heavy stages (feedparser, trafilatura).

Work runs off the event loop. A task that passes its deadline gets the pool's
processes killed and a fresh pool started: a pathological input costs a worker,
never the daemon. Each worker may also run with an address-space limit.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")


class WorkerFailed(Exception):
    """The task passed its deadline or its worker died (e.g. over its memory limit)."""


def _limit_memory(max_bytes: int | None) -> None:
    if max_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))


class CpuPool:
    def __init__(self, workers: int | None = None, *, memory_limit: int | None = None):
        self._workers = workers or max(1, min(2, os.cpu_count() or 1))
        self._memory_limit = memory_limit
        self._pool: ProcessPoolExecutor | None = None
        self._generation = 0  # bumped each time the pool is killed

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self._workers,
                mp_context=multiprocessing.get_context("forkserver"),
                initializer=_limit_memory,
                initargs=(self._memory_limit,),
            )
        return self._pool

    async def run(self, fn: Callable[..., T], *args: Any, timeout: float, **kwargs: Any) -> T:
        """fn(*args, **kwargs) in a worker, within `timeout` seconds.

        Killing the pool for one task's overrun also ends the tasks running beside it;
        those are not at fault, so each is started again once on the fresh pool.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for attempt in (1, 2):
            executor = self._executor()
            generation = self._generation
            future = loop.run_in_executor(executor, partial(fn, *args, **kwargs))
            try:
                async with asyncio.timeout_at(deadline):
                    return await future
            except TimeoutError:
                self._kill(generation)
                raise WorkerFailed(f"took longer than {timeout:g}s") from None
            except BrokenProcessPool:
                killed_for_another = self._generation != generation
                self._kill(generation)
                if killed_for_another and attempt == 1:
                    continue
                raise WorkerFailed("the worker died (out of memory or crashed)") from None
            except MemoryError:
                raise WorkerFailed("the worker ran out of memory") from None
        raise AssertionError("unreachable")

    def _kill(self, generation: int) -> None:
        """Kill the pool of `generation` (if it is still the current one) and its processes."""
        if generation != self._generation:
            return
        pool, self._pool = self._pool, None
        self._generation += 1
        if pool is None:
            return
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
