"""Open SSE streams hold no thread each (issue 14): N streams waiting on a slow model, on a live
server in this process; the process's thread count must not grow with N."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from mejai.concurrency import SerialLane, request_thread_release

pytestmark = pytest.mark.django_db(transaction=True)

FEW, MANY = 20, 200


def _threads_settle(at_most: int) -> int:
    """The thread count once finished request threads have ended (waits on state, bounded)."""
    count = threading.active_count()
    for _ in range(200):
        if count <= at_most:
            break
        threading.Event().wait(0.05)
        count = threading.active_count()
    return count


def test_open_sse_streams_do_not_hold_a_thread_each(live_server_asgi, api_key, fake_llm, settings):
    settings.LLM_MAX_CONNECTIONS = MANY + 10
    settings.ADMISSION_LIMITS = {**settings.ADMISSION_LIMITS, "runtime_stream": MANY + 10}
    settings.LLM_CONNECTION_WAIT_SECONDS = 30
    settings.LLM_READ_TIMEOUT = 120
    fake_llm.config.ttft = 60  # every stream stays open, waiting for its first token
    url = live_server_asgi.url + "/api/runtime/chat"
    headers = {"Authorization": f"Bearer {api_key}", "Accept": "text/event-stream"}
    counts = {}

    async def scenario():
        leave = asyncio.Event()
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=MANY + 10)) as client:

            async def one(n: int):
                async with client.stream("POST", url, json={"message": f"느린 질문 {n}"}, headers=headers) as response:
                    assert response.status_code == 200
                    async for line in response.aiter_lines():
                        if line.startswith("retry:"):
                            await leave.wait()
                            return

            async def wave(start: int, end: int) -> list:
                # Opened FEW at a time, as streams accumulate in production: 200 turns stored at the
                # same instant would queue past the database pool's waiting limit and get 503 overloaded.
                tasks = []
                for first in range(start, end, FEW):
                    last = min(first + FEW, end)
                    tasks += [asyncio.ensure_future(one(n)) for n in range(first, last)]
                    while len(fake_llm.requests) < last:  # every stream reached the model and waits on it
                        failed = [t for t in tasks if t.done() and t.exception() is not None]
                        if failed:
                            raise failed[0].exception()
                        await asyncio.sleep(0.02)
                return tasks

            tasks = await wave(0, FEW)
            counts["few"] = await asyncio.to_thread(_threads_settle, 12)
            tasks += await wave(FEW, MANY)
            counts["many"] = await asyncio.to_thread(_threads_settle, counts["few"] + 16)
            leave.set()
            await asyncio.gather(*tasks)

    asyncio.run(scenario())
    # 180 more open streams; the shared stream-db pool and the loop's default executor may have
    # grown by their bounded sizes, nothing more.
    assert counts["many"] - counts["few"] <= 16, counts


def test_serial_lane_runs_calls_in_order_one_at_a_time():
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=4)
    lane = SerialLane(pool)
    running, seen, overlap = [0], [], []

    def call(n):
        running[0] += 1
        overlap.append(running[0])
        threading.Event().wait(0.001)
        seen.append(n)
        running[0] -= 1
        return n

    futures = [lane.submit(call, n) for n in range(50)]
    assert [f.result(5) for f in futures] == list(range(50))
    assert seen == list(range(50)) and max(overlap) == 1
    failing = lane.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(5)
    pool.shutdown()


def test_thread_release_is_a_no_op_under_a_sync_caller():
    from asgiref.sync import async_to_sync

    assert async_to_sync(_release)() is False


async def _release():
    return request_thread_release()
