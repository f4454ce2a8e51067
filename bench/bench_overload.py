"""Overload benchmark (issue 15): capacity, bursts at 2x and 5x it, refusals, recovery, and a stream-close flood.

    .venv/bin/python bench/bench_overload.py --out bench/results/overload.md [--quick]

The web process is `python -m mejai.server mejai.asgi:application` (daphne, as in production) in its
own process, with the default limits (mejai/admission.py, DB_POOL_*); the fake model runs on a
thread of this script (so its delay can change between phases) and this script is the load
generator (httpx.AsyncClient, one asyncio loop) — on this 2-core machine all three share the cores.

Phases:
1. capacity — closed loop, JSON turns (zero-latency model) at 4..64 concurrent; capacity = the best turns/s;
2. bursts — open loop at 2x and 5x capacity for a few seconds, JSON and SSE: fraction served, latency
   of the served and of the refused (503 `overloaded`), time until a probe chat is answered again and
   until the thread count is back near rest; peak threads, database connections, RSS;
3. stream-close flood — N SSE streams wait on a model with a 60 s first token, are closed together,
   then chats are sent: answered (and how soon) or hung (issue 15, item 2), several runs.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from common import (  # noqa: E402
    PYTHON,
    ROOT,
    WebProcess,
    bench_org_create,
    command_line,
    django_env,
    fake_llm_start,
    fmt,
    free_port,
    infra_detect,
    md_table,
    migrate,
    percentile,
    port_wait,
    process_stop,
    rss_mb,
    verdict,
    write_section,
)

RECOVERY_TARGET_S = 5.0

# Runs kept for the record: the stream-close flood before and after its root-cause fix, with the
# pool settings the issue saw (they make the leak bite sooner; the fix does not depend on them).
HISTORY = """#### Stream-close flood: before and after the fix (issue 15, item 2)

`bench/bench_overload.py --flood-only --flood-streams 500 --flood-env DB_POOL_TIMEOUT=30 --flood-env DB_POOL_MAX_WAITING=0`
(the old pool settings), 2026-11-30, load average 11:

| commit | run | opened | waiting on model | later chats | database connections after |
| :--- | ---: | ---: | ---: | :--- | ---: |
| `26d09ad` (before) | 1 | 484 | 200 | ReadTimeout ×3 (hung 30 s each) | — |
| `26d09ad` (before) | 2 | 0 | 0 | 503 overloaded ×3 (pool empty, every slot leaked) | 0 |
| `26d09ad` (before) | 3 | 0 | 0 | 503, 503, ReadTimeout | 0 |
| `d627654` (after) | 1 | 499 | 200 | 200 ×3, first after 6.9 s | 20 |
| `d627654` (after) | 2 | 457 | 78 | 200 ×3, first after 30.7 s (the 30 s pool wait) | 20 |

