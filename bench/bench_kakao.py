"""Kakao channel benchmark: skill acknowledgement at an open-loop rate, and bursts past capacity.

    .venv/bin/python bench/bench_kakao.py --out bench/results/kakao.md [--root /path/to/checkout] [--quick]

The server under test is one daphne process (mejai.asgi) of the checkout at --root (default: this
one — pass a baseline worktree to measure it with the same load) on PostgreSQL (a dedicated
database, recreated) and Redis (a dedicated db). The load generator runs in its own process
(`--loadgen`, started by this script): a raw asyncio HTTP/1.1 client with keep-alive connections
that sends each request at its scheduled time whatever the earlier ones are doing (open loop);
a request still unanswered after 10 s counts as lost.

Phases:

1. steady: 50 returning users, a fresh callback token per request, OPEN_RATE (200) requests/s for
   STEADY_SECONDS. Acknowledgement latency p50/p95/p99; web-process CPU ms and PostgreSQL CPU ms
   per acknowledgement (from /proc: the daphne process; the database's backend processes, found in
   pg_stat_activity); PostgreSQL transactions per acknowledgement (pg_stat_database). No Celery
   worker runs during the measurement (its database work would be counted as the web's): the jobs
   wait in Redis, which is flushed afterwards.
2. statements per acknowledgement of a returning user, counted by Django (CaptureQueriesContext)
   in a script run in the checkout under test, autocommit as in production.
3. bursts at 2x and 5x the target rate for BURST_SECONDS: the fraction acknowledged (`useCallback`:
   stored, queued), answered with the apology (a valid skill response), lost or invalid; latency of
   each kind; time to recover (after the burst, how long until a returning user's request is
   acknowledged again within 1 s); peak threads, database connections and RSS of the web process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))
from bench.common import free_port, port_wait  # noqa: E402

PG = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
DB_NAME = "mejai_bench_kakao"
REDIS_URL = os.environ.get("BENCH_KAKAO_REDIS_URL", "redis://127.0.0.1:6379/13")
QUEUE = "mejai-bench-kakao"
BOT_ID = "5ae9b76d7409b11ec845b746"
SECRET_HEADER, SECRET = "X-Mejai-Skill-Secret", "bench-secret"
USERS = 50
OPEN_RATE = 200.0
STEADY_SECONDS = 15.0
BURST_SECONDS = 10.0
LOST_AFTER = 10.0
CALLBACK_HOST = "bot-api.kakao.com"  # never contacted: no worker runs during these phases
TARGET_P99_MS = 100.0


# --- the load generator (its own process) ---------------------------------------------------------

def skill_body(*, token: str, user: str, text: str = "환불 규정 알려줘") -> bytes:
    body = {
        "intent": {"id": "i", "name": "폴백 블록"},
        "userRequest": {"timezone": "Asia/Seoul", "params": {"surface": "Kakaotalk.plusfriend"}, "utterance": text,
                        "lang": "ko", "user": {"id": user, "type": "botUserKey", "properties": {}},
                        "callbackUrl": f"https://{CALLBACK_HOST}/v1/bots/{BOT_ID}/callback/{token}"},
        "bot": {"id": BOT_ID, "name": "bench"},
        "action": {"id": "a", "name": "AI", "params": {}, "detailParams": {}, "clientExtra": {}},
    }
    return json.dumps(body, ensure_ascii=False).encode()


def request_bytes(port: int, body: bytes) -> bytes:
    head = (f"POST /kakao/skill HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json;charset=UTF-8\r\n{SECRET_HEADER}: {SECRET}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


class Connections:
    """Idle keep-alive connections; a request takes one or opens a new one (open loop: never waits)."""

    def __init__(self, port: int):
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def take(self):
        if self.idle:
            return self.idle.pop()
        return await asyncio.open_connection("127.0.0.1", self.port)

    def give(self, conn) -> None:
        self.idle.append(conn)


async def http_post(conns: Connections, payload: bytes) -> tuple[int, bytes]:
    reader, writer = await conns.take()
    try:
        writer.write(payload)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and "close" in value.lower():
                close = True
        body = await reader.readexactly(length)
    except BaseException:
        writer.close()
        raise
    if close:
        writer.close()
    else:
        conns.give((reader, writer))
    return status, body


def classify(status: int, body: bytes) -> str:
    from kakao.responses import skill_response_problems  # Django-free module

    try:
        data = json.loads(body)
    except ValueError:
        return "invalid"
    if status != 200 or skill_response_problems(data):
        return "invalid"
    return "ack" if data.get("useCallback") else "apology"


async def open_loop(port: int, *, rate: float, seconds: float, users: int, tag: str) -> list[tuple[float, float, str]]:
    """(scheduled offset s, latency ms or -1 when lost, kind) per request, sent on schedule."""
    conns = Connections(port)
    results: list[tuple[float, float, str]] = []
    total = int(rate * seconds)

    async def one(i: int, at: float):
        payload = request_bytes(port, skill_body(token=f"{tag}-{uuid.uuid4().hex}", user=f"user-{i % users}"))
        started = time.perf_counter()
        try:
            status, body = await asyncio.wait_for(http_post(conns, payload), LOST_AFTER)
            kind = classify(status, body)
            results.append((at, (time.perf_counter() - started) * 1000, kind))
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            results.append((at, -1.0, "lost"))

    tasks = []
    start = time.perf_counter()
    for i in range(total):
        at = i / rate
        delay = start + at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, at)))
    await asyncio.gather(*tasks)
    return results


async def recovery_probe(port: int, *, users: int, budget: float = 60.0) -> float | None:
    """Seconds until a returning user's request is acknowledged within 1 s again (None: not within budget)."""
    started = time.perf_counter()
    i = 0
    while time.perf_counter() - started < budget:
        conns = Connections(port)
        payload = request_bytes(port, skill_body(token=f"probe-{uuid.uuid4().hex}", user=f"user-{i % users}"))
        i += 1
        try:
            status, body = await asyncio.wait_for(http_post(conns, payload), 1.0)
            if classify(status, body) == "ack":
                return time.perf_counter() - started
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            pass
        for _, writer in conns.idle:
            writer.close()
        await asyncio.sleep(0.1)
    return None


