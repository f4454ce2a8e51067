"""Per-process caches of what every turn reads and rarely changes, invalidated across processes.

What is cached (see docs/runtime.md "The hot path"):

    api key      sha256(key) -> (ApiKey with its Organization)      runtime.auth.api_key_principal
    agent        (organization id, name or "")  -> Agent             runtime.selectors.agent_for_org
    agent by id  agent id -> Agent                                  runtime.turnstore (a session's agent)
    prompt       template id -> active PromptVersion or None         runtime.context

Every entry belongs to one organization. A change to anything of an organization (key revoke,
prompt create/activate/rollback, agent edit/deactivate, organization edit) calls
`organization_changed(org_id)` once the transaction commits: the entries of that organization are
dropped in this process at once and, when REDIS_URL is set, a message on the Redis pub/sub channel
drops them in every other process (delivered in milliseconds).

Safety rules:
- An entry lives at most HOT_CACHE_TTL_SECONDS (settings, 60 by default) even without a message.
- With REDIS_URL set, the cache is only used while this process's listener is subscribed; while it
  is not (starting, Redis down, reconnecting), every read goes to the database. Without REDIS_URL
  (the embedded single-process default) invalidation is local.
- A database read that raced with an invalidation is not stored (a generation counter), so a
  revoke cannot be overwritten by a stale read that finished after it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

_MISSING = object()


class HotCache:
    """One process's cache, with its own invalidation listener (tests make two to play two processes)."""

    def __init__(self, *, redis_url: str | None, channel: str, ttl: float):
        self.redis_url = redis_url or None
        self.channel = channel
        self.ttl = ttl
        self._entries: dict[tuple, tuple[float, int | None, Any]] = {}  # key -> (expires, org id, value)
        self._lock = threading.Lock()
        self._generation = 0
        self._listening = threading.Event()
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        self._pubsub = None
        self._publisher = None
        self.invalidated = threading.Condition()  # notified on every invalidation (tests wait on it)
        self.invalidations = 0
        self.origin = uuid.uuid4().hex  # this cache's own messages come back to it: skipped

    # --- reading -------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Whether entries may be served: always without Redis, only while subscribed with it."""
        if self.redis_url is None:
            return True
        self._listener_ensure()
        return self._listening.is_set()

    def get(self, key: tuple, load: Callable[[], tuple[int | None, Any]]) -> Any:
        """The cached value of `key`, or `load()` -> (organization id, value) stored and returned.
        `load` may raise; a value of no organization (an unknown key) is returned but not stored."""
        if not self.usable:
            return load()[1]
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[2]
        generation = self._generation
        org_id, value = load()
        with self._lock:
            if generation == self._generation and org_id is not None:
                self._entries[key] = (now + self.ttl, org_id, value)
        return value

    # --- invalidating --------------------------------------------------------------------

    def drop_local(self, org_id: int | None) -> None:
        """Drop the entries of one organization (None: all) in this process."""
        with self._lock:
            self._generation += 1
            if org_id is None:
                self._entries.clear()
            else:
                for key in [k for k, e in self._entries.items() if e[1] == org_id]:
                    self._entries.pop(key, None)
        with self.invalidated:
            self.invalidations += 1
            self.invalidated.notify_all()

    def organization_changed(self, org_id: int | None) -> None:
        """Drop the organization's entries here and, through Redis, in every other process."""
        self.drop_local(org_id)
        if self.redis_url is None:
            return
        try:
            if self._publisher is None:
                import redis

                self._publisher = redis.Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=2)
            self._publisher.publish(self.channel, f"{self.origin}:{'*' if org_id is None else org_id}")
        except Exception:
            # Other processes keep an entry at most the TTL; their listener reconnecting clears all.
            logger.exception("hot cache: publishing the invalidation of organization %s failed", org_id)
            self._publisher = None

    # --- the listener --------------------------------------------------------------------

    def _listener_ensure(self) -> None:
        if self._listener is not None and self._listener.is_alive():
            return
        with self._lock:
            if self._listener is not None and self._listener.is_alive():
                return
            self._stop.clear()
            self._listener = threading.Thread(target=self._listen, name="hotcache-listener", daemon=True)
            self._listener.start()

    def _listen(self) -> None:
        import redis

        delay = 0.1
        while not self._stop.is_set():
            client = None
            try:
                client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=2, health_check_interval=10)
                pubsub = client.pubsub(ignore_subscribe_messages=False)
                self._pubsub = pubsub
                pubsub.subscribe(self.channel)
                delay = 0.1
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        pubsub.check_health()
                        continue
                    if message["type"] == "subscribe":
                        # Whatever changed while we were not listening is unknown: start empty.
                        self.drop_local(None)
                        self._listening.set()
                    elif message["type"] == "message":
                        data = message["data"].decode() if isinstance(message["data"], bytes) else message["data"]
                        origin, _, org = data.rpartition(":")
                        if origin != self.origin:  # our own were dropped when published
                            self.drop_local(None if org == "*" else int(org))
            except Exception as exc:
                if not self._stop.is_set():
                    logger.warning("hot cache: invalidation listener lost Redis (%s); reading the database", exc)
            finally:
                self._listening.clear()
                self._pubsub = None
                if client is not None:
                    try:
                        client.close()
                    except Exception:
                        pass
            self._stop.wait(delay)
            delay = min(delay * 2, 5.0)

    def close(self) -> None:
        self._stop.set()
        self._listening.clear()
        if self._listener is not None:
            self._listener.join(timeout=3)
        self._listener = None
        self.drop_local(None)


def _channel_name() -> str:
    prefix = settings.CACHES.get("default", {}).get("KEY_PREFIX") or "mejai"
    url = settings.REDIS_URL or ""
    db = url.rsplit("/", 1)[-1] if url.count("/") >= 3 else "0"
    return f"{prefix}:{db}:runtime:hotcache"


_cache: HotCache | None = None
_cache_lock = threading.Lock()


def hot_cache() -> HotCache:
    """This process's cache (created on first use, from the settings)."""
    global _cache
    if _cache is None:
        with _cache_lock:
            if _cache is None:
                _cache = HotCache(redis_url=settings.REDIS_URL, channel=_channel_name(),
                                  ttl=float(getattr(settings, "HOT_CACHE_TTL_SECONDS", 60)))
    return _cache


def hot_cache_reset() -> None:
    """Forget this process's cache (tests: settings changed, or rows of a rolled-back test)."""
    global _cache
    with _cache_lock:
        if _cache is not None:
            _cache.close()
        _cache = None


def hot_cache_ready(timeout: float = 5.0) -> bool:
    """Wait until this process's cache may serve entries (its listener subscribed); tests and warm-up."""
    cache = hot_cache()
    if cache.usable:
        return True
    return cache._listening.wait(timeout)


def organization_changed(org_id: int | None) -> None:
    """Call when anything cached of this organization changed (None: of any); runs after commit."""
    from django.db import transaction

    transaction.on_commit(lambda: hot_cache().organization_changed(org_id))
    # Also at once in this process, so its own next read inside the transaction is not stale.
    hot_cache().drop_local(org_id)


def cached(key: tuple, load: Callable[[], tuple[int | None, Any]]) -> Any:
    return hot_cache().get(key, load)