Cause: a closed stream's "interrupted" store ran on the request's thread after the server had given
up on the request (cancelled again), so nothing returned its pooled connection; each such request
lost a pool slot for good. Fix: the store releases its connection in the same thread call
(`mejai.concurrency.released`, runtime/services.py disconnect paths)."""


def server_start(infra, env: dict[str, str]) -> WebProcess:
    port = free_port()
    cmd = [PYTHON, "-m", "mejai.server", "-b", "127.0.0.1", "-p", str(port), "mejai.asgi:application"]
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / "mejai-bench-overload-web.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=django_env(infra, env), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        port_wait(port, timeout=60, proc=proc)
    except Exception:
        process_stop(proc)
        raise RuntimeError(f"web process did not start:\n{log_path.read_text(errors='replace')[-3000:]}") from None
    return WebProcess(proc, port, log_path, cmd)


def threads_of(pid: int) -> int | None:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Sampler:
    """Threads, RSS and database connections of the web process, every 50 ms, on a thread."""

    def __init__(self, pid: int, db_name: str | None):
        self.pid, self.db_name = pid, db_name
        self.peak = {"threads": 0, "rss_mb": 0.0, "db_connections": 0}
        self._stop = threading.Event()
        self._conn = None
        if db_name:
            import psycopg

            self._conn = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True)

    def db_connections(self) -> int:
        if self._conn is None:
            return 0
        return self._conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (self.db_name,)).fetchone()[0]

    def now(self) -> dict:
        return {"threads": threads_of(self.pid) or 0, "rss_mb": rss_mb(self.pid) or 0.0,
                "db_connections": self.db_connections()}

    def reset(self) -> None:
        self.peak = self.now()

    def _run(self) -> None:
        while not self._stop.is_set():
            snap = self.now()
            for key, value in snap.items():
                self.peak[key] = max(self.peak[key], value)
            self._stop.wait(0.05)

    def start(self) -> Sampler:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.thread.join()


async def raw_turn(url: str, key: str, *, stream: bool, timeout: float = 60.0) -> tuple[int, float, str]:
    """One chat turn over a fresh connection with a hand-written HTTP/1.1 request (a light client:
    httpx costs the load generator ~1-2 ms CPU a request, which at 300/s is the generator's whole core).
    (status, seconds, error code or "")."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    body = json.dumps({"message": f"질문 {uuid.uuid4().hex[:8]}"}, ensure_ascii=False).encode()
    head = (f"POST /api/runtime/chat HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
            + ("Accept: text/event-stream\r\n" if stream else "") + "\r\n").encode()
    started = time.perf_counter()
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
        writer.write(head + body)
        raw = await asyncio.wait_for(reader.read(-1), timeout)
    except (OSError, TimeoutError) as exc:
        return 0, time.perf_counter() - started, type(exc).__name__
    finally:
        if writer is not None:
            writer.close()
    seconds = time.perf_counter() - started
    try:
        status = int(raw.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0, seconds, "bad_response"
    code = ""
    if status != 200 or (stream and b"event: error" in raw):
        code = raw.split(b'"code":', 1)[1].split(b'"', 2)[1].decode() if b'"code":' in raw else "?"
    return status, seconds, code


async def one_turn(client: httpx.AsyncClient, url: str, key: str, *, stream: bool) -> tuple[int, float, str]:
    """(status, seconds, error code or "") of one chat turn, read to its end."""
    headers = {"Authorization": f"Bearer {key}"}
    if stream:
        headers["Accept"] = "text/event-stream"
    body = {"message": f"질문 {uuid.uuid4().hex[:8]}"}
    started = time.perf_counter()
    try:
        async with client.stream("POST", url, json=body, headers=headers) as response:
            raw = await response.aread()
            code = ""
            if response.status_code != 200:
                try:
                    code = response.json()["error"]["code"]
                except Exception:
                    code = "?"
            elif stream and b"event: error" in raw:
                code = raw.split(b'"code":"', 1)[1].split(b'"', 1)[0].decode() if b'"code":"' in raw else "stream_error"
            return response.status_code, time.perf_counter() - started, code
    except httpx.HTTPError as exc:
        return 0, time.perf_counter() - started, type(exc).__name__


def client_for(n: int, timeout: float = 30.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=n, max_keepalive_connections=n))


async def closed_loop(url: str, key: str, concurrency: int, seconds: float, *, stream: bool) -> dict:
    results: list[tuple[int, float, str]] = []
    end = time.perf_counter() + seconds

    async def worker():
        while time.perf_counter() < end:
            results.append(await raw_turn(url, key, stream=stream))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    ok = [r for r in results if r[0] == 200 and not r[2]]
    return {"concurrency": concurrency, "ok": len(ok), "refused": sum(1 for r in results if r[0] == 503),
            "per_s": len(ok) / elapsed, "p50_ms": (percentile([r[1] for r in ok], 50) or 0) * 1000}


async def probe_until_answered(url: str, key: str, since: float, limit_s: float = 60.0) -> float | None:
    """Seconds from `since` until a chat is answered 200 (probes one after another), or None."""
    while time.perf_counter() - since < limit_s:
        status, _, code = await raw_turn(url, key, stream=False, timeout=limit_s)
        if status == 200 and not code:
            return time.perf_counter() - since
        await asyncio.sleep(0.05)
    return None


async def burst(url: str, key: str, rate: float, seconds: float, *, stream: bool, sampler: Sampler, pid: int,
                rest_threads: int) -> dict:
    n = int(rate * seconds)
    results: list[tuple[int, float, str]] = []
    sampler.reset()
    started = time.perf_counter()

    async def fire(i: int):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        results.append(await raw_turn(url, key, stream=stream))

    tasks = [asyncio.ensure_future(fire(i)) for i in range(n)]
    await asyncio.sleep(max(0.0, started + seconds - time.perf_counter()))
    burst_end = time.perf_counter()
    recovered = asyncio.ensure_future(probe_until_answered(url, key, burst_end))
    await asyncio.gather(*tasks)
    answered_after = await recovered
    threads_rest_after = None
    while time.perf_counter() - burst_end < 60:
        if (threads_of(pid) or 0) <= rest_threads + 5:
            threads_rest_after = time.perf_counter() - burst_end
            break
        await asyncio.sleep(0.05)
    served = [r for r in results if r[0] == 200 and not r[2]]
    refused = [r for r in results if r[0] == 503 or r[2] == "overloaded"]
    other = [r for r in results if r not in served and r not in refused]
    return {
        "rate": rate, "sent": n, "served": len(served), "refused": len(refused), "other": len(other),
        "other_kinds": sorted({f"{r[0]} {r[2]}".strip() for r in other}),
        "served_p50": percentile([r[1] * 1000 for r in served], 50), "served_p95": percentile([r[1] * 1000 for r in served], 95),
        "refused_p50": percentile([r[1] * 1000 for r in refused], 50), "refused_p95": percentile([r[1] * 1000 for r in refused], 95),
        "answered_after_s": answered_after, "threads_rest_after_s": threads_rest_after, **{f"peak_{k}": v for k, v in sampler.peak.items()},
    }


async def stream_close_flood(url: str, key: str, fake, streams: int) -> dict:
    """`streams` SSE streams wait on a 60 s first token, are dropped together; then 3 chats (ttft 0)."""
    fake.server.config.ttft = 60
    before = len(fake.server.requests)
    opened = 0
    refused: list[int] = []
    async with client_for(streams + 5) as client:
        leave = asyncio.Event()

        async def one():
            nonlocal opened
            headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
            try:
                async with client.stream("POST", url, json={"message": "느린 질문"}, headers=headers) as response:
                    if response.status_code != 200:
                        refused.append(response.status_code)
                        return
                    async for line in response.aiter_lines():
                        if line.startswith("retry:"):
                            opened += 1
                            await leave.wait()
                            return
            except httpx.HTTPError:
                return

        tasks = [asyncio.ensure_future(one()) for _ in range(streams)]
        deadline = time.perf_counter() + 60
        while time.perf_counter() < deadline and not all(t.done() for t in tasks):
            if len(fake.server.requests) - before >= opened and opened and opened == sum(1 for t in tasks if not t.done()):
                break
            await asyncio.sleep(0.1)
        waiting_on_model = len(fake.server.requests) - before
        leave.set()
        await asyncio.gather(*tasks)
    fake.server.config.ttft = 0
    closed_at = time.perf_counter()
    answered = []
    async with client_for(2, timeout=30) as client:
        for _ in range(3):
            status, seconds, code = await one_turn(client, url, key, stream=False)
            answered.append((status, code, seconds))
    return {"streams": streams, "opened": opened, "refused": len(refused), "waiting_on_model": waiting_on_model,
            "answers": [f"{s}{' ' + c if c else ''}" for s, c, _ in answered],
            "first_answer_s": time.perf_counter() - closed_at if all(s == 200 for s, _, _ in answered) else None,
            "hung": any(s != 200 for s, _, _ in answered)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench/results/overload.md")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--flood-runs", type=int, default=None)
    parser.add_argument("--flood-streams", type=int, default=None)
    parser.add_argument("--flood-limit", type=int, default=1000, help="ADMISSION_RUNTIME_CHAT for the flood")
    parser.add_argument("--flood-env", action="append", default=[], metavar="NAME=VALUE",
                        help="more environment for the flood's web process, e.g. DB_POOL_TIMEOUT=30")
    parser.add_argument("--flood-only", action="store_true", help="skip capacity and bursts")
    args = parser.parse_args()
    quick = args.quick
    infra = infra_detect(name="overload")
    migrate(infra)
    org = bench_org_create(infra)
    key = org["api_key"]
    flood_limit = args.flood_limit
    caps, bursts, capacity, web_log = [], [], 0.0, ""
    rest = after = {"threads": 0, "rss_mb": 0.0, "db_connections": 0}
    if not args.flood_only:
        caps, bursts, capacity, rest, after, web_log = _bursts(infra, key, quick)
    floods, flood_log = _floods(infra, key, args)
    web_log += "\n" + flood_log
    lines = _report(args, infra, caps, bursts, capacity, rest, after, floods, flood_limit, web_log)
    write_section(args.out, "\n".join(lines))
    print("\n".join(lines))


def _bursts(infra, key: str, quick: bool):
    fake = fake_llm_start()  # its own process: the load generator's core is for the load
    env = {"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "bench", "LLM_MAX_RETRIES": "0"}
    web = server_start(infra, env)
    url = web.url + "/api/runtime/chat"
    sampler = Sampler(web.pid, infra.db_name if infra.postgres else None).start()
    try:
        asyncio.run(closed_loop(url, key, 4, 2.0, stream=False))  # warm-up
        rest = sampler.now()
        caps = [asyncio.run(closed_loop(url, key, c, 2.0 if quick else 4.0, stream=False))
                for c in ((8, 32) if quick else (4, 16, 64))]
        capacity = max(c["per_s"] for c in caps)
        seconds = 3.0 if quick else 5.0
        bursts = []
        for stream in (False, True):
            for mult in (2, 5):
                result = asyncio.run(burst(url, key, capacity * mult, seconds, stream=stream, sampler=sampler,
                                           pid=web.pid, rest_threads=rest["threads"]))
                result.update(kind="SSE" if stream else "JSON", mult=mult)
                bursts.append(result)
                print(result, flush=True)
        after = sampler.now()
    finally:
        sampler.stop()
        web_log = web.log_tail(15)
        web.stop()
        fake.stop()
    return caps, bursts, capacity, rest, after, web_log


def _floods(infra, key: str, args):
    # The stream-close flood: its own web process, the runtime-chat limit raised so that every stream
    # is admitted (the fault under test is in the close path, not in admission), and a fake model on
    # a thread here so its first-token delay can change between the flood and the chats after it.
    fake = fake_llm_start(thread=True)
    env = {"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "bench", "LLM_MAX_RETRIES": "0",
           "ADMISSION_RUNTIME_CHAT": str(args.flood_limit), "LLM_READ_TIMEOUT": "120"}
    env.update(item.split("=", 1) for item in args.flood_env)
    quick = args.quick
    web = server_start(infra, env)
    url = web.url + "/api/runtime/chat"
    sampler = Sampler(web.pid, infra.db_name if infra.postgres else None).start()
    floods = []
    try:
        runs = args.flood_runs or (1 if quick else 3)
        streams = args.flood_streams or (120 if quick else 500)
        for _ in range(runs):
            sampler.reset()
            flood = asyncio.run(stream_close_flood(url, key, fake, streams))
            flood.update({f"peak_{k}": v for k, v in sampler.peak.items()})
            floods.append(flood)
            print(flood, flush=True)
    finally:
        sampler.stop()
        flood_log = web.log_tail(15)
        web.stop()
        fake.stop()
    return floods, flood_log


def _report(args, infra, caps, bursts, capacity, rest, after, floods, flood_limit, web_log) -> list[str]:
    lines = [
        "## Overload: capacity, bursts past it, recovery (issue 15)", "",
        f"`{command_line()}` — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit `{_commit()}`", "",
        f"One web process `python -m mejai.server` (daphne) with the default limits (ADMISSION_LIMITS "
        f"runtime_chat 48 with a queue of 96 waiting ≤ 0.5 s, DB_POOL_MAX 20, DB_POOL_TIMEOUT 3 s, DB_POOL_MAX_WAITING 100); {infra.label}; "
        f"zero-latency fake model in its own process (for the flood: on a thread of the load generator); "
        f"a hand-written HTTP/1.1 client, one connection per request; load average at start {_load()}. "
        "The load generator, the fake model, PostgreSQL, Redis and the web process share the 2 cores.", "",
        "### Capacity (closed loop, JSON turns)", "",
        md_table(["concurrent", "turns/s", "p50 ms", "refused"],
                 [[c["concurrency"], fmt(c["per_s"]), fmt(c["p50_ms"]), c["refused"]] for c in caps]), "",
        f"Capacity: **{capacity:.1f} turns/s**. Resting web process: {rest['threads']} threads, "
        f"{rest['rss_mb']:.0f} MB RSS, {rest['db_connections']} database connections.", "",
        "### Bursts (open loop)", "",
        md_table(["kind", "rate", "sent", "served", "refused 503", "other", "served p50/p95 ms", "503 p50/p95 ms",
                  "chat answered again after", "threads at rest after", "peak threads", "peak DB conns", "peak RSS MB"],
                 [[b["kind"], f"{b['mult']}x = {b['rate']:.0f}/s", b["sent"],
                   f"{b['served']} ({b['served'] / max(1, b['sent']):.0%})", b["refused"],
                   f"{b['other']} {' '.join(b['other_kinds'])}".strip(),
                   f"{fmt(b['served_p50'], 0)} / {fmt(b['served_p95'], 0)}", f"{fmt(b['refused_p50'], 0)} / {fmt(b['refused_p95'], 0)}",
                   fmt(b["answered_after_s"], 2, " s"), fmt(b["threads_rest_after_s"], 2, " s"), b["peak_threads"],
                   b["peak_db_connections"], fmt(b["peak_rss_mb"], 0)] for b in bursts]), "",
        f"Recovery target: answered again within {RECOVERY_TARGET_S:.0f} s of the burst's end — "
        + verdict(all(b["answered_after_s"] is not None and b["answered_after_s"] <= RECOVERY_TARGET_S for b in bursts))
        + "; threads back near rest within 5 s — "
        + verdict(all(b["threads_rest_after_s"] is not None and b["threads_rest_after_s"] <= RECOVERY_TARGET_S for b in bursts))
        + ".", "",
        "### Stream-close flood (SSE streams waiting on a 60 s first token, closed together, then chats)", "",
        f"A second web process with `ADMISSION_RUNTIME_CHAT={flood_limit}` (every stream admitted)"
        + (f" and {', '.join(f'`{e}`' for e in args.flood_env)}" if args.flood_env else "") + ".", "",
        md_table(["run", "streams", "opened", "refused", "waiting on model", "later chats", "answered after", "hung",
                  "peak threads", "peak DB conns"],
                 [[i + 1, f["streams"], f["opened"], f["refused"], f["waiting_on_model"], ", ".join(f["answers"]),
                   fmt(f["first_answer_s"], 2, " s"), "yes" if f["hung"] else "no", f["peak_threads"],
                   f["peak_db_connections"]] for i, f in enumerate(floods)]), "",
        f"After everything: {after['threads']} threads, {after['rss_mb']:.0f} MB RSS, "
        f"{after['db_connections']} database connections.", "",
    ]
    lines += [HISTORY, ""]
    if any(b["other"] for b in bursts) or any(f["hung"] for f in floods):
        lines += ["Web process log (last lines):", "", "```", web_log, "```", ""]
    return lines


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() or "?"


def _load() -> str:
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return "?"


if __name__ == "__main__":
    main()
