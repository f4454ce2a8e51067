"""Bounded under load (issue 15): admission limits, a saturated database pool, threads, health.

Counts and states, never timings: a refused request is recognised by its status, code and
Retry-After header; threads are counted with threading.active_count().
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest
from django.db import OperationalError

from mejai import admission
from mejai.overload import is_overload_error, overload_state, shed_clear


@pytest.fixture(autouse=True)
def _fresh_overload_record():
    shed_clear()
    yield
    shed_clear()


def _headers(key: str, stream: bool = False) -> dict:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if stream:
        headers["Accept"] = "text/event-stream"
    return headers


def _assert_overloaded(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) >= 1
    body = response.json()
    assert body["error"]["code"] == "overloaded"
    assert body["error"]["retryable"] is True
    assert "잠시 후" in body["error"]["message"]


# --- the admission wrapper on its own -------------------------------------------------------------


def _call(app, path: str, *, accept: bytes = b"application/json", method: str = "POST"):
    """Run one request through an ASGI app; (status, headers, body, finished-event-setter)."""
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": [(b"accept", accept)]}
    return app(scope, receive, send), sent


def test_admission_refuses_past_the_limit_and_admits_again_when_one_ends(settings):
    settings.ADMISSION_LIMITS = {"runtime_chat": 2, "widget_chat": 1, "widget_stream": 1, "other": 1}
    settings.ADMISSION_QUEUE = {"runtime_chat": 0}  # no waiting: past the limit is refused at once
    # An earlier test's live server may still be ending a widget stream of its own in this process.
    at_rest = admission.admission_state()["inflight"]
    release = asyncio.Event()
    entered = []

    async def slow_app(scope, receive, send):
        entered.append(scope["path"])
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = admission.Admission(slow_app)

    async def scenario():
        held = [asyncio.ensure_future(_call(app, "/api/runtime/chat")[0]) for _ in range(2)]
        while len(entered) < 2:
            await asyncio.sleep(0)
        third, sent = _call(app, "/api/runtime/chat")
        await third  # refused at once: it never waits for the held ones
        assert sent[0]["status"] == 503
        headers = dict(sent[0]["headers"])
        assert headers[b"retry-after"] == str(settings.OVERLOAD_RETRY_AFTER_SECONDS).encode()
        assert json.loads(sent[1]["body"])["error"]["code"] == "overloaded"
        # Another class has its own limit; Kakao and health are never limited here.
        others = [_call(app, p) for p in ("/api/widget/chat", "/kakao/skill", "/healthz", "/readyz")]
        tasks = [asyncio.ensure_future(c) for c, _ in others]
        while len(entered) < 6:
            await asyncio.sleep(0)
        assert admission.admission_state()["inflight"]["runtime_chat"] == 2
        release.set()
        await asyncio.gather(*held, *tasks)
        assert admission.admission_state()["inflight"] == at_rest  # every place given back
        again, sent = _call(app, "/api/runtime/chat")
        await again
        assert sent[0]["status"] == 200

    asyncio.run(scenario())
    assert overload_state()["shed_recent"] == {"admission:runtime_chat": 1}


def test_past_the_limit_a_request_waits_in_a_bounded_queue_then_gets_the_place(settings):
    """Limit 1, queue 1: the second request waits (no thread, on the loop) and is admitted when the
    first ends; a third, with the queue full, is refused at once."""
    settings.ADMISSION_LIMITS = {"runtime_chat": 1}
    settings.ADMISSION_QUEUE = {"runtime_chat": 1}
    settings.ADMISSION_WAIT_SECONDS = 60
    releases = {"first": asyncio.Event(), "second": asyncio.Event()}
    entered: list[str] = []

    async def app(scope, receive, send):
        name = scope["path"].rsplit("/", 1)[-1]
        entered.append(name)
        if name in releases:
            await releases[name].wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    wrapped = admission.Admission(app)

    async def scenario():
        first, _ = _call(wrapped, "/api/runtime/chat/first")
        first = asyncio.ensure_future(first)
        second, second_sent = _call(wrapped, "/api/runtime/chat/second")
        second = asyncio.ensure_future(second)
        while admission.admission_state()["queued"]["runtime_chat"] < 1:
            await asyncio.sleep(0)
        third, third_sent = _call(wrapped, "/api/runtime/chat/third")
        await third
        assert third_sent[0]["status"] == 503  # the queue is full: no waiting behind the waiter
        assert entered == ["first"]
        releases["first"].set()
        await first
        while entered != ["first", "second"]:
            await asyncio.sleep(0)
        assert admission.admission_state()["inflight"]["runtime_chat"] == 1  # the place was handed over
        releases["second"].set()
        await second
        assert second_sent[0]["status"] == 200
        assert admission.admission_state()["inflight"]["runtime_chat"] == 0

    asyncio.run(scenario())


def test_a_waiter_whose_wait_runs_out_is_refused_and_leaves_no_place_taken(settings):
    settings.ADMISSION_LIMITS = {"other": 1}
    settings.ADMISSION_QUEUE = {"other": 5}
    settings.ADMISSION_WAIT_SECONDS = 0.05
    release = asyncio.Event()

    async def app(scope, receive, send):
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    wrapped = admission.Admission(app)

    async def scenario():
        holder, _ = _call(wrapped, "/x")
        holder = asyncio.ensure_future(holder)
        while admission.admission_state()["inflight"]["other"] < 1:
            await asyncio.sleep(0)
        late, late_sent = _call(wrapped, "/y")
        await late
        assert late_sent[0]["status"] == 503
        assert admission.admission_state()["queued"]["other"] == 0
        release.set()
        await holder
        assert admission.admission_state()["inflight"]["other"] == 0

    asyncio.run(scenario())


@pytest.mark.parametrize("ending", [TimeoutError, asyncio.CancelledError])
def test_a_place_handed_over_as_the_wait_ends_is_never_lost(settings, monkeypatch, ending):
    """Python 3.12+'s wait_for may raise (time-out, or the client leaving) although the place was
    handed over in the same loop step: the place is then taken (time-out) or passed on (cancel)."""
    settings.ADMISSION_LIMITS = {"other": 1}
    settings.ADMISSION_QUEUE = {"other": 5}
    settings.ADMISSION_WAIT_SECONDS = 5

    async def wait_for_that_raises_after_the_hand_over(future, timeout):
        with admission._lock:
            admission._waiters["other"].remove(next(w for w in admission._waiters["other"] if w[1] is future))
        admission._hand_over("other", future)  # the holder left: its place came to this waiter
        raise ending()

    async def scenario():
        assert admission._try_enter("other")  # the holder
        monkeypatch.setattr(admission.asyncio, "wait_for", wait_for_that_raises_after_the_hand_over)
        if ending is TimeoutError:
            assert await admission._enter("other") is True
            assert admission.admission_state()["inflight"]["other"] == 1
            admission._leave("other")
        else:
            with pytest.raises(asyncio.CancelledError):
                await admission._enter("other")
        assert admission.admission_state()["inflight"]["other"] == 0

    asyncio.run(scenario())


def test_admission_answers_a_page_with_a_page(settings):
    settings.ADMISSION_LIMITS = {"other": 0}

    async def never(scope, receive, send):  # pragma: no cover - must not be reached
        raise AssertionError("admitted past a limit of 0")

    call, sent = _call(admission.Admission(never), "/app/settings/", accept=b"text/html,application/xhtml+xml")
    asyncio.run(call)
    assert sent[0]["status"] == 503
    headers = dict(sent[0]["headers"])
    assert headers[b"content-type"].startswith(b"text/html")
    assert b"retry-after" in headers
    assert "잠시 바빠요" in sent[1]["body"].decode()


def test_a_widget_refusal_is_readable_cross_origin_and_carries_the_security_headers(settings):
    settings.ADMISSION_LIMITS = {"widget_chat": 0}

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    wrapped = admission.Admission(app)
    call, sent = _call(wrapped, "/api/widget/chat")
    asyncio.run(call)
    headers = dict(sent[0]["headers"])
    assert sent[0]["status"] == 503
    assert headers[b"access-control-allow-origin"] == b"*"
    assert b"Retry-After" in headers[b"access-control-expose-headers"]
    assert headers[b"x-frame-options"] == b"DENY"
    assert headers[b"x-content-type-options"] == b"nosniff"
    # The preflight is never refused: the caller can then send the request and read the 503.
    call, sent = _call(wrapped, "/api/widget/chat", method="OPTIONS")
    asyncio.run(call)
    assert sent[0]["status"] == 204


def test_a_limit_below_zero_is_unlimited(settings):
    settings.ADMISSION_LIMITS = {"other": -1}
    assert admission._try_enter("other")
    admission._leave("other")


# --- through the whole application ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_past_the_limit_the_api_answers_503_overloaded_and_health_says_degraded(live_server_asgi, api_key, settings,
                                                                               fake_llm):
    settings.ADMISSION_LIMITS = {"runtime_chat": 0, "runtime_stream": 0}
    url = live_server_asgi.url
    assert httpx.get(url + "/healthz").json() == {"status": "ok"}
    _assert_overloaded(httpx.post(url + "/api/runtime/chat", json={"message": "안녕"}, headers=_headers(api_key)))
    _assert_overloaded(httpx.post(url + "/api/runtime/chat", json={"message": "안녕"},
                                  headers=_headers(api_key, stream=True)))
    health = httpx.get(url + "/healthz")
    assert health.status_code == 200  # busy is not dead: a liveness probe must not restart it
    assert health.json()["status"] == "degraded"
    assert any("runtime_chat" in reason for reason in health.json()["reasons"])
    from runtime.health import readyz_cache_clear

    readyz_cache_clear()
    ready = httpx.get(url + "/readyz").json()
    assert ready["status"] == "degraded"
    assert ready["checks"]["overload"]["ok"] is False
    # Capacity is back and the window has passed (0 s): ok again, and the chat is answered.
    settings.ADMISSION_LIMITS = {"runtime_chat": 5, "runtime_stream": 5}
    settings.OVERLOAD_DEGRADED_SECONDS = 0
    assert httpx.get(url + "/healthz").json() == {"status": "ok"}
    answered = httpx.post(url + "/api/runtime/chat", json={"message": "이제 돼요?"}, headers=_headers(api_key), timeout=20)
    assert answered.status_code == 200, answered.text


@pytest.mark.django_db(transaction=True)
def test_a_burst_past_the_limit_leaves_threads_bounded_and_back_at_rest(live_server_asgi, api_key, settings, fake_llm):
    """8 streams hold the runtime-stream class (the model is slow); 60 more arrive: every one is
    refused without a thread of its own, and once the streams go the thread count returns."""
    limit, burst = 8, 60
    settings.ADMISSION_LIMITS = {"runtime_stream": limit}
    settings.ADMISSION_QUEUE = {"runtime_stream": 0}
    fake_llm.config.ttft = 60
    url = live_server_asgi.url + "/api/runtime/chat"
    httpx.get(live_server_asgi.url + "/healthz")
    rest = threading.active_count()
    peak = [rest]
    sampling = threading.Event()

    def sample():
        while not sampling.is_set():
            peak[0] = max(peak[0], threading.active_count())
            sampling.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    statuses: list[int] = []

    async def flood():
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=limit + burst + 5)) as client:
            leave = asyncio.Event()

            async def held(n: int):
                async with client.stream("POST", url, json={"message": f"느린 질문 {n}"},
                                         headers=_headers(api_key, stream=True)) as response:
                    assert response.status_code == 200
                    async for line in response.aiter_lines():
                        if line.startswith("retry:"):
                            await leave.wait()
                            return

            streams = [asyncio.ensure_future(held(n)) for n in range(limit)]
            while len(fake_llm.requests) < limit:  # every admitted stream is waiting on the model
                await asyncio.sleep(0.02)
            refused = await asyncio.gather(*(client.post(url, json={"message": f"몰려온 질문 {n}"},
                                                         headers=_headers(api_key, stream=True))
                                             for n in range(burst)))
            for response in refused:
                _assert_overloaded(response)
                statuses.append(response.status_code)
            leave.set()
            await asyncio.gather(*streams)

    try:
        asyncio.run(flood())
    finally:
        sampling.set()
        sampler.join()
    assert statuses == [503] * burst
    # At most a thread (and a joining thread) per admitted request, plus the client's own few.
    assert peak[0] <= rest + 2 * limit + 8, (rest, peak[0])
    # Back near rest once the streams are gone (state: the count, polled): the request threads end;
    # the bounded stream-db pool (STREAM_DB_THREADS) that served the streams may stay.
    at_rest = rest + 2 + settings.STREAM_DB_THREADS
    deadline = time.monotonic() + 30
    while threading.active_count() > at_rest and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= at_rest, (rest, threading.active_count())
    fake_llm.config.ttft = 0
    answered = httpx.post(url, json={"message": "이제 답해 줘"}, headers=_headers(api_key), timeout=20)
    assert answered.status_code == 200, answered.text


# --- the database pool ----------------------------------------------------------------------------


def test_a_pool_refusal_is_recognised_through_djangos_wrapper():
    pool_errors = pytest.importorskip("psycopg_pool")
    try:
        try:
            raise pool_errors.PoolTimeout("couldn't get a connection after 3.00 sec")
        except pool_errors.PoolTimeout as exc:
            raise OperationalError(str(exc)) from exc
    except OperationalError as wrapped:
        assert is_overload_error(wrapped)
    assert is_overload_error(pool_errors.TooManyRequests("too many"))
    assert not is_overload_error(OperationalError("server closed the connection unexpectedly"))


def test_a_stream_whose_database_connection_is_refused_ends_with_an_overloaded_event():
    pool_errors = pytest.importorskip("psycopg_pool")
    from runtime.sse import sse_body

    async def pairs():
        yield None, None
        try:
            raise pool_errors.PoolTimeout("couldn't get a connection after 3.00 sec")
        except pool_errors.PoolTimeout as exc:
            raise OperationalError(str(exc)) from exc

    async def read():
        return [part async for part in sse_body(pairs(), keepalive=30)]

    parts = asyncio.run(read())
    assert parts[0].startswith("retry:")
    event = parts[-1]
    assert event.startswith("event: error\n")
    data = json.loads(event.split("data: ", 1)[1])
    assert data["code"] == "overloaded" and data["retryable"] is True and data["retry_after"] >= 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_saturated_database_pool_answers_503_overloaded(live_server_asgi, api_key, fake_llm, settings):
    """Every pooled connection held elsewhere: the request waits DB_POOL_TIMEOUT, then gets a clear
    503 `overloaded` with Retry-After (not a hang, not a 500); with the connections back it is answered."""
    from django.db import connection
    from psycopg_pool import PoolTimeout

    pool = connection.pool
    connection.close()
    timeout = pool.timeout
    pool.timeout = 0.3  # the configured wait (DB_POOL_TIMEOUT), short for the test
    held = []
    try:
        while True:
            try:
                held.append(pool.getconn(timeout=0.3))
            except PoolTimeout:
                break
        assert held and pool.get_stats().get("pool_available", 0) == 0  # nothing left for the server
        url = live_server_asgi.url
        _assert_overloaded(httpx.post(url + "/api/runtime/chat", json={"message": "안녕"},
                                      headers=_headers(api_key), timeout=20))
        # A DRF REST API, and a plain Django page asking for HTML.
        _assert_overloaded(httpx.get(url + "/api/runtime/prompts", headers=_headers(api_key), timeout=20))
        settings.ROOT_URLCONF = "runtime.tests.overload_urls"
        page = httpx.get(url + "/plain-db-page", headers={"Accept": "text/html"}, timeout=20)
        assert page.status_code == 503 and page.headers["Retry-After"] and "잠시 바빠요" in page.text
        assert httpx.get(url + "/healthz").json()["status"] == "degraded"
    finally:
        for conn in held:
            pool.putconn(conn)
        pool.timeout = timeout
    answered = httpx.post(live_server_asgi.url + "/api/runtime/chat", json={"message": "이제 돼요?"},
                          headers=_headers(api_key), timeout=20)
    assert answered.status_code == 200, answered.text


@pytest.mark.parametrize("background", [True, False])
def test_only_a_backlog_on_the_request_path_makes_the_process_degraded(background):
    """In-process jobs or last-used stamps waiting for their thread are bookkeeping, not load."""
    import threading as _threading

    from mejai.concurrency import executor
    from mejai.overload import overload_state

    pool = executor(f"test-backlog-{background}", 1, background=background)
    go = _threading.Event()
    running = _threading.Event()
    pool.submit(lambda: (running.set(), go.wait(10)))
    waiting = pool.submit(lambda: None)  # the backlog: one job waits for the pool's only thread
    running.wait(10)
    try:
        assert overload_state()["degraded"] is (not background)
    finally:
        go.set()
        waiting.result(10)