def loadgen_main(args) -> None:
    async def run():
        results = await open_loop(args.port, rate=args.rate, seconds=args.seconds, users=args.users, tag=args.tag)
        recover = await recovery_probe(args.port, users=args.users) if args.recover else None
        return {"results": results, "recover": recover}

    print(json.dumps(asyncio.run(run())))


# --- the stack under test -----------------------------------------------------------------------

def stop(proc: subprocess.Popen | None) -> float:
    """SIGTERM (then SIGKILL) our own process group; returns the seconds it took to exit."""
    if proc is None or proc.poll() is not None:
        return 0.0
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    return time.monotonic() - started


def psql(sql: str, db: str = DB_NAME) -> str:
    return subprocess.run(["psql", f"{PG}/{db}", "-qAtc", sql], check=True, capture_output=True, text=True).stdout


def redis_flush() -> None:
    host_port, db = REDIS_URL.split("://", 1)[1].split("/", 1)
    host, _, port = host_port.partition(":")
    with socket.create_connection((host, int(port or 6379)), timeout=3) as s:
        s.sendall(f"SELECT {db}\r\nFLUSHDB\r\n".encode())
        s.recv(100)


def proc_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("Threads:", "VmRSS:")):
                    out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return out


def backend_pids() -> list[int]:
    return [int(p) for p in psql(f"select pid from pg_stat_activity where datname = '{DB_NAME}' "
                                 "and pid <> pg_backend_pid()").split()]


def db_xacts() -> int:
    return int(psql(f"select xact_commit + xact_rollback from pg_stat_database where datname = '{DB_NAME}'").strip())


