"""Runtime chat benchmark: JSON turns/s and latency, SSE overhead over the model's TTFT, web process memory.

    .venv/bin/python bench/bench_runtime.py --out bench/results/runtime.md [--quick]

The web process is daphne `mejai.asgi:application` (as in production) in its own process; the
fake OpenAI-compatible server runs in another; this script is the load generator (httpx.AsyncClient,
one asyncio loop). PostgreSQL + Redis are used when reachable (database `mejai_bench_runtime`).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
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
    fake_llm_start,
    fmt,
    infra_detect,
    md_table,
    migrate,
    percentile,
    verdict,
    web_start,
    write_section,
)

TARGET_OVERHEAD_P95_MS = 15.0
TARGET_TURNS_PER_S = 200.0
TARGET_RSS_REST_MB = 150.0
SSE_TTFT = 0.2
TURNS_PER_CONVERSATION = 10  # a virtual user starts a new session after this many turns


@dataclass
class Phase:
    name: str
    concurrency: int
    code: str = ""  # the commit measured
    latencies: list[float] = field(default_factory=list)  # seconds
    overheads: list[float] = field(default_factory=list)  # seconds (SSE: first delta - TTFT)
    errors: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0
    web_cpu: float = 0.0  # CPU seconds used by the web process during the phase
    pg_cpu: float | None = None  # CPU seconds used by PostgreSQL backends of the bench database
    pg_xacts: int | None = None  # transactions committed + rolled back in the bench database
    loadgen_cpu: float = 0.0
    machine_busy: float = 0.0  # fraction of all cores busy during the phase
    rss_peak: float | None = None

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def error_text(self) -> str:
        return ", ".join(f"{k}×{v}" for k, v in sorted(self.errors.items())) or "0"


def _proc_stat_busy() -> tuple[float, float]:
    with open("/proc/stat") as fh:
        parts = [float(x) for x in fh.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


class Conversation:
    """One virtual user: a session continued for a few turns, then a new one."""

    def __init__(self):
        self.session_id: str | None = None
        self.turns = 0

    def body(self, i: int) -> dict:
        if self.turns >= TURNS_PER_CONVERSATION:
            self.session_id, self.turns = None, 0
        body = {"message": f"안녕하세요, 주문 {i}번 배송 상태를 알려주세요.", "client_message_id": uuid.uuid4().hex}
        if self.session_id:
            body["session_id"] = self.session_id
        return body

    def answered(self, payload: dict) -> None:
        self.session_id = payload.get("session_id") or self.session_id
        self.turns += 1


async def _sample_rss(web, stop: asyncio.Event, phase: Phase) -> None:
    while not stop.is_set():
        rss = web.rss_mb()
        if rss is not None:
            phase.rss_peak = max(phase.rss_peak or 0.0, rss)
        try:
            await asyncio.wait_for(stop.wait(), 0.1)
        except TimeoutError:
            pass


class PgMeter:
    """PostgreSQL's share of a phase: CPU of the bench database's backends (from /proc; the pooled
    connections live through the phase) and its transaction count (pg_stat_database)."""

    def __init__(self, infra):
        self.infra = infra
        self.enabled = infra.postgres

    def _query(self, sql: str) -> list[str]:
        import subprocess

        out = subprocess.run(["psql", self.infra.database_url.replace(f"/{self.infra.db_name}", "/postgres"),
                              "-tAc", sql], capture_output=True, text=True, timeout=30)
        return [line for line in out.stdout.splitlines() if line.strip()]

    def backend_cpu(self) -> dict[int, float]:
        from common import cpu_seconds

        pids = self._query(f"SELECT pid FROM pg_stat_activity WHERE datname = '{self.infra.db_name}'")
        return {int(p): cpu_seconds(int(p)) or 0.0 for p in pids}

    def xacts(self) -> int:
        # pg_stat_database is fed by each backend at most once a second and by an idle one after
        # 10 s: read it when the backends are quiet.
        rows = self._query(f"SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '{self.infra.db_name}'")
        return int(rows[0]) if rows else 0

    def start(self):
        if not self.enabled:
            return None
        time.sleep(11)  # the previous phase's counts reach pg_stat_database
        return self.backend_cpu(), self.xacts()

    def stop(self, before, phase: Phase) -> None:
        if before is None:
            return
        cpu0, x0 = before
        cpu1 = self.backend_cpu()
        phase.pg_cpu = sum(v - cpu0.get(pid, 0.0) for pid, v in cpu1.items())
        time.sleep(11)
        phase.pg_xacts = self.xacts() - x0 - 1  # minus this meter's own read


async def _run_phase(web, phase: Phase, *, requests: int, seconds: float, worker) -> Phase:
    limits = httpx.Limits(max_connections=phase.concurrency, max_keepalive_connections=phase.concurrency)
    async with httpx.AsyncClient(base_url=web.url, limits=limits, timeout=60.0) as client:
        counter = iter(range(requests))
        deadline = time.monotonic() + seconds
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample_rss(web, stop, phase))
        cpu0, busy0, loadgen0 = web.cpu_seconds(), _proc_stat_busy(), time.process_time()
        started = time.perf_counter()

        async def loop():
            conversation = Conversation()
            for i in counter:
                if time.monotonic() > deadline:
                    return
                await worker(client, conversation, i, phase)

        await asyncio.gather(*(loop() for _ in range(phase.concurrency)))
        phase.elapsed = time.perf_counter() - started
        cpu1, busy1 = web.cpu_seconds(), _proc_stat_busy()
        phase.loadgen_cpu = time.process_time() - loadgen0
        stop.set()
        await sampler
    phase.web_cpu = (cpu1 or 0) - (cpu0 or 0)
    phase.machine_busy = (busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1e-9)
    return phase


def web_start_at(tree: Path, infra, *, env: dict[str, str], log_name: str):
    """web_start (bench/common.py) with the code of another checkout (the baseline commit)."""
    import subprocess

    from common import VENV_BIN, WebProcess, django_env, free_port, port_wait, process_stop

    port = free_port()
    cmd = [str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "mejai.asgi:application"]
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"mejai-bench-{infra.name}-{log_name}.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=tree, env=django_env(infra, env), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        port_wait(port, timeout=60, proc=proc)
    except Exception:
        process_stop(proc)
        raise RuntimeError(f"web process did not start:\n{log_path.read_text(errors='replace')[-3000:]}") from None
    return WebProcess(proc, port, log_path, cmd)


def git_commit(tree: Path) -> str:
    import subprocess

    out = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + (" + uncommitted changes" if dirty else "")


def _error(phase: Phase, key: str) -> None:
    phase.errors[key] = phase.errors.get(key, 0) + 1


def json_worker(headers: dict):
    async def worker(client: httpx.AsyncClient, conversation: Conversation, i: int, phase: Phase) -> None:
        t0 = time.perf_counter()
        try:
            r = await client.post("/api/runtime/chat", json=conversation.body(i), headers=headers)
        except httpx.HTTPError as exc:
            _error(phase, type(exc).__name__)
            return
        elapsed = time.perf_counter() - t0
        if r.status_code != 200:
            _error(phase, f"HTTP {r.status_code}")
            return
        payload = r.json()
        if not payload.get("message"):
            _error(phase, "empty message")
            return
        conversation.answered(payload)
        phase.latencies.append(elapsed)

    return worker


def sse_worker(headers: dict, ttft: float):
    sse_headers = {**headers, "Accept": "text/event-stream"}

    async def worker(client: httpx.AsyncClient, conversation: Conversation, i: int, phase: Phase) -> None:
        t0 = time.perf_counter()
        first_delta = None
        event = None
        got_message = False
        try:
            async with client.stream("POST", "/api/runtime/chat", json=conversation.body(i), headers=sse_headers) as r:
                if r.status_code != 200:
                    await r.aread()
                    _error(phase, f"HTTP {r.status_code}")
                    return
                async for line in r.aiter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                        if event == "delta" and first_delta is None:
                            first_delta = time.perf_counter()
                    elif line.startswith("data: ") and event == "message":
                        import json

                        conversation.answered(json.loads(line[6:]))
                        got_message = True
                    elif line.startswith("data: ") and event == "error":
                        _error(phase, "error event")
                        return
        except httpx.HTTPError as exc:
            _error(phase, type(exc).__name__)
            return
        if first_delta is None or not got_message:
            _error(phase, "no delta/message")
            return
        phase.overheads.append(first_delta - t0 - ttft)
        phase.latencies.append(time.perf_counter() - t0)

    return worker


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


async def _warm_up(web, headers: dict, *, n: int) -> None:
    phase = Phase("warm-up", 5)
    await _run_phase(web, phase, requests=n, seconds=60, worker=json_worker(headers))
    if phase.errors:
        raise RuntimeError(f"warm-up failed: {phase.errors}\n{web.log_tail()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/runtime.md")
    parser.add_argument("--quick", action="store_true", help="fewer requests (about a minute)")
    parser.add_argument("--embedded", action="store_true", help="SQLite + no Redis even when services are reachable")
    parser.add_argument("--server", choices=["daphne", "uvicorn"], default="daphne")
    parser.add_argument("--levels", default="1,10,50", help="JSON concurrency levels")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a checkout of the baseline commit (e.g. a `git worktree add --detach` of it): its JSON "
                             "phases run interleaved with this checkout's, against the same database")
    parser.add_argument("--no-sse", action="store_true", help="skip the SSE phases")
    args = parser.parse_args()

    scale = 0.2 if args.quick else 1.0
    levels = [int(x) for x in args.levels.split(",") if x]
    json_plan = {1: (400, 20.0), 10: (2000, 30.0), 50: (3000, 40.0)}
    sse_requests, sse_seconds, sse_concurrency = int(600 * scale), 40.0 * max(scale, 0.5), 10

    load_start = os.getloadavg()[0]
    infra = infra_detect(name="runtime", embedded=args.embedded)
    print(f"[runtime] configuration: {infra.label}", flush=True)
    migrate(infra)
    org = bench_org_create(infra)
    headers = {"Authorization": f"Bearer {org['api_key']}"}

    # --- JSON: a zero-latency model ---------------------------------------------------------
    fake0 = fake_llm_start(ttft=0.0, tps=0.0)
    llm_env = {"OPENAI_BASE_URL": fake0.base_url, "OPENAI_API_KEY": "bench", "LLM_MAX_RETRIES": "0"}
    web = web_start(infra, env=llm_env, server=args.server, log_name="json")
    web.code = git_commit(Path(__file__).resolve().parent.parent)
    webs = [web]
    if args.baseline:
        base = web_start_at(args.baseline, infra, env=llm_env, log_name="json-baseline")
        base.code = git_commit(args.baseline) + " (baseline)"
        webs.insert(0, base)
    meter = PgMeter(infra)
    json_phases: list[Phase] = []
    try:
        time.sleep(1.0)
        rss_start = web.rss_mb()
        for w in webs:
            asyncio.run(_warm_up(w, headers, n=int(200 * max(scale, 0.5))))
        time.sleep(2.0)
        rss_rest = web.rss_mb()
        for c in levels:
            n, secs = json_plan.get(c, (1000, 30.0))
            for w in webs:  # interleaved: the baseline and this code under the same machine load
                phase = Phase(f"JSON c={c}", c)
                phase.code = w.code
                before = meter.start()
                asyncio.run(_run_phase(w, phase, requests=max(int(n * scale), c * 4), seconds=secs * max(scale, 0.5),
                                       worker=json_worker(headers)))
                meter.stop(before, phase)
                json_phases.append(phase)
                print(
                    f"[runtime] {phase.name} [{phase.code}]: {phase.ok} ok, {phase.error_text()} errors, "
                    f"{phase.throughput:.1f} turns/s, p50 {_ms(percentile(phase.latencies, 50)) or 0:.1f} ms, "
                    f"web {phase.web_cpu * 1000 / max(phase.ok, 1):.2f} ms/turn, "
                    f"pg {(phase.pg_cpu or 0) * 1000 / max(phase.ok, 1):.2f} ms/turn, "
                    f"xacts {(phase.pg_xacts or 0) / max(phase.ok, 1):.2f}/turn",
                    flush=True,
                )
        time.sleep(2.0)
        rss_after_json = web.rss_mb()
    finally:
        for w in webs:
            w.stop()
        fake0.stop()

    # --- SSE: a model with a fixed time to first token -----------------------------------------
    if args.no_sse:
        load_end = os.getloadavg()[0]
        write_section(args.out, report(args, infra, web, json_phases, [], rss_start, rss_rest, rss_after_json,
                                       (load_start, load_end)))
        print(f"[runtime] wrote {args.out}", flush=True)
        return
    fake1 = fake_llm_start(ttft=SSE_TTFT, tps=0.0)
    llm_env = {"OPENAI_BASE_URL": fake1.base_url, "OPENAI_API_KEY": "bench", "LLM_MAX_RETRIES": "0"}
    web = web_start(infra, env=llm_env, server=args.server, log_name="sse")
    try:
        asyncio.run(_warm_up(web, headers, n=50))
        time.sleep(1.0)
        sse_phases = []
        # Concurrency 1 shows the overhead without queueing for a core; 10 is the target's figure.
        for c, n in ((1, max(int(100 * scale), 20)), (sse_concurrency, sse_requests)):
            phase = asyncio.run(
                _run_phase(
                    web, Phase(f"SSE c={c}", c), requests=n, seconds=sse_seconds, worker=sse_worker(headers, SSE_TTFT)
                )
            )
            sse_phases.append(phase)
            print(
                f"[runtime] {phase.name}: {phase.ok} ok, {phase.error_text()} errors, overhead p95 "
                f"{_ms(percentile(phase.overheads, 95)) or 0:.1f} ms",
                flush=True,
            )
    finally:
        web.stop()
        fake1.stop()

    load_end = os.getloadavg()[0]
    write_section(
        args.out,
        report(args, infra, web, json_phases, sse_phases, rss_start, rss_rest, rss_after_json, (load_start, load_end)),
    )
    print(f"[runtime] wrote {args.out}", flush=True)


def report(args, infra, web, json_phases, sse_phases: list[Phase], rss_start, rss_rest, rss_after_json, load) -> str:
    sse = sse_phases[-1] if sse_phases else Phase("SSE (not run)", 0)
    this_code = json_phases[-1].code if json_phases else ""
    best = max((p for p in json_phases if p.code == this_code), key=lambda p: p.throughput, default=None)
    overhead_p95 = _ms(percentile(sse.overheads, 95))
    peak_json = max((p.rss_peak or 0 for p in json_phases), default=None)
    lines = [
        "## Runtime chat (`POST /api/runtime/chat`)",
        "",
        f"Command: `{command_line()}` — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}"
        + (" (quick: fewer requests)" if args.quick else ""),
        "",
        f"- Configuration measured: {infra.label}.",
        f"- Machine load average (1 min): {load[0]:.1f} at the start, {load[1]:.1f} at the end"
        + (" — other work shared the cores and inflates every figure." if max(load) > 2.5 else "."),
        f"- Web process: `{' '.join(Path(c).name if i == 0 else c for i, c in enumerate(web.command))}` "
        "(one process, `DEBUG=0`), API-key auth, in its own process.",
        "- Model: the fake OpenAI-compatible server (`runtime/fakes/openai_server.py`, its own process) "
        "through the official `openai` SDK; JSON phases with TTFT 0 and unpaced tokens, "
        f"the SSE phase with TTFT {SSE_TTFT * 1000:.0f} ms.",
        "- Load generator: this script, one asyncio loop with `httpx.AsyncClient` (keep-alive), "
        f"N virtual users each sending messages in a session of up to {TURNS_PER_CONVERSATION} turns "
        "(with `session_id` and a fresh `client_message_id`), one request in flight per user.",
        "",
        "### JSON turns (zero-latency model)",
        "",
        "Code measured: " + ", ".join(dict.fromkeys(f"`{p.code}`" for p in json_phases)) + ". PostgreSQL CPU is the "
        "CPU time of the bench database's backend processes (from `/proc`); transactions are "
        "`xact_commit + xact_rollback` of `pg_stat_database` (every autocommit statement is one; the statements "
        "per turn are asserted by `runtime/tests/test_turnstore.py`).",
        "",
        md_table(
            [
                "code",
                "concurrency",
                "turns",
                "errors",
                "turns/s",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "web CPU ms/turn",
                "PG CPU ms/turn",
                "PG transactions/turn",
                "machine CPU busy",
            ],
            [
                [
                    p.code,
                    p.concurrency,
                    p.ok,
                    p.error_text(),
                    fmt(p.throughput),
                    fmt(_ms(percentile(p.latencies, 50))),
                    fmt(_ms(percentile(p.latencies, 95))),
                    fmt(_ms(percentile(p.latencies, 99))),
                    fmt(p.web_cpu * 1000 / p.ok if p.ok else None, 2),
                    fmt(p.pg_cpu * 1000 / p.ok if p.ok and p.pg_cpu is not None else None, 2),
                    fmt(p.pg_xacts / p.ok if p.ok and p.pg_xacts is not None else None, 2),
                    f"{p.machine_busy * 100:.0f} %",
                ]
                for p in json_phases
            ],
        ),
        "",
        f"### SSE time to first `delta` minus the model's TTFT ({SSE_TTFT * 1000:.0f} ms)",
        "",
        md_table(
            [
                "concurrency",
                "turns",
                "errors",
                "overhead p50 ms",
                "overhead p95 ms",
                "overhead p99 ms",
                "first delta p50 ms",
                "whole turn p50 ms",
                "web CPU ms/turn",
            ],
            [
                [
                    p.concurrency,
                    p.ok,
                    p.error_text(),
                    fmt(_ms(percentile(p.overheads, 50))),
                    fmt(_ms(percentile(p.overheads, 95))),
                    fmt(_ms(percentile(p.overheads, 99))),
                    fmt(_ms(percentile(p.overheads, 50)) + SSE_TTFT * 1000 if p.overheads else None),
                    fmt(_ms(percentile(p.latencies, 50))),
                    fmt(p.web_cpu * 1000 / p.ok if p.ok else None),
                ]
                for p in sse_phases
            ],
        ),
        "",
        "### Resident memory of the web process",
        "",
        md_table(
            ["moment", "RSS MB"],
            [
                ["just started (no request yet)", fmt(rss_start)],
                ["at rest, after warm-up", fmt(rss_rest)],
                [
                    f"peak under JSON load (c up to {max((p.concurrency for p in json_phases), default=0)})",
                    fmt(peak_json),
                ],
                ["at rest after the JSON load", fmt(rss_after_json)],
                [f"peak under SSE load (c={sse.concurrency})", fmt(sse.rss_peak)],
            ],
        ),
        "",
        "### Targets",
        "",
        md_table(
            ["target", "measured", "verdict"],
            [
                [
                    "SSE overhead ≤ 15 ms p95",
                    fmt(overhead_p95, unit=" ms"),
                    verdict(None if overhead_p95 is None else overhead_p95 <= TARGET_OVERHEAD_P95_MS),
                ],
                [
                    "≥ 200 turns/s (JSON, best level)",
                    f"{fmt(best.throughput)} turns/s at c={best.concurrency}" if best else "—",
                    verdict(None if best is None else best.throughput >= TARGET_TURNS_PER_S),
                ],
                [
                    "≤ 150 MB at rest",
                    fmt(rss_rest, unit=" MB"),
                    verdict(None if rss_rest is None else rss_rest <= TARGET_RSS_REST_MB),
                ],
            ],
            align="lll",
        ),
        "",
        "### What limits these figures",
        "",
        limits_text(json_phases, sse_phases),
    ]
    return "\n".join(lines)


def limits_text(json_phases: list[Phase], sse_phases: list[Phase]) -> str:
    sse = sse_phases[-1] if sse_phases else Phase("SSE (not run)", 0)
    cores = os.cpu_count() or 1
    out = []
    this_code = json_phases[-1].code if json_phases else ""
    json_phases = [p for p in json_phases if p.code == this_code]
    if json_phases:
        top = max(json_phases, key=lambda p: p.concurrency)
        per_turn = top.web_cpu * 1000 / top.ok if top.ok else 0
        loadgen = top.loadgen_cpu * 1000 / top.ok if top.ok else 0
        out.append(
            f"- All processes share {cores} cores: the load generator, the web process, the fake model and "
            f"PostgreSQL/Redis. At c={top.concurrency} the machine was {top.machine_busy * 100:.0f} % busy; "
            f"the web process used {per_turn:.1f} ms of CPU per turn and the load generator {loadgen:.1f} ms, "
            "so the ceiling is CPU, not waiting."
        )
        out.append(
            f"- One web process runs Python on one core at a time (the GIL): {per_turn:.1f} ms of CPU per turn caps "
            f"one process near {1000 / per_turn if per_turn else 0:.0f} turns/s even on an idle machine; "
            "production scales out with more daphne processes behind the proxy (same database and Redis)."
        )
    out.append(
        "- The database side of a JSON turn is two statements (runtime/turnstore.py: store + claim + order check + "
        "history in one, finish in one; API key, agent and prompt from the per-process cache), so PostgreSQL is "
        "no longer what limits a process: the web process's own CPU is (the `openai` SDK's per-chunk parsing, "
        "Django's handler and middleware, DRF, and the thread hops of `sync_to_async` — issue 14 items 2 and 3)."
    )
    if sse.overheads:
        out.append(
            "- The SSE overhead includes everything between the client and the model's first token: HTTP parsing, "
            "API-key auth, storing the turn, the order check, context building, the SDK request to the fake model, "
            "parsing its first chunk, and encoding the `delta` event — and the load generator's own scheduling."
        )
    single = next((p for p in sse_phases if p.concurrency == 1 and p.overheads), None)
    if single and sse.overheads and sse is not single:
        per_turn = sse.web_cpu * 1000 / sse.ok if sse.ok else 0
        out.append(
            f"- Alone (c=1) a turn's overhead is {_ms(percentile(single.overheads, 50)):.0f} ms p50; at "
            f"c={sse.concurrency} it is {_ms(percentile(sse.overheads, 50)):.0f} ms p50. The difference is queueing: "
            f"each turn needs {per_turn:.0f} ms of the web process's CPU, so {sse.concurrency} turns arriving "
            "together wait for each other's work on one core before their model call starts."
        )
    return "\n".join(out)


if __name__ == "__main__":
    main()
