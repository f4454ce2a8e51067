"""Server-sent events over Django's async StreamingHttpResponse, with keep-alive comments."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from django.conf import settings
from django.http import StreamingHttpResponse

from runtime.events import SSE_KEEPALIVE, TurnEvent, sse_encode


async def with_keepalive(events: AsyncIterator, interval: float) -> AsyncIterator:
    """Yield the events, and None whenever `interval` seconds pass without one."""
    iterator = events.__aiter__()
    pending: asyncio.Future | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=interval)
            if not done:
                yield None
                continue
            try:
                item = pending.result()
            except StopAsyncIteration:
                pending = None
                return
            pending = None
            yield item
    finally:
        if pending is not None and not pending.done():
            # The client left: cancel the producer where it waits, so it can store what it has.
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                await pending
        with contextlib.suppress(Exception):
            await iterator.aclose()


async def sse_body(events: AsyncIterator[TurnEvent], *, keepalive: float | None = None) -> AsyncIterator[str]:
    interval = keepalive if keepalive is not None else settings.RUNTIME_SSE_KEEPALIVE_SECONDS
    yield "retry: 3000\n\n"
    n = 0
    async for event in with_keepalive(events, interval):
        if event is None:
            yield SSE_KEEPALIVE
            continue
        n += 1
        yield sse_encode(event, event_id=n)


def sse_response(events: AsyncIterator[TurnEvent], *, keepalive: float | None = None) -> StreamingHttpResponse:
    response = StreamingHttpResponse(sse_body(events, keepalive=keepalive), content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache, no-transform"
    response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response
