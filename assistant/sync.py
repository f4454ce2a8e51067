"""The assistant's database work, on a bounded thread pool of its own instead of the single sync thread.

Channels opens no `ThreadSensitiveContext` per socket, so `database_sync_to_async` (thread-sensitive)
runs every socket's work on *one* thread per process, behind every other socket's — including the
`AuthMiddleware` look-up that each opening handshake waits for. With a thousand sockets
authenticating at once that queue held handshakes past daphne's 5 s limit (they were dropped with
no HTTP answer), and every `chat` waited behind other sockets' pings and connects.

    await db(fn)(*args, **kwargs)

runs `fn` on the `assistant-db` pool (`ASSISTANT_DB_THREADS`, 8): no transaction or connection
state spans two calls (each call is its own short unit of work), and the connection goes back to the
pool after each call, as with `database_sync_to_async`.
"""

from __future__ import annotations

from channels.db import DatabaseSyncToAsync

from assistant import conf
from mejai.concurrency import executor

POOL_NAME = "assistant-db"


def db(func):
    """`func` as a coroutine function run on the assistant's database pool."""
    return DatabaseSyncToAsync(func, thread_sensitive=False, executor=executor(POOL_NAME, conf.db_threads()))
