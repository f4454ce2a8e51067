"""Shared thread pools and database-connection release for code that runs off the request path.

One helper instead of a private copy per app: `executor(name, max_workers)` gives the process's
bounded pool of that name (created on first use, threads named after it), and `db_release()`
hands the calling thread's database connection back before a long wait.
"""

from __future__ import annotations

import functools
import threading
from concurrent.futures import ThreadPoolExecutor

_executors: dict[str, ThreadPoolExecutor] = {}
_lock = threading.Lock()


def executor(name: str, max_workers: int) -> ThreadPoolExecutor:
    """The process-wide pool called `name`; `max_workers` applies when it is first created."""
    with _lock:
        pool = _executors.get(name)
        if pool is None:
            pool = _executors[name] = ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix=name)
        return pool


def db_release() -> None:
    """Give this thread's database connection back (to the pool) now, not when the thread ends.

    A stream or a model call can last minutes; a connection held through it caps what a process
    serves at the pool's size. Inside a transaction (tests, or a caller's atomic block) nothing is
    closed: closing would end the transaction.
    """
    from django.db import connection

    if not connection.in_atomic_block:
        connection.close()


def released(func):
    """`func`, then db_release() whatever happens: for database work on a path where nothing after
    it is sure to run — storing what a request had when its client left. There the awaiting
    coroutine may be cancelled again (the server giving up on the request) while the thread still
    runs `func`; a connection it opened would stay checked out of the pool after the request's
    end-of-request cleanup, and when its context is dropped the pool slot is lost for good."""

    @functools.wraps(func)
    def run(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        finally:
            db_release()

    return run


def executor_backlog(name: str) -> int:
    """Jobs waiting for a thread in the pool called `name` (0 when it was never created)."""
    with _lock:
        pool = _executors.get(name)
    return pool._work_queue.qsize() if pool is not None else 0


def executor_backlogs() -> dict[str, int]:
    """Jobs waiting for a thread, per named pool (for health: a backlog means the pool is saturated)."""
    with _lock:
        pools = dict(_executors)
    return {name: pool._work_queue.qsize() for name, pool in pools.items()}
