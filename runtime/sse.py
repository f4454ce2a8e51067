"""Server-sent events over Django's async StreamingHttpResponse, with keep-alive comments."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from django.conf import settings
from django.http import StreamingHttpResponse

from mejai.concurrency import request_thread_release
from mejai.overload import OVERLOADED_MESSAGE
from runtime.events import SSE_KEEPALIVE, TurnEvent, event_error, sse_encode


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
    None or "" is sent without an `id:` line. A keep-alive comment goes out after `keepalive` idle seconds.

    Cheap per open stream: no thread (request_thread_release gives Django's back), one producer
    task reading `pairs`, one keep-alive timer re-armed only when it fires, and everything the
    producer got in the same loop tick (deltas of one network read) written as one chunk. When the
    client leaves, the producer is cancelled where it waits, so the pipeline can store what it has.
    """
    interval = keepalive if keepalive is not None else settings.RUNTIME_SSE_KEEPALIVE_SECONDS
    request_thread_release()
    loop = asyncio.get_running_loop()
    pending: list[str] = []
    waiter: asyncio.Future | None = None
    finished = False
    opened = False
    failure: BaseException | None = None
    last_write = loop.time()

    def wake() -> None:
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def produce() -> None:
        nonlocal finished, failure, opened
        try:
            async for event_id, event in pairs:
                if not opened:
                    opened = True
                    pending.append("retry: 3000\n\n")
                if event is not None:
                    pending.append(sse_encode(event, event_id=event_id or None))
                wake()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # handed to the writer, which raises it after what came before
            failure = exc
        finally:
            finished = True
            wake()
            aclose = getattr(pairs, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def keep_alive() -> None:
        nonlocal timer
        idle = loop.time() - last_write
        if idle >= interval:
            pending.append(SSE_KEEPALIVE)
            wake()
            idle = 0.0
        timer = loop.call_later(interval - idle, keep_alive)

    timer = loop.call_later(interval, keep_alive)
    producer = asyncio.ensure_future(produce())
    try:
        while True:
            if pending:
                chunk = "".join(pending)
                pending.clear()
                last_write = loop.time()
                yield chunk
                continue
            if finished:
                break
            waiter = loop.create_future()
            await waiter
            waiter = None
        if failure is not None:
            # The status line is gone already: a refused database connection ends the stream with the
            # same answer a 503 would have been (`overloaded`, retryable, retry_after), not a cut.
            from mejai.overload import is_overload_error, retry_after_seconds, shed_record

            if not is_overload_error(failure):
                raise failure
            shed_record("stream")
            error = event_error(code="overloaded", message=OVERLOADED_MESSAGE, retryable=True)
            error.data["retry_after"] = retry_after_seconds()
            yield ("" if opened else "retry: 3000\n\n") + sse_encode(error)
    finally:
        timer.cancel()
        if not producer.done():
            # The client left: cancel the producer where it waits, so it can store what it has.
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await producer


def sse_response(pairs: AsyncIterator[tuple[str | None, TurnEvent | None]], *,
                 keepalive: float | None = None) -> StreamingHttpResponse:
    """A `text/event-stream` response over (id, event) pairs (see sse_body), unbuffered by proxies."""
    response = StreamingHttpResponse(sse_body(pairs, keepalive=keepalive), content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache, no-transform"
    response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response
