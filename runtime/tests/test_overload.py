"""Overload: many streams closed at once must leave the process answering (issue 15, item 2)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from runtime.models import Turn

pytestmark = pytest.mark.django_db(transaction=True)


def _headers(key: str, stream: bool = False) -> dict:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if stream:
        headers["Accept"] = "text/event-stream"
    return headers


@pytest.mark.postgres
def test_a_flood_of_abrupt_stream_closes_leaves_the_next_chat_answered(live_server_asgi, api_key, fake_llm, settings):
    """More streams than the database pool holds, waiting on a slow model, all dropped at once: their
    cancellations store the partial turns, and each must give its connection back, or the process
    never answers again (the pool is spent by threads that ended holding connections)."""
    from django.db import connection

    streams = connection.settings_dict["OPTIONS"]["pool"]["max_size"] + 10
    fake_llm.config.ttft = 60
    url = live_server_asgi.url + "/api/runtime/chat"

    async def flood():
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=streams + 5)) as client:
            everyone_waits = asyncio.Event()

            async def one(n: int):
                async with client.stream("POST", url, json={"message": f"느린 질문 {n}"},
                                         headers=_headers(api_key, stream=True)) as response:
                    async for line in response.aiter_lines():
                        if line.startswith("retry:"):
                            await everyone_waits.wait()
                            return  # leave abruptly, all together

            tasks = [asyncio.ensure_future(one(n)) for n in range(streams)]
            while len(fake_llm.requests) < streams:  # every request is waiting on the model
                await asyncio.sleep(0.05)
            everyone_waits.set()
            await asyncio.gather(*tasks)

    asyncio.run(flood())
    # Wait until every dropped turn is stored as interrupted (state, not time).
    for _ in range(600):
        if not Turn.objects.filter(status__in=(Turn.Status.PENDING, Turn.Status.STREAMING)).exists():
            break
        asyncio.run(asyncio.sleep(0.05))
    assert Turn.objects.filter(status=Turn.Status.INTERRUPTED).count() == streams
    fake_llm.config.ttft = 0
    for n in range(3):
        response = httpx.post(url, json={"message": f"이제 답해 줘 {n}"}, headers=_headers(api_key), timeout=20)
        assert response.status_code == 200, response.text
        assert response.json()["message"].endswith(f"이제 답해 줘 {n}")


@pytest.mark.postgres
@pytest.mark.parametrize("release", [True, False], ids=["released", "not-released"])
def test_a_store_whose_request_is_cancelled_again_gives_its_connection_back(release, transactional_db):
    """The root cause of issue 15 item 2: a stream's client leaves; its turn is stored as interrupted
    on the request's thread; the server then gives up on the request (daphne cancels an application
    that outlives its connection) while that store still runs. The await is cancelled, the thread is
    not: it finishes the store holding a pooled connection that nothing returns once the request's
    context is dropped — every such request loses a pool slot for good, until the process stops
    answering. `released` gives it back in the same thread call. (The not-released case shows what
    the test detects.)"""
    import gc
    import threading

    from asgiref.sync import ThreadSensitiveContext, sync_to_async
    from django.db import connections

    from mejai.concurrency import released
    from runtime.models import Organization

    held = {}
    entered, go = threading.Event(), threading.Event()

    def store():
        entered.set()
        go.wait(10)
        count = Organization.objects.count()  # checks a connection out of the pool
        held["connection"] = connections["default"]  # this thread's wrapper: its slot, or None once given back
        return count

    async def request():
        async with ThreadSensitiveContext():
            call = sync_to_async(released(store) if release else store)
            task = asyncio.ensure_future(call())
            await asyncio.to_thread(entered.wait, 10)
            task.cancel()  # the server gives up on the request mid-store
            go.set()
            with pytest.raises(asyncio.CancelledError):
                await task
        # leaving the context joined its thread: the store has finished

    asyncio.run(request())
    gc.collect()
    # Measured on the store's own thread's connection, not on pool totals: other threads (the
    # stream workers, background jobs) check connections in and out meanwhile.
    leaked = held["connection"].connection is not None
    if release:
        assert not leaked
    else:
        assert leaked  # the slot is gone: checked out by a thread that will never give it back
        wrapper = held["connection"]
        wrapper.inc_thread_sharing()  # give it back from this thread, for the tests after this one
        try:
            wrapper.close()
        finally:
            wrapper.dec_thread_sharing()
