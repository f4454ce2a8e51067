"""The PostgreSQL pool's connection check, paid only when a connection may have gone stale.

Django's pool with CONN_HEALTH_CHECKS runs psycopg_pool's check (an empty query, one round trip)
on every checkout, and under ASGI a request checks a connection out for each thread hop: two or
three extra round trips per chat turn. This check pings only a connection that sat idle in the
pool for DB_POOL_CHECK_IDLE_SECONDS or more (a server restart or an idle timeout shows there); a
connection in steady use is handed out as is. A connection that breaks anyway fails its request
once and is discarded by the pool when it comes back broken.
"""

from __future__ import annotations

import time
import weakref

_last_used: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def pool_check_when_idle(conn) -> None:
    """psycopg_pool `check` callback: ping (and so raise for) a connection that was idle in the pool
    for DB_POOL_CHECK_IDLE_SECONDS or more, or never used yet; hand out any other one as is."""
    from django.conf import settings

    returned = _last_used.get(conn)
    if returned is not None and time.monotonic() - returned < getattr(settings, "DB_POOL_CHECK_IDLE_SECONDS", 10.0):
        return
    conn.execute("")


def pool_connection_returned(conn) -> None:
    """psycopg_pool `reset` callback (settings OPTIONS.pool.reset): when the connection was last used."""
    _last_used[conn] = time.monotonic()


def pool_check_install() -> None:
    """Give the default database's psycopg pool (when pooled) the check above, once it exists.

    Django builds the pool lazily with `check` from CONN_HEALTH_CHECKS (off for the pool in
    settings); psycopg_pool has no setter, so the attribute is set on the first connection."""
    from django.db.backends.signals import connection_created

    connection_created.connect(_on_connection_created, dispatch_uid="mejai.dbpool.check")


def _on_connection_created(sender, connection, **kwargs) -> None:
    if connection.vendor != "postgresql" or not connection.settings_dict.get("OPTIONS", {}).get("pool"):
        return
    pool = connection.pool
    if pool is not None and getattr(pool, "_check", None) is None:
        pool._check = pool_check_when_idle
