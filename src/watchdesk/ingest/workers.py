"""A bounded pool of worker processes for CPU-heavy stages (feedparser, trafilatura).

Work runs off the event loop. A task that passes its deadline gets the pool's
processes killed and a fresh pool started: a pathological input costs a worker,
never the daemon. Each worker may also run with an address-space limit.

Workers end with the daemon, however it ends (SIGKILL included), so a killed daemon
never leaves processes behind. A forkserver worker's parent is the forkserver, not the
daemon, and the forkserver stays up while any process holds its "alive" pipe, which every
worker inherits: so each worker gives its copy back, and the forkserver exits as soon as
the daemon is gone. Then the kernel kills each worker with its parent (PR_SET_PDEATHSIG,
Linux). A thread in each worker also waits on multiprocessing's sentinel of the daemon
itself and exits the worker when it is gone: for a daemon that died before the worker
was set up, and where PR_SET_PDEATHSIG does not exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import multiprocessing.forkserver
import os
import resource
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")


class WorkerFailed(Exception):
    """The task passed its deadline or its worker died (e.g. over its memory limit)."""


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _init_worker(max_bytes: int | None) -> None:
    """The initializer of every worker: end with the daemon, then limit memory."""
    _die_with_parent()
    _release_forkserver()
    _watch_daemon()
    _limit_memory(max_bytes)


def _die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux; else nothing)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _release_forkserver() -> None:
    """Close this worker's copy of the write end of the forkserver's "alive" pipe.

    Every process the forkserver forks inherits it (so that it could use the forkserver in
    turn), and the forkserver only exits when no process holds it any more: with the
    workers holding it, a killed daemon left the forkserver, and so the workers (its
    children) running. A worker never starts processes, so it lets go of it."""
    server = getattr(multiprocessing.forkserver, "_forkserver", None)
    fd = getattr(server, "_forkserver_alive_fd", None)
    if isinstance(fd, int):
        with contextlib.suppress(OSError):
            os.close(fd)
        setattr(server, "_forkserver_alive_fd", None)  # noqa: B010  (not in typeshed)


def _watch_daemon() -> None:
    """Exit this worker once the process that started it (the daemon) is gone.

    multiprocessing hands every child a sentinel of its parent process: a pipe whose write
    end only that process holds, so it reads as ready the moment it dies, SIGKILL
    included. For a forkserver worker this is the daemon, not the forkserver."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # returns when the sentinel is ready: the daemon is gone
        os._exit(1)

    threading.Thread(target=watch, name="watchdesk-daemon-watch", daemon=True).start()


def _limit_memory(max_bytes: int | None) -> None:
    if max_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))


def _ready() -> None:
    """What warm() runs in each worker: nothing (the worker's start is the point)."""


class CpuPool:
    def __init__(self, workers: int | None = None, *, memory_limit: int | None = None):
        self._workers = workers or max(1, min(2, os.cpu_count() or 1))
        self._memory_limit = memory_limit
        self._pool: ProcessPoolExecutor | None = None
        self._generation = 0  # bumped each time the pool is killed
        self._turn_loop: asyncio.AbstractEventLoop | None = None
        self._turn = asyncio.Semaphore(self._workers)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self._workers,
                mp_context=multiprocessing.get_context("forkserver"),
                initializer=_init_worker,
                initargs=(self._memory_limit,),
            )
        return self._pool

    def warm(self, timeout: float = 60.0) -> None:
        """Start the worker processes now. It blocks (the forkserver's first start takes
        100-200 ms): the daemon calls it from a thread at start, so the first page to parse
        does not stall the event loop starting them."""
        executor = self._executor()
        for future in [executor.submit(_ready) for _ in range(self._workers)]:
            future.result(timeout=timeout)

    async def run(self, fn: Callable[..., T], *args: Any, timeout: float, **kwargs: Any) -> T:
        """fn(*args, **kwargs) in a worker, within `timeout` seconds of its start.

        Tasks wait for a free worker here, not in the executor's queue: the deadline
        counts from when the task starts, so a burst of 10,000 pages in one poll waits its
        turn instead of passing its deadline in the queue. Killing the pool for one task's
        overrun also ends the tasks running beside it; those are not at fault, so each is
        started again once on the fresh pool.
        """
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            async with self._turns():
                executor = self._executor()
                generation = self._generation
                future = loop.run_in_executor(executor, partial(fn, *args, **kwargs))
                try:
                    async with asyncio.timeout(timeout):
                        return await future
                except TimeoutError:
                    self._kill(generation)
                    raise WorkerFailed(f"took longer than {timeout:g}s") from None
                except (BrokenProcessPool, asyncio.CancelledError) as e:
                    task = asyncio.current_task()
                    if isinstance(e, asyncio.CancelledError) and task is not None and task.cancelling():
                        raise  # the caller is being cancelled: not the pool's doing
                    # The pool died or was killed (its futures cancelled) under this task.
                    killed_for_another = self._generation != generation
                    self._kill(generation)
                    if killed_for_another and attempt == 1:
                        continue
                    raise WorkerFailed("the worker died (out of memory or crashed)") from None
                except MemoryError:
                    raise WorkerFailed("the worker ran out of memory") from None
        raise AssertionError("unreachable")

    def _turns(self) -> asyncio.Semaphore:
        """One turn per worker, made in the running loop (a pool may outlive one loop)."""
        loop = asyncio.get_running_loop()
        if self._turn_loop is not loop:
            self._turn_loop, self._turn = loop, asyncio.Semaphore(self._workers)
        return self._turn

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
