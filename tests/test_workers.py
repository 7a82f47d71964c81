"""The worker pool's deadlines count from a task's start, not from when it was queued,
and a pool killed for one task's overrun fails that task only (issue 15)."""

from __future__ import annotations

import asyncio
import time

import pytest

from watchdesk.ingest import CpuPool
from watchdesk.ingest.workers import WorkerFailed


def test_a_burst_longer_than_the_deadline_completes() -> None:
    """100 tasks of 50 ms on 2 workers take about 2.5 s in all: over twice any one task's
    deadline of 1 s (20 times what each needs once it runs)."""
    pool = CpuPool(workers=2)

    async def burst() -> list[None]:
        await asyncio.gather(*(pool.run(time.sleep, 0.01, timeout=60) for _ in range(2)))  # workers up
        return await asyncio.gather(*(pool.run(time.sleep, 0.05, timeout=1.0) for _ in range(100)))

    try:
        assert asyncio.run(burst()) == [None] * 100
    finally:
        pool.close()


def test_an_overrun_fails_only_its_own_task() -> None:
    pool = CpuPool(workers=2)

    async def mixed() -> list[object]:
        slow = pool.run(time.sleep, 30, timeout=0.3)
        quick = [pool.run(time.sleep, 0.01, timeout=5) for _ in range(20)]
        return await asyncio.gather(slow, *quick, return_exceptions=True)

    try:
        slow, *quick = asyncio.run(mixed())
    finally:
        pool.close()
    assert isinstance(slow, WorkerFailed)
    assert quick == [None] * 20  # started again on the fresh pool, or run after it


def test_a_cancelled_caller_is_still_cancelled() -> None:
    pool = CpuPool(workers=1)

    async def cancel() -> None:
        task = asyncio.create_task(pool.run(time.sleep, 5, timeout=10))
        await asyncio.sleep(0.2)
        task.cancel()
        await task

    try:
        with pytest.raises(asyncio.CancelledError):
            asyncio.run(cancel())
    finally:
        pool._kill(pool._generation)  # the sleeping worker need not run out its 5 s
        pool.close()


def test_warm_starts_every_worker_before_the_first_task() -> None:
    """The daemon warms the pool from a thread at start: the first page then finds its
    workers running (starting them on the loop stalled it 100-200 ms)."""
    pool = CpuPool(workers=2)
    try:
        pool.warm()
        processes = list(getattr(pool._executor(), "_processes", {}).values())
        assert len(processes) == 2 and all(p.is_alive() for p in processes)
        assert asyncio.run(pool.run(pow, 2, 10, timeout=10)) == 1024
    finally:
        pool.close()
