"""Shared thread pools and database-connection release for code that runs off the request path.

One helper instead of a private copy per app: `executor(name, max_workers)` gives the process's
bounded pool of that name (created on first use, threads named after it), and `db_release()`
hands the calling thread's database connection back before a long wait.
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor

_executors: dict[str, ThreadPoolExecutor] = {}
_lock = threading.Lock()


# Pools of background bookkeeping (in-process jobs, last-used stamps): a backlog there is not load on
# the request path, so health does not call the process degraded for it.
_background: set[str] = set()


def executor(name: str, max_workers: int, *, background: bool = False) -> ThreadPoolExecutor:
    """The process-wide pool called `name`; `max_workers` applies when it is first created.
    `background`: its work is bookkeeping off the request path (see executor_backlogs)."""
    with _lock:
        if background:
            _background.add(name)
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


def executor_backlogs(*, background: bool = False) -> dict[str, int]:
    """Jobs waiting for a thread, per named pool on the request path (for health: a backlog means the
    pool is saturated); `background=True` adds the bookkeeping pools."""
    with _lock:
        pools = {name: pool for name, pool in _executors.items() if background or name not in _background}
    return {name: pool._work_queue.qsize() for name, pool in pools.items()}


# --- a request's thread-sensitive work without a thread of its own ---------------------------

class SerialLane(Executor):
    """Runs the calls submitted to it one at a time, in order, on a shared bounded pool.

    It stands in for the one-thread executor asgiref gives each request's ThreadSensitiveContext
    (see `request_thread_release`): the calls stay serial, as thread-sensitive code expects, but no
    thread is held while the lane is idle. Consecutive calls may run on different pool threads, so
    nothing may carry thread-local state from one call to the next (a transaction, a cursor): the
    services on the streaming paths do their database work inside one call each. Database
    connections belong to the pool's threads (`DatabaseWorkers`), not to lanes.
    """

    def __init__(self, pool):
        self._pool = pool  # anything with submit(fn): DatabaseWorkers, a ThreadPoolExecutor
        self._queue: deque = deque()
        self._lock = threading.Lock()
        self._running = False

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        with self._lock:
            self._queue.append((future, fn, args, kwargs))
            if self._running:
                return future
            self._running = True
        self._pool.submit(self._drain)
        return future

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._running = False
                    break
                future, fn, args, kwargs = self._queue.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                future.set_exception(exc)
            else:
                future.set_result(result)
            _connection_drop_if_broken()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to stop: the threads are the shared pool's."""


def _connection_drop_if_broken() -> None:
    """Close this thread's connection after a database error left it unusable (the next call reconnects)."""
    from django.db import connection

    if connection.connection is not None and connection.errors_occurred and not connection.in_atomic_block:
        try:
            usable = connection.is_usable()
        except Exception:  # noqa: BLE001
            usable = False
        if usable:
            connection.errors_occurred = False
        else:
            connection.close()


class DatabaseWorkers:
    """A fixed number of threads for short database calls that keep their connection while there is
    work and give it back after `idle_seconds` without any.

    Giving the connection back after every call would cost a pool checkout, and with
    CONN_HEALTH_CHECKS a round trip to PostgreSQL, per call (several per streamed turn); keeping it
    for ever would pin pool slots. So at most `size` connections are held, only while busy.
    """

    def __init__(self, name: str, size: int, *, idle_seconds: float = 1.0):
        import queue

        self.name = name
        self.size = max(1, size)
        self.idle_seconds = idle_seconds
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._empty = queue.Empty
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()

    def submit(self, fn) -> None:
        self._queue.put(fn)
        with self._lock:
            if self._idle == 0 and len(self._threads) < self.size:
                thread = threading.Thread(target=self._work, name=f"{self.name}_{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                self._idle += 1
                thread.start()

    def _work(self) -> None:
        while True:
            try:
                fn = self._queue.get(timeout=self.idle_seconds)
            except self._empty:
                try:
                    db_release()
                except Exception:  # noqa: BLE001 - a broken connection is closed anyway
                    pass
                continue
            with self._lock:
                self._idle -= 1
            try:
                fn()
            except BaseException:  # noqa: BLE001 - SerialLane hands errors to its futures
                pass
            finally:
                with self._lock:
                    self._idle += 1

    def threads(self) -> int:
        return len(self._threads)


_stream_db: DatabaseWorkers | None = None


def stream_db_pool() -> DatabaseWorkers:
    """The workers that run the database calls of open streams and background answers
    (STREAM_DB_THREADS threads, connections held only while busy)."""
    global _stream_db
    if _stream_db is None:
        from django.conf import settings

        with _lock:
            if _stream_db is None:
                _stream_db = DatabaseWorkers("stream-db", int(getattr(settings, "STREAM_DB_THREADS", 8)))
    return _stream_db


def request_thread_release() -> bool:
    """Give back the thread Django holds for this request while its response streams.

    Django's ASGIHandler runs each request inside asgiref's ThreadSensitiveContext, which gets a
    one-thread executor of its own at the first thread-sensitive sync_to_async (the sync middleware
    chain, here always) and keeps it until the response has been sent in full: one idle thread per
    open stream. Called once the streaming body starts (the middleware and the view are done), this
    swaps that executor for a `SerialLane` on `stream_db_pool()` and lets its thread end. Later
    thread-sensitive calls of the stream (finishing the turn, replaying history) stay serial on the
    shared pool. Returns whether anything was swapped: nothing happens under a sync caller
    (async_to_sync: tests, the WSGI-style test client), whose calls must stay on its own thread.
    """
    from asgiref.sync import AsyncToSync, SyncToAsync

    if getattr(AsyncToSync.executors, "current", None) is not None:
        return False
    context = SyncToAsync.thread_sensitive_context.get(None)
    if context is None or getattr(context, "_executor", None) is not None or getattr(context, "_exited", False):
        return False  # no request context, or one whose executor its owner chose
    held = SyncToAsync.context_to_thread_executor.get(context)
    if isinstance(held, SerialLane):
        return False
    SyncToAsync.context_to_thread_executor[context] = SerialLane(stream_db_pool())
    if held is not None:
        # The connection that thread used (the view's database work) goes back to the pool first:
        # a thread that ends holding a pooled connection spends it for good.
        held.submit(db_release)
        held.shutdown(wait=False)  # its thread ends once idle (it is: the response is out of the view)
    return True
