"""Fixed-window rate limits for the widget APIs on Django's cache (Redis when REDIS_URL is set).

With Redis, each window's counter is `SET NX EX` + `INCR` (pipelined: one round trip for all the
limits of a request), so every web process shares the same count; other caches use add + incr.
A refused request answers 429 with Retry-After.
"""

from __future__ import annotations

import hashlib
import math
import time

from django.core.cache import cache

from mejai.errors import ApiError
from widgets import conf


def client_ip(meta: dict) -> str:
    """The client's address by the project's trusted-proxy rule (mejai/proxy.py: TRUSTED_PROXIES)."""
    from mejai.proxy import client_ip as resolve

    return resolve(meta)


def rate_limited_error(retry_after: int) -> ApiError:
    return ApiError(
        "rate_limited",
        f"메시지를 너무 빠르게 보내고 있어요. {retry_after}초 후에 다시 시도해 주세요. "
        f"(Too many requests — please try again in {retry_after} seconds.)",
        429,
        extra={"retry_after": retry_after},
    )


def _window_counts(keys: list[tuple[str, int]]) -> list[int]:
    """Bump each (cache key, window) counter; the new counts. Redis: one round trip for all."""
    from django.core.cache.backends.redis import RedisCache

    if isinstance(cache, RedisCache):
        full = [(cache.make_and_validate_key(key), window) for key, window in keys]
        pipe = cache._cache.get_client(full[0][0], write=True).pipeline(transaction=False)
        for key, window in full:
            pipe.set(key, 0, ex=window + 1, nx=True)  # starts the window with its expiry
            pipe.incr(key)
        replies = pipe.execute()
        return [int(count) for count in replies[1::2]]
    counts = []
    for key, window in keys:
        if cache.add(key, 1, window + 1):
            counts.append(1)
            continue
        try:
            counts.append(cache.incr(key))
        except ValueError:  # expired between add and incr
            cache.add(key, 1, window + 1)
            counts.append(1)
    return counts


def rate_limits_hit(*limits: tuple[str, str]) -> None:
    """Count one request against each (limit name, key); ApiError 429 when any is over its limit."""
    now = time.time()
    active = []
    for name, key in limits:
        limit, window = conf.rate_limit(name)
        if limit <= 0 or window <= 0:
            continue
        bucket = int(now // window)
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        active.append((f"widget:rl:{name}:{digest}:{bucket}", window, limit, bucket))
    if not active:
        return
    counts = _window_counts([(cache_key, window) for cache_key, window, _, _ in active])
    retry_after = 0
    for (_, window, limit, bucket), count in zip(active, counts, strict=True):
        if count > limit:
            retry_after = max(retry_after, math.ceil((bucket + 1) * window - now))
    if retry_after:
        raise rate_limited_error(max(1, retry_after))


def rate_limit_hit(*, name: str, key: str) -> None:
    """Count one request against limit `name` (widgets.conf.rate_limit) for `key`; ApiError 429 when over."""
    rate_limits_hit((name, key))


def widget_caps(widget_id: int) -> tuple[tuple[str, str], ...]:
    """The whole-widget message caps (per minute and per day), to pass to rate_limits_hit."""
    return (("CHAT_WIDGET", str(widget_id)), ("CHAT_WIDGET_DAY", str(widget_id)))
