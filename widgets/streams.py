"""Caps on open streams (SSE and WebSocket) per visitor, per client address and per widget.

Counted in this process, exactly: a slot is taken when a stream opens and given back when it
ends, whatever ends it (the generator's `finally`, a socket's disconnect, or garbage collection
of a stream that never started). With N web processes the caps hold per process.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter

from mejai.errors import ApiError
from widgets import conf

_counts: Counter = Counter()
_lock = threading.Lock()


def stream_keys(*, widget_id: int, principal: str, ip: str) -> list[tuple[str, int]]:
    return [
        (f"visitor:{widget_id}:{principal}", conf.streams_per_visitor()),
        (f"ip:{ip}", conf.streams_per_ip()),
        (f"widget:{widget_id}", conf.streams_per_widget()),
    ]


def stream_slot_take(keys: list[tuple[str, int]]) -> list[str]:
    """Take one slot under every (key, cap); ApiError 429 `too_many_streams` when any cap is full."""
    with _lock:
        for key, cap in keys:
            if cap > 0 and _counts[key] >= cap:
                raise ApiError(
                    "too_many_streams",
                    "열린 연결이 너무 많습니다. 다른 탭을 닫고 다시 시도해 주세요. "
                    "(Too many open streams: close other tabs and try again.)", 429, extra={"retry_after": 5},
                )
        for key, _ in keys:
            _counts[key] += 1
    return [key for key, _ in keys]


def stream_slot_give_back(taken: list[str]) -> None:
    with _lock:
        for key in taken:
            _counts[key] -= 1
            if _counts[key] <= 0:
                del _counts[key]


def stream_open_count(key: str) -> int:
    with _lock:
        return _counts.get(key, 0)


def held_while_streaming(events, taken: list[str]):
    """Wrap an async iterator so its slots are given back exactly once when it ends or is dropped."""
    released = threading.Event()

    def give_back():
        if not released.is_set():
            released.set()
            stream_slot_give_back(taken)

    async def body():
        try:
            async for item in events:
                yield item
        finally:
            give_back()

    generator = body()
    weakref.finalize(generator, give_back)
    return generator
