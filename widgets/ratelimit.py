"""Fixed-window rate limits for the widget APIs on Django's cache (Redis when REDIS_URL is set).

A window's counter is created with cache.add and bumped with cache.incr, both atomic in Redis, so
every web process shares the same count. A refused request answers 429 with Retry-After.
"""

from __future__ import annotations

import hashlib
import math
import time

from django.core.cache import cache

from mejai.errors import ApiError
from widgets import conf


def client_ip(meta: dict) -> str:
    """The client's address: REMOTE_ADDR, or the last X-Forwarded-For hop behind a trusted proxy."""
    if conf.trust_x_forwarded_for():
        forwarded = [hop.strip() for hop in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
        if forwarded:
            return forwarded[-1][:64]
    return (meta.get("REMOTE_ADDR") or "unknown")[:64]


def rate_limited_error(retry_after: int) -> ApiError:
    return ApiError(
        "rate_limited",
        f"메시지를 너무 빠르게 보내고 있어요. {retry_after}초 후에 다시 시도해 주세요. "
        f"(Too many requests — please try again in {retry_after} seconds.)",
        429,
        extra={"retry_after": retry_after},
    )


def rate_limit_hit(*, name: str, key: str) -> None:
    """Count one request against limit `name` (widgets.conf.rate_limit) for `key`; ApiError 429 when over."""
    limit, window = conf.rate_limit(name)
    if limit <= 0 or window <= 0:
        return
    now = time.time()
    bucket = int(now // window)
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    cache_key = f"widget:rl:{name}:{digest}:{bucket}"
    if cache.add(cache_key, 1, window + 1):
        count = 1
    else:
        try:
            count = cache.incr(cache_key)
        except ValueError:  # expired between add and incr
            cache.add(cache_key, 1, window + 1)
            count = 1
    if count > limit:
        raise rate_limited_error(max(1, math.ceil((bucket + 1) * window - now)))