SETUP = f"""
from runtime.models import Organization, Agent
from kakao.models import KakaoBot
org, _ = Organization.objects.get_or_create(slug="bench-kakao", defaults={{"name": "Bench Kakao"}})
agent, _ = Agent.objects.get_or_create(organization=org, name="bench", defaults={{"tools_enabled": False}})
KakaoBot.objects.update_or_create(bot_id="{BOT_ID}", defaults=dict(organization=org, agent=agent, name="bench bot",
    secret_header_name="{SECRET_HEADER}", secret_header_value="{SECRET}", allowed_callback_hosts=["{CALLBACK_HOST}"]))
"""

STATEMENTS = f"""
import json, uuid
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
import kakao.services as services
services.callback_enqueue = lambda *, task_id, **kw: None   # the broker is not what is counted
body = lambda token: {{"userRequest": {{"utterance": "환불 규정 알려줘", "user": {{"id": "count-user", "properties": {{}}}},
    "params": {{"surface": "Kakaotalk.plusfriend"}},
    "callbackUrl": "https://{CALLBACK_HOST}/v1/bots/{BOT_ID}/callback/" + token}}, "bot": {{"id": "{BOT_ID}"}}, "action": {{}}}}
client = Client(SERVER_NAME="localhost")
post = lambda: client.post("/kakao/skill", data=json.dumps(body(uuid.uuid4().hex)), content_type="application/json",
                           headers={{"{SECRET_HEADER}": "{SECRET}"}})
post(); post()   # first contact, then the cache is warm
with CaptureQueriesContext(connection) as q:
    r = post()
assert r.json().get("useCallback"), r.content
print("STATEMENTS", len(q.captured_queries))
"""


