"""Server-sent events over Django's async StreamingHttpResponse, with keep-alive comments."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from django.conf import settings
from django.http import StreamingHttpResponse

from mejai.overload import OVERLOADED_MESSAGE
from runtime.events import SSE_KEEPALIVE, TurnEvent, event_error, sse_encode


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


async def sse_numbered(events: AsyncIterator[TurnEvent]) -> AsyncIterator[tuple[str | None, TurnEvent | None]]:
    """(id, event) pairs for a stream of one answer: opened at once, events numbered 1, 2, …"""
    yield None, None
    n = 0
    async for event in events:
        n += 1
        yield str(n), event


async def sse_body(pairs: AsyncIterator[tuple[str | None, TurnEvent | None]], *,
                   keepalive: float | None = None) -> AsyncIterator[str]:
    """The text of an event stream. `pairs` yields (id, event); (None, None) marks the stream as open
    (the `retry:` line is sent then: a client that has seen the first bytes is subscribed). An id of
    None or "" is sent without an `id:` line. A keep-alive comment goes out after `keepalive` idle seconds."""
    interval = keepalive if keepalive is not None else settings.RUNTIME_SSE_KEEPALIVE_SECONDS
    opened = False
    try:
        async for item in with_keepalive(pairs, interval):
            if item is None:
                yield SSE_KEEPALIVE
                continue
            event_id, event = item
            if not opened:
                opened = True
                yield "retry: 3000\n\n"
            if event is None:
                continue
            yield sse_encode(event, event_id=event_id or None)
    except Exception as exc:
        # The status line is gone already: a refused database connection ends the stream with the
        # same answer a 503 would have been (`overloaded`, retryable, retry_after), not a cut.
        from mejai.overload import is_overload_error, retry_after_seconds, shed_record

        if not is_overload_error(exc):
            raise
        shed_record("stream")
        if not opened:
            yield "retry: 3000\n\n"
        error = event_error(code="overloaded", message=OVERLOADED_MESSAGE, retryable=True)
        error.data["retry_after"] = retry_after_seconds()
        yield sse_encode(error)


def sse_response(pairs: AsyncIterator[tuple[str | None, TurnEvent | None]], *,
                 keepalive: float | None = None) -> StreamingHttpResponse:
    """A `text/event-stream` response over (id, event) pairs (see sse_body), unbuffered by proxies."""
    response = StreamingHttpResponse(sse_body(pairs, keepalive=keepalive), content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache, no-transform"
    response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response
