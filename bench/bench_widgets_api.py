"""Widget API benchmark: init latency, SSE time to first delta over the model's TTFT, open SSE streams.

    .venv/bin/python bench/bench_widgets_api.py --out bench/results/widgets_api.md [--quick] [--streams N]

The web process is daphne `mejai.asgi:application` (as in production) in its own process, against
PostgreSQL + Redis in a dedicated database (`mejai_bench_widgets_api`, Redis db 13) when reachable;
the fake OpenAI-compatible server runs in another process; this script is the load generator
(httpx.AsyncClient for requests, raw asyncio sockets for the many idle streams).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import resource
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from common import (  # noqa: E402
    bench_org_create,
    command_line,
    django_script,
    fake_llm_start,
    fmt,
    infra_detect,
    machine_facts,
    md_table,
    migrate,
    percentile,
    verdict,
    web_start,
    write_section,
)

TARGET_SSE_OVERHEAD_P95_MS = 15.0
TARGET_STREAMS = 1000
SSE_TTFT = 0.2  # the fake model's time to first token, seconds
HOST_ORIGIN = "http://localhost:3000"
PAGE_URL = HOST_ORIGIN + "/products/1"
KEEPALIVE_SECONDS = 5


@dataclass
class Samples:
    values: list[float] = field(default_factory=list)  # seconds
    errors: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0

    def error(self, key: str) -> None:
        self.errors[key] = self.errors.get(key, 0) + 1

    def ms(self, p: float) -> float | None:
        value = percentile(self.values, p)
        return None if value is None else value * 1000

    @property
    def error_text(self) -> str:
        return ", ".join(f"{k}: {v}" for k, v in sorted(self.errors.items())) or "none"


def threads_of(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return None


def fds_of(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        return len(list(Path(f"/proc/{pid}/fd").iterdir()))
    return None


async def widget_init(client: httpx.AsyncClient, public_key: str, visitor: str) -> dict:
    response = await client.post("/api/widget/init", headers={"Origin": HOST_ORIGIN},
                                 json={"public_key": public_key, "page_url": PAGE_URL, "visitor": {"id": visitor}})
    response.raise_for_status()
    return response.json()


async def init_phase(base: str, public_key: str, *, requests: int, concurrency: int) -> Samples:
    samples = Samples()
    counter = iter(range(requests))
    async with httpx.AsyncClient(base_url=base, timeout=30,
                                 limits=httpx.Limits(max_connections=concurrency + 2)) as client:
        async def worker():
            for _ in counter:
                t0 = time.perf_counter()
                try:
                    await widget_init(client, public_key, f"bench-{uuid.uuid4().hex[:16]}")
                except httpx.HTTPStatusError as exc:
                    samples.error(str(exc.response.status_code))
                    continue
                except httpx.HTTPError as exc:
                    samples.error(type(exc).__name__)
                    continue
                samples.values.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        samples.elapsed = time.perf_counter() - t0
    return samples


async def sse_phase(base: str, public_key: str, *, concurrency: int, per_worker: int,
                    api_key: str | None = None) -> Samples:
    """Each virtual visitor sends `per_worker` streamed messages in turn; overhead = first delta - TTFT.

    With `api_key`, the same load goes to the runtime's own `POST /api/runtime/chat` (the baseline
    the widget path is built on), one external user per worker.
    """
    samples = Samples()
    async with httpx.AsyncClient(base_url=base, timeout=30,
                                 limits=httpx.Limits(max_connections=concurrency + 2)) as client:
        async def worker(n: int):
            user = f"sse-{n}-{uuid.uuid4().hex[:12]}"
            if api_key:
                url, extra = "/api/runtime/chat", {"external_id": user}
                headers = {"Authorization": f"Bearer {api_key}", "Accept": "text/event-stream"}
            else:
                started = await widget_init(client, public_key, user)
                url, extra = "/api/widget/chat", {}
                headers = {"Authorization": f"Bearer {started['widget_token']}", "Accept": "text/event-stream"}
            session_id = None
            for i in range(per_worker):
                t0 = time.perf_counter()
                first = None
                finished = False
                body = {"message": f"배송은 언제 오나요? {i}", **extra}
                if api_key and session_id:
                    body["session_id"] = session_id
                try:
                    async with client.stream("POST", url, headers=headers, json=body) as response:
                        if response.status_code != 200:
                            samples.error(str(response.status_code))
                            await response.aread()
                            continue
                        async for line in response.aiter_lines():
                            if first is None and line == "event: delta":
                                first = time.perf_counter()
                            elif line == "event: message":
                                finished = True
                            elif line == "event: error":
                                samples.error("error event")
                            elif api_key and session_id is None and line.startswith("data: ") and '"session_id"' in line:
                                session_id = json.loads(line[6:]).get("session_id")
                except httpx.HTTPError as exc:
                    samples.error(type(exc).__name__)
                    continue
                if first is None or not finished:
                    samples.error("no delta/message")
                    continue
                samples.values.append(first - t0 - SSE_TTFT)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        samples.elapsed = time.perf_counter() - t0
    return samples


@dataclass
class Stream:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    session_id: str
    messages: int = 0
    deltas: int = 0
    starts: int = 0
    keepalives: int = 0
    closed: bool = False


async def stream_open(port: int, token: str, session_id: str) -> Stream:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (f"GET /api/widget/stream?session_id={session_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
         f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n").encode()
    )
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 60)
    if b" 200 " not in status:
        writer.close()
        raise RuntimeError(status.decode(errors="replace").strip())
    while True:  # headers, then the stream's first bytes ("retry:") once it is subscribed
        line = await asyncio.wait_for(reader.readline(), 60)
        if line.startswith(b"retry:"):
            return Stream(reader, writer, session_id)
        if not line:
            raise RuntimeError("closed before the stream started")


async def stream_follow(stream: Stream) -> None:
    try:
        while True:
            line = await stream.reader.readline()
            if not line:
                stream.closed = True
                return
            if line.startswith(b"event: message"):
                stream.messages += 1
            elif line.startswith(b"event: delta"):
                stream.deltas += 1
            elif line.startswith(b"event: start"):
                stream.starts += 1
            elif line.startswith(b": keep-alive"):
                stream.keepalives += 1
    except (ConnectionError, asyncio.CancelledError):
        stream.closed = True


@dataclass
class StreamsResult:
    wanted: int
    opened: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    open_seconds: float = 0.0
    rss_before: float | None = None
    rss_open: float | None = None
    rss_after_close: float | None = None
    threads_before: int | None = None
    threads_open: int | None = None
    fds_open: int | None = None
    live_expected: int = 0
    live_received: int = 0
    live_detail: list = field(default_factory=list)
    keepalive_streams: int = 0
    still_open: int = 0
    init_while_open: Samples | None = None

    @property
    def per_stream_kib(self) -> float | None:
        if self.rss_before is None or self.rss_open is None or not self.opened:
            return None
        return (self.rss_open - self.rss_before) * 1024 / self.opened


async def streams_phase(web, public_key: str, *, count: int, per_session: int = 10) -> StreamsResult:
    result = StreamsResult(wanted=count)
    sessions = max(1, count // per_session)
    async with httpx.AsyncClient(base_url=web.url, timeout=60, limits=httpx.Limits(max_connections=12)) as client:
        visitors: list[dict] = []
        sem = asyncio.Semaphore(10)

        async def one_init(i: int):
            async with sem:
                visitors.append(await widget_init(client, public_key, f"stream-{i}-{uuid.uuid4().hex[:10]}"))

        await asyncio.gather(*(one_init(i) for i in range(sessions)))
        await asyncio.sleep(1.0)
        result.rss_before = web.rss_mb()
        result.threads_before = threads_of(web.pid)

        streams: list[Stream] = []
        opening = asyncio.Semaphore(50)

        async def one_stream(i: int):
            visitor = visitors[i % len(visitors)]
            async with opening:
                try:
                    streams.append(await stream_open(web.port, visitor["widget_token"], visitor["session_id"]))
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    key = str(exc)[:60] or type(exc).__name__
                    result.failures[key] = result.failures.get(key, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(one_stream(i) for i in range(count)))
        result.open_seconds = time.perf_counter() - t0
        result.opened = len(streams)
        followers = [asyncio.ensure_future(stream_follow(s)) for s in streams]
        await asyncio.sleep(2.0)
        result.rss_open = web.rss_mb()
        result.threads_open = threads_of(web.pid)
        result.fds_open = fds_of(web.pid)

        # The process still serves while the streams are open.
        result.init_while_open = Samples()
        for _ in range(30):
            t1 = time.perf_counter()
            await widget_init(client, public_key, f"busy-{uuid.uuid4().hex[:12]}")
            result.init_while_open.values.append(time.perf_counter() - t1)

        # Liveness: messages sent at once in ten sessions reach every open stream of those sessions.
        probe = visitors[:10]
        await asyncio.gather(*(
            client.post("/api/widget/chat", json={"message": "스트림 확인"},
                        headers={"Authorization": f"Bearer {visitor['widget_token']}"})
            for visitor in probe
        ))
        targets = [s for s in streams if s.session_id in {v["session_id"] for v in probe}]
        result.live_expected = len(targets)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(s.messages < 1 for s in targets):
            await asyncio.sleep(0.1)
        result.live_received = sum(1 for s in targets if s.messages >= 1)
        result.live_detail = sorted({(s.starts, s.deltas, s.messages) for s in targets})

        await asyncio.sleep(KEEPALIVE_SECONDS + 1.5)
        result.keepalive_streams = sum(1 for s in streams if s.keepalives > 0)
        result.still_open = sum(1 for s in streams if not s.closed)

        for follower in followers:
            follower.cancel()
        for stream in streams:
            with contextlib.suppress(Exception):
                stream.writer.close()
        await asyncio.sleep(3.0)
        result.rss_after_close = web.rss_mb()
    return result


def widget_vs_runtime(widget: Samples, runtime: Samples) -> str:
    extra = (widget.ms(50) or 0) - (runtime.ms(50) or 0)
    if extra <= 0:
        return "the widget layer adds nothing measurable at p50 (the difference is within the run's noise)"
    return f"the widget layer adds {extra:.1f} ms at p50"


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


WIDGET_SCRIPT = """
from runtime.models import Agent, Organization
from widgets.models import ChatWidget
org = Organization.objects.get(pk={org_id})
agent = Agent.objects.get(organization=org, name={agent!r})
widget = ChatWidget.objects.create(organization=org, agent=agent, name="bench", allowed_domains=["localhost", "127.0.0.1"])
result = {{"public_key": widget.public_key}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/widgets_api.md")
    parser.add_argument("--quick", action="store_true", help="fewer requests and 200 streams (about a minute)")
    parser.add_argument("--streams", type=int, default=None, help=f"open SSE streams to hold (default {TARGET_STREAMS})")
    parser.add_argument("--embedded", action="store_true", help="SQLite + in-memory layer instead of PostgreSQL + Redis")
    parser.add_argument("--streams-only", action="store_true", help="only the open-streams phase (diagnosis)")
    args = parser.parse_args()
    quick = args.quick
    stream_count = args.streams or (200 if quick else TARGET_STREAMS)
    fd_limit = raise_fd_limit()  # inherited by the web process

    infra = infra_detect(name="widgets_api", redis_db=13, embedded=args.embedded)
    migrate(infra)
    org = bench_org_create(infra, slug="bench-widgets")
    public_key = django_script(infra, WIDGET_SCRIPT.format(org_id=org["org_id"], agent=org["agent"]))["public_key"]
    fake = fake_llm_start(ttft=SSE_TTFT)
    env = {
        "OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "bench", "LLM_MAX_RETRIES": "0",
        # The load generator is one address: rate limits would measure themselves, not the API.
        "WIDGET_RATE_INIT_IP": "0", "WIDGET_RATE_CHAT_IP": "0", "WIDGET_RATE_CHAT_VISITOR": "0",
        "WIDGET_RATE_STREAM_VISITOR": "0", "WIDGET_RATE_EVENT_VISITOR": "0",
        "WIDGET_SSE_KEEPALIVE_SECONDS": str(KEEPALIVE_SECONDS),
    }
    web = web_start(infra, env=env, log_name="widgets-api")
    started_at = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg()
    try:
        base = web.url
        if args.streams_only:
            found = asyncio.run(streams_phase(web, public_key, count=stream_count))
            print(found)
            return
        asyncio.run(init_phase(base, public_key, requests=20, concurrency=2))  # warm-up
        rss_idle = web.rss_mb()
        init_seq = asyncio.run(init_phase(base, public_key, requests=50 if quick else 300, concurrency=1))
        init_c10 = asyncio.run(init_phase(base, public_key, requests=100 if quick else 500, concurrency=10))
        asyncio.run(sse_phase(base, public_key, concurrency=2, per_worker=3))  # warm-up
        sse_c1 = asyncio.run(sse_phase(base, public_key, concurrency=1, per_worker=10 if quick else 40))
        sse_c10 = asyncio.run(sse_phase(base, public_key, concurrency=10, per_worker=5 if quick else 25))
        runtime_c10 = asyncio.run(sse_phase(base, public_key, concurrency=10, per_worker=5 if quick else 25,
                                            api_key=org["api_key"]))
        streams = asyncio.run(streams_phase(web, public_key, count=stream_count))
        log_tail = web.log_tail(5)
        load_after = os.getloadavg()
    finally:
        web.stop()
        fake.stop()

    overhead_p95 = sse_c10.ms(95)
    facts = machine_facts()
    rows = [
        ["`init` latency, 1 at a time (p50 / p95 / p99)",
         f"{fmt(init_seq.ms(50))} / **{fmt(init_seq.ms(95))}** / {fmt(init_seq.ms(99))} ms", "—", "—"],
        ["`init` latency, 10 concurrent (p50 / p95)",
         f"{fmt(init_c10.ms(50))} / **{fmt(init_c10.ms(95))}** ms; "
         f"{fmt(len(init_c10.values) / init_c10.elapsed if init_c10.elapsed else None)} inits/s", "—", "—"],
        ["SSE first delta over TTFT, 1 at a time (p50 / p95)",
         f"{fmt(sse_c1.ms(50))} / {fmt(sse_c1.ms(95))} ms", "—", "—"],
        ["SSE first delta over TTFT, 10 concurrent (p50 / p95 / p99)",
         f"{fmt(sse_c10.ms(50))} / **{fmt(overhead_p95)}** / {fmt(sse_c10.ms(99))} ms",
         f"≤ {TARGET_SSE_OVERHEAD_P95_MS:.0f} ms p95",
         verdict(None if overhead_p95 is None else overhead_p95 <= TARGET_SSE_OVERHEAD_P95_MS)],
        ["Same load on the runtime's own `/api/runtime/chat` (baseline, p50 / p95)",
         f"{fmt(runtime_c10.ms(50))} / {fmt(runtime_c10.ms(95))} ms — {widget_vs_runtime(sse_c10, runtime_c10)}",
         "—", "—"],
        ["Concurrent open SSE streams held by one daphne process",
         f"**{streams.opened:,}** of {streams.wanted:,} opened in {streams.open_seconds:.1f} s; "
         f"{streams.still_open:,} still open after {KEEPALIVE_SECONDS + 1.5:.0f} s",
         f"≥ {TARGET_STREAMS:,}", verdict(streams.opened >= TARGET_STREAMS and streams.still_open >= TARGET_STREAMS)],
        ["Memory per open stream (RSS growth / streams)",
         f"**{fmt(streams.per_stream_kib)} KiB** (RSS {fmt(streams.rss_before)} → {fmt(streams.rss_open)} MiB; "
         f"{fmt(streams.rss_after_close)} MiB after closing)", "—", "—"],
        ["Threads / file descriptors of the web process with the streams open",
         f"{streams.threads_before} → {streams.threads_open} threads; {streams.fds_open} fds", "—", "—"],
        ["Live delivery: chats in 10 sessions at once reach their open streams",
         f"{streams.live_received} of {streams.live_expected} streams got the message "
         f"(start/delta/message counts seen: {streams.live_detail}); "
         f"{streams.keepalive_streams:,} streams got a keep-alive", "all", verdict(
             streams.live_expected > 0 and streams.live_received == streams.live_expected)],
        ["`init` p95 while the streams are open",
         f"{fmt(streams.init_while_open.ms(95) if streams.init_while_open else None)} ms", "—", "—"],
    ]
    errors = (f"init: {init_seq.error_text} / {init_c10.error_text}; SSE: {sse_c1.error_text} / {sse_c10.error_text}"
              f" / runtime {runtime_c10.error_text}; "
              f"streams: {', '.join(f'{k}: {v}' for k, v in streams.failures.items()) or 'none'}")
    text = f"""## Widget API (`/api/widget/*`)

Measured {started_at:%Y-%m-%d %H:%M} UTC on {facts['cores']} cores ({facts['cpu']}, {facts['memory']}), {infra.label}.
Machine load average (1 min) {load_before[0]:.1f} at the start and {load_after[0]:.1f} at the end of the run: the
machine was shared with other work, which inflates every latency here.

```
{command_line()}
```

One web process: `daphne mejai.asgi:application` (as in production), DEBUG off; the fake
OpenAI-compatible model in its own process with a fixed TTFT of {SSE_TTFT * 1000:.0f} ms; the load
generator shares the same {facts['cores']} cores. Widget rate limits are off for the run (one client
address). Each SSE sample is a real `POST /api/widget/chat` with `Accept: text/event-stream`; the
figure is the time from sending it to the first `event: delta` line, minus the model's TTFT — i.e.
token check, rate-limit and session lookups, storing the turn, context building, the model call's
own HTTP round trip, publishing the delta to the session's channel-layer group, and the SSE write.
Streams are `GET /api/widget/stream` held open by raw sockets ({max(1, stream_count // 10)} sessions,
10 tabs each), keep-alive every {KEEPALIVE_SECONDS} s for the run.

{md_table(["figure", "measured", "target", "verdict"], rows, align="llll")}

Samples: init {len(init_seq.values)} + {len(init_c10.values)}, SSE {len(sse_c1.values)} + {len(sse_c10.values)};
errors: {errors}. Memory: {fmt(rss_idle)} MiB RSS after warm-up. Open-file limit of the web process: {fd_limit:,}.

What limits these figures:

* **SSE overhead** is mostly the work before the model is called: the turn is stored in its own
  transaction (row lock on the session, sequence number), earlier turns of the session are checked,
  and the context (prompt, end-user profile, memories, recent turns) is read — each a
  `sync_to_async` hop to the request's database thread — then the openai SDK opens its request.
  At 10 concurrent streams the two cores are shared with PostgreSQL, Redis, the fake model and the
  load generator, so queueing for a core shows up in the tail.
* **Open streams** cost an asyncio task and a local queue — all streams of the process share one
  channel-layer subscription (`runtime.live.SessionHub`) — plus the per-request thread Django's
  ASGI handler keeps for the life of every response (one thread per open stream; its stack is
  mostly untouched virtual memory, and it is most of the memory per stream). A stream gives its
  database connection back as soon as it is subscribed (`mejai.concurrency.db_release`), so open
  streams never hold the connection pool. The ceiling is the process's open-file limit and memory,
  not the database.
* `init` does one widget lookup, the visitor's identity (find or create), the session (resume or
  create), the token (HMAC-SHA256 JWT), the install status (written at most once a minute) and one
  stats `UPDATE`.

Web process log tail: `{log_tail.strip().splitlines()[-1] if log_tail.strip() else 'empty'}`
"""
    write_section(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