class Stack:
    def __init__(self, root: Path, *, env_extra: dict[str, str], asgi: str = "mejai.asgi:application"):
        self.root = root
        self.port = free_port()
        self.env = {
            **os.environ, "DATABASE_URL": self._database_recreate(), "REDIS_URL": REDIS_URL, "CELERY_QUEUE": QUEUE,
            "CACHE_PREFIX": "bench-kakao", "CHANNEL_PREFIX": "bench-kakao", "DJANGO_SETTINGS_MODULE": "mejai.settings",
            "SECRET_KEY": "bench-kakao-secret-key-" + uuid.uuid4().hex, "DEBUG": "0", "LOG_LEVEL": "WARNING",
            "ALLOWED_HOSTS": "127.0.0.1,localhost", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "x",
            "MEJAI_VAR_DIR": "/tmp/mejai-bench-kakao-var", "IN_PROCESS_BEAT": "0", **env_extra,
        }
        redis_flush()
        python = str(root / ".venv" / "bin" / "python")
        subprocess.run([python, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=root, env=self.env, check=True)
        subprocess.run([python, "manage.py", "shell", "-c", SETUP], cwd=root, env=self.env, check=True)
        out = subprocess.run([python, "manage.py", "shell", "-c", STATEMENTS], cwd=root, env=self.env,
                             capture_output=True, text=True)
        self.statements = next((int(line.split()[1]) for line in out.stdout.splitlines()
                                if line.startswith("STATEMENTS")), None)
        if self.statements is None:
            print(out.stdout, out.stderr, file=sys.stderr)
        self.web = subprocess.Popen([str(root / ".venv" / "bin" / "daphne"), "-b", "127.0.0.1", "-p", str(self.port),
                                     asgi], cwd=root, env=self.env, start_new_session=True,
                                    stdout=subprocess.DEVNULL, stderr=open("/tmp/bench-kakao-daphne.log", "w"))
        port_wait(self.port, proc=self.web, timeout=60)

    @staticmethod
    def _database_recreate() -> str:
        for sql in (f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)', f'CREATE DATABASE "{DB_NAME}"'):
            psql(sql, db="postgres")
        return f"{PG}/{DB_NAME}"

    def loadgen(self, *, rate: float, seconds: float, tag: str, recover: bool = False) -> dict:
        out = subprocess.run([sys.executable, __file__, "--loadgen", "--port", str(self.port), "--rate", str(rate),
                              "--seconds", str(seconds), "--users", str(USERS), "--tag", tag]
                             + (["--recover"] if recover else []), capture_output=True, text=True, check=True,
                             cwd=HERE)
        return json.loads(out.stdout)

    def close(self) -> float:
        return stop(self.web)


class Monitor(threading.Thread):
    """Peak threads, RSS (web process) and database connections, sampled every 100 ms."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = {"threads": 0, "rss_mb": 0.0, "db_connections": 0}
        self.running = True

    def run(self):
        while self.running:
            status = proc_status(self.pid)
            self.peak["threads"] = max(self.peak["threads"], status.get("Threads", 0))
            self.peak["rss_mb"] = max(self.peak["rss_mb"], status.get("VmRSS", 0) / 1024)
            try:
                self.peak["db_connections"] = max(self.peak["db_connections"], len(backend_pids()))
            except subprocess.CalledProcessError:
                pass
            time.sleep(0.1)

    def stop(self) -> dict:
        self.running = False
        self.join(5)
        return self.peak


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def steady(stack: Stack, *, seconds: float) -> dict:
    stack.loadgen(rate=50, seconds=2, tag="warm")  # first contact of every user, connections, caches
    pids_before = backend_pids()
    web_cpu, pg_cpu = proc_cpu(stack.web.pid), {pid: proc_cpu(pid) for pid in pids_before}
    xacts = db_xacts()
    data = stack.loadgen(rate=OPEN_RATE, seconds=seconds, tag="steady")
    web_used = proc_cpu(stack.web.pid) - web_cpu
    pg_used = sum(proc_cpu(pid) - pg_cpu.get(pid, 0.0) for pid in set(backend_pids()) | set(pids_before))
    xacts = db_xacts() - xacts - 2  # the two psql reads of pg_stat_database
    results = data["results"]
    acks = [ms for _, ms, kind in results if kind == "ack"]
    n = len(results)
    return {"rate": OPEN_RATE, "seconds": seconds, "requests": n, "acks": len(acks),
            "other": {k: sum(1 for r in results if r[2] == k) for k in ("apology", "invalid", "lost")},
            "p50": percentile(acks, 50), "p95": percentile(acks, 95), "p99": percentile(acks, 99),
            "max": max(acks) if acks else float("nan"),
            "web_cpu_ms": web_used * 1000 / max(1, len(acks)), "pg_cpu_ms": pg_used * 1000 / max(1, len(acks)),
            "xacts": xacts / max(1, len(acks))}


def burst(stack: Stack, *, factor: float, seconds: float) -> dict:
    rate = OPEN_RATE * factor
    monitor = Monitor(stack.web.pid)
    monitor.start()
    rest = proc_status(stack.web.pid)
    data = stack.loadgen(rate=rate, seconds=seconds, tag=f"burst{factor}", recover=True)
    peak = monitor.stop()
    after = proc_status(stack.web.pid)
    results = data["results"]
    n = len(results)
    by = {k: [ms for _, ms, kind in results if kind == k] for k in ("ack", "apology", "invalid", "lost")}
    within5 = sum(1 for _, ms, kind in results if kind in ("ack", "apology") and 0 <= ms <= 5000)
    return {"factor": factor, "rate": rate, "requests": n, **{k: len(v) for k, v in by.items()},
            "valid_within_5s": within5,
            "ack_p50": percentile(by["ack"], 50), "ack_p99": percentile(by["ack"], 99),
            "apology_p50": percentile(by["apology"], 50), "apology_p99": percentile(by["apology"], 99),
            "apology_max": max(by["apology"]) if by["apology"] else float("nan"),
            "recover_s": data["recover"], "peak": peak, "threads_rest": rest.get("Threads"),
            "threads_after": after.get("Threads"), "db_connections_after": len(backend_pids())}


def git_commit(root: Path) -> str:
    out = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    return out.stdout.strip()[:90]


def render(label: str, root: Path, asgi: str, stack_statements, s: dict, bursts: list[dict], shutdown_s: float, load) -> str:
    met = s["p99"] <= TARGET_P99_MS and s["acks"] == s["requests"]
    lines = [
        f"### {label}: `{git_commit(root)}`", "",
        f"ASGI application: `{asgi}`.", "",
        f"Load average (1 min) at start / end: {load[0]:.1f} / {load[1]:.1f}. Statements per acknowledgement of a "
        f"returning user (Django-counted, autocommit): **{stack_statements}**.", "",
        f"Steady open loop, {s['rate']:.0f} req/s for {s['seconds']:.0f} s, {USERS} returning users, fresh token each:", "",
        "| requests | acknowledged | apology / invalid / lost | ack p50 ms | p95 ms | p99 ms | max ms | "
        "web CPU ms/ack | PostgreSQL CPU ms/ack | PG transactions/ack |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {s['requests']} | {s['acks']} | {s['other']['apology']} / {s['other']['invalid']} / {s['other']['lost']} | "
        f"{s['p50']:.1f} | {s['p95']:.1f} | {s['p99']:.1f} | {s['max']:.1f} | {s['web_cpu_ms']:.2f} | "
        f"{s['pg_cpu_ms']:.2f} | {s['xacts']:.2f} |", "",
        f"Target ack p99 ≤ {TARGET_P99_MS:.0f} ms at {OPEN_RATE:.0f} req/s: **{'met' if met else 'not met'}**.", "",
        f"Bursts ({BURST_SECONDS:.0f} s each, open loop; lost = no answer within {LOST_AFTER:.0f} s):", "",
        "| rate | requests | acknowledged | apology | invalid | lost | valid answer ≤ 5 s | ack p50 / p99 ms | "
        "apology p50 / p99 / max ms | recovered after s | peak threads (rest → after) | peak DB conns (after) | "
        "peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for b in bursts:
        recover = f"{b['recover_s']:.1f}" if b["recover_s"] is not None else "> 60"
        lines.append(
            f"| {b['rate']:.0f}/s ({b['factor']:.0f}×) | {b['requests']} | {b['ack']} ({b['ack'] / b['requests']:.0%}) | "
            f"{b['apology']} ({b['apology'] / b['requests']:.0%}) | {b['invalid']} | {b['lost']} | "
            f"{b['valid_within_5s'] / b['requests']:.0%} | {b['ack_p50']:.0f} / {b['ack_p99']:.0f} | "
            f"{b['apology_p50']:.0f} / {b['apology_p99']:.0f} / {b['apology_max']:.0f} | {recover} | "
            f"{b['peak']['threads']} ({b['threads_rest']} → {b['threads_after']}) | {b['peak']['db_connections']} "
            f"({b['db_connections_after']}) | {b['peak']['rss_mb']:.0f} |")
    lines += ["", f"Web process shutdown after the bursts: {shutdown_s:.1f} s.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "bench" / "results" / "kakao.md"))
    parser.add_argument("--root", default=str(HERE), help="the checkout under test (its .venv, manage.py, daphne)")
    parser.add_argument("--label", default="after")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--append", action="store_true", help="append the section to --out instead of replacing it")
    parser.add_argument("--env", action="append", default=[], help="NAME=value for the web process (repeatable)")
    parser.add_argument("--asgi", default="mejai.asgi:application",
                        help="the ASGI application daphne serves (mejai.asgi mounts the Kakao skill guard, "
                             "kakao/asgi.py, in front of Django)")
    parser.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int)
    parser.add_argument("--rate", type=float)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--users", type=int, default=USERS)
    parser.add_argument("--tag", default="r")
    parser.add_argument("--recover", action="store_true")
    args = parser.parse_args()
    if args.loadgen:
        loadgen_main(args)
        return
    root = Path(args.root).resolve()
    env_extra = dict(item.split("=", 1) for item in args.env)
    load_before = os.getloadavg()[0]
    stack = Stack(root, env_extra=env_extra, asgi=args.asgi)
    try:
        s = steady(stack, seconds=5 if args.quick else STEADY_SECONDS)
        bursts = [burst(stack, factor=f, seconds=3 if args.quick else BURST_SECONDS) for f in (2, 5)]
    finally:
        shutdown = stack.close()
    text = render(args.label, root, args.asgi, stack.statements, s, bursts, shutdown, (load_before, os.getloadavg()[0]))
    out = Path(args.out)
    if args.append and out.exists():
        text = out.read_text() + "\n" + text
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
