"""Scale-out: runtime JSON turns/s with one and with two web processes, in one run, on one PostgreSQL and Redis.

    .venv/bin/python bench/bench_scaleout.py --out bench/results/scaleout.md [--quick]

Two `python -m mejai.server` (daphne) processes are started on two ports. Phases alternate —
one process, two processes, one, two — with the same number of virtual users; with two, each
request goes to the next port in turn (a round-robin load balancer: one conversation's turns land
on both processes, so ordering across processes is exercised, not avoided). The model is the fake
OpenAI server with no latency, so the figure is mejai's own cost. Per phase: turns/s, latency
p50/p95, the web processes' CPU ms per turn (from /proc, summed over the processes that served),
and how busy the whole machine was (a 2-core machine shares its cores with PostgreSQL, Redis, the
fake model and this load generator).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

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
    machine_facts,
    md_table,
    migrate,
    percentile,
    port_wait,
    process_stop,
    write_section,
)

TURNS_PER_CONVERSATION = 10


@dataclass
class Phase:
    processes: int
    concurrency: int
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0
    web_cpu: float = 0.0
    loadgen_cpu: float = 0.0
    machine_busy: float = 0.0

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0


def server_start(infra, env: dict, name: str) -> WebProcess:
    """`python -m mejai.server` (daphne with mejai's request-size bound and access log), as in production."""
    import subprocess

    port = free_port()
    cmd = [PYTHON, "-m", "mejai.server", "-b", "127.0.0.1", "-p", str(port), "mejai.asgi:application"]
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"mejai-bench-scaleout-{name}.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=django_env(infra, env), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        port_wait(port, timeout=60, proc=proc)
    except Exception:
        process_stop(proc)
        raise RuntimeError(f"web process did not start:\n{log_path.read_text(errors='replace')[-3000:]}") from None
    return WebProcess(proc, port, log_path, cmd)


def _busy() -> tuple[float, float]:
    with open("/proc/stat") as fh:
        parts = [float(x) for x in fh.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


async def run_phase(webs: list[WebProcess], phase: Phase, *, headers: dict, seconds: float) -> Phase:
    import httpx

    limits = httpx.Limits(max_connections=phase.concurrency * 2, max_keepalive_connections=phase.concurrency * 2)
    ports = itertools.cycle(webs)
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:
        deadline = time.monotonic() + seconds
        cpu0 = [w.cpu_seconds() or 0.0 for w in webs]
        busy0, gen0 = _busy(), time.process_time()
        started = time.perf_counter()

        async def user():
            session_id, turns = None, 0
            while time.monotonic() < deadline:
                if turns >= TURNS_PER_CONVERSATION:
                    session_id, turns = None, 0
                body = {"message": "안녕하세요, 주문 배송 상태를 알려주세요.", "client_message_id": uuid.uuid4().hex}
                if session_id:
                    body["session_id"] = session_id
                web = next(ports)
                t0 = time.perf_counter()
                try:
                    r = await client.post(f"{web.url}/api/runtime/chat", json=body, headers=headers)
                except httpx.HTTPError as exc:
                    phase.errors[type(exc).__name__] = phase.errors.get(type(exc).__name__, 0) + 1
                    continue
                if r.status_code != 200 or not r.json().get("message"):
                    key = f"HTTP {r.status_code}"
                    phase.errors[key] = phase.errors.get(key, 0) + 1
                    continue
                phase.latencies.append(time.perf_counter() - t0)
                session_id, turns = r.json()["session_id"], turns + 1

        await asyncio.gather(*(user() for _ in range(phase.concurrency)))
        phase.elapsed = time.perf_counter() - started
        phase.web_cpu = sum((w.cpu_seconds() or 0.0) - c for w, c in zip(webs, cpu0, strict=True))
        busy1 = _busy()
        phase.machine_busy = (busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1e-9)
        phase.loadgen_cpu = time.process_time() - gen0
    return phase


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/scaleout.md")
    parser.add_argument("--quick", action="store_true", help="shorter phases")
    parser.add_argument("--concurrency", type=int, default=20, help="virtual users in every phase")
    parser.add_argument("--rounds", type=int, default=2, help="how many (1 process, 2 processes) pairs")
    args = parser.parse_args()
    seconds = 8.0 if args.quick else 20.0

    load_start = os.getloadavg()
    infra = infra_detect(name="scaleout")
    migrate(infra)
    org = bench_org_create(infra)
    headers = {"Authorization": f"Bearer {org['api_key']}"}
    fake = fake_llm_start(ttft=0.0, tps=0.0)
    env = {"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "bench", "LLM_MAX_RETRIES": "0", "DB_POOL_MAX": "20"}
    webs: list[WebProcess] = []
    phases: list[Phase] = []
    try:
        webs = [server_start(infra, env, "a"), server_start(infra, env, "b")]
        for web in webs:  # warm both (imports, pools, caches)
            asyncio.run(run_phase([web], Phase(1, 4), headers=headers, seconds=3.0))
        for _ in range(args.rounds):
            for n in (1, 2):
                phase = asyncio.run(run_phase(webs[:n], Phase(n, args.concurrency), headers=headers, seconds=seconds))
                phases.append(phase)
                print(f"[scaleout] {n} process(es): {phase.ok} turns, {phase.throughput:.1f}/s, "
                      f"{phase.web_cpu * 1000 / max(phase.ok, 1):.2f} ms CPU/turn, errors {phase.errors}", flush=True)
    finally:
        for web in webs:
            web.stop()
        fake.stop()
    load_end = os.getloadavg()

    rows = []
    for p in phases:
        rows.append([p.processes, p.concurrency, p.ok, fmt(p.throughput, 1), fmt(percentile(p.latencies, 50) * 1000, 1)
                     if p.latencies else "—", fmt(percentile(p.latencies, 95) * 1000, 1) if p.latencies else "—",
                     fmt(p.web_cpu * 1000 / p.ok, 2) if p.ok else "—", f"{p.machine_busy * 100:.0f} %",
                     ", ".join(f"{k}×{v}" for k, v in sorted(p.errors.items())) or "0"])

    def mean_of(n: int, attr) -> float | None:
        values = [attr(p) for p in phases if p.processes == n and p.ok]
        return sum(values) / len(values) if values else None

    one, two = mean_of(1, lambda p: p.throughput), mean_of(2, lambda p: p.throughput)
    facts = machine_facts()
    text = [
        "## Scale-out: one vs two web processes (runtime JSON turns)",
        "",
        f"`{command_line()}` — {infra.label}; `python -m mejai.server` (daphne) processes; fake model with no "
        f"latency; {args.concurrency} virtual users per phase, {seconds:.0f} s per phase, phases interleaved; "
        f"two processes are fed round-robin per request (one session's turns go to both). "
        f"Machine: {facts.get('cpu', '?')}, {facts.get('cores', os.cpu_count())} cores; load average "
        f"{load_start[0]:.2f} before, {load_end[0]:.2f} after.",
        "",
        md_table(["web processes", "users", "turns", "turns/s", "p50 ms", "p95 ms", "web CPU ms/turn",
                  "machine busy", "errors"], rows),
        "",
        f"Mean turns/s: one process {fmt(one, 1)}, two processes {fmt(two, 1)}"
        + (f" ({two / one:.2f}×)." if one and two else "."),
    ]
    write_section(args.out, "\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
