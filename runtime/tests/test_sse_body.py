"""runtime.sse.sse_body: same-tick events in one write, keep-alives from one timer, the producer
cancelled where it waits when the client leaves (issue 14)."""

from __future__ import annotations

import asyncio

from asgiref.sync import async_to_sync

from runtime.events import SSE_KEEPALIVE, event_delta
from runtime.sse import sse_body, sse_numbered


def test_events_of_one_tick_are_one_write():
    async def events():
        for i in range(5):  # no await in between: all produced in the same loop tick
            yield event_delta(turn_id="t", text=f"{i}", index=i)

    async def run():
        return [chunk async for chunk in sse_body(sse_numbered(events()), keepalive=60)]

    chunks = async_to_sync(run)()
    assert len(chunks) == 1, chunks
    assert chunks[0].startswith("retry: 3000\n\n") and chunks[0].count("event: delta") == 5
    assert "id: 5\n" in chunks[0]


def test_idle_streams_get_keepalives_and_a_leaving_client_cancels_the_producer():
    state = {"cancelled": False}
    gate = asyncio.Event

    async def run():
        release = gate()

        async def events():
            yield event_delta(turn_id="t", text="a", index=0)
            try:
                await release.wait()  # idle: nothing more comes
            except asyncio.CancelledError:
                state["cancelled"] = True
                raise
            yield event_delta(turn_id="t", text="never", index=1)

        body = sse_body(sse_numbered(events()), keepalive=0.01)
        seen = [await body.__anext__()]
        while seen.count(SSE_KEEPALIVE) < 2:  # wait on state: two keep-alives while idle
            seen.append(await body.__anext__())
        loop = asyncio.get_running_loop()
        timers = [h for h in getattr(loop, "_scheduled", []) if not h.cancelled()]
        await body.aclose()  # the client left
        return seen, timers

    seen, timers = async_to_sync(run)()
    assert "event: delta" in seen[0] and seen[1:] == [SSE_KEEPALIVE, SSE_KEEPALIVE]
    assert len(timers) <= 1  # one keep-alive timer, not one per wait
    assert state["cancelled"]
