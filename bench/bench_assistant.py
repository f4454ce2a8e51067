"""The realtime assistant: relay overhead against the seed's Node.js `ws` relay, sockets per process, resume.

    .venv/bin/python bench/bench_assistant.py --out bench/results/assistant.md [--quick]

* Overhead: time from sending `chat` to the first `response` frame, minus the model's time to first
  token (measured directly against the same fake model), p50/p95 at 10 and 100 concurrent clients;
  the same for the Node relay (`../shared/peers/node-ws`, run from a temporary copy after `npm ci`)
  in the same run, and the ratio.
* CPU: the web process's (and the Node relay's) user+system CPU from /proc over each level,
  divided by the messages answered — ms of CPU per message, which a busy machine does not inflate
  the way it does latency.
* Sockets: authenticated idle sockets one daphne process holds, and its memory per socket.
* Resume: reconnect with `last_seq` mid-answer → the first missed frame, p50/p95.

`--label` names the code measured (the bench can be run from a worktree of an older commit, with
the same script, to put before and after side by side).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    ROOT,
    command_line,
    cpu_seconds,
    django_script,
    fake_llm_start,
    fmt,
    free_port,
    infra_detect,
    md_table,
    migrate,
    percentile,
    port_wait,
    process_stop,
    web_start,
    write_section,
)

NODE_PEER = ROOT.parent / "shared" / "peers" / "node-ws"
TTFT = 0.15
TPS = 40.0
REPLY = " ".join(f"토큰{i}" for i in range(40))
STALL_SECONDS = 30.0  # a chat with no frame for this long counts as not answered


def member_token(infra) -> dict:
    code = """
from django.contrib.auth import get_user_model
from rest_framework_simplejwt.tokens import AccessToken
from runtime.models import Agent, Membership, Organization
org, _ = Organization.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
Agent.objects.get_or_create(organization=org, name="bench-agent")
user, _ = get_user_model().objects.get_or_create(username="bench-member", defaults={"is_staff": True})
Membership.objects.get_or_create(user=user, defaults={"organization": org})
from datetime import timedelta
token = AccessToken.for_user(user)
token.set_exp(lifetime=timedelta(hours=2))
result = {"token": str(token)}
"""
    return django_script(infra, code)


async def model_ttft(base_url: str, n: int) -> list[float]:
    """The model's own time to first token, as a client on this machine sees it."""
    import httpx

    samples = []
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(n):
            started = time.perf_counter()
            async with client.stream("POST", f"{base_url}/chat/completions", json={
                    "model": "fake", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as response:
                async for line in response.aiter_lines():
                    if '"content": "' in line or '"content":"' in line:
                        if '"content": ""' in line or '"content":""' in line:
                            continue
                        samples.append(time.perf_counter() - started)
                        break
    return samples


async def mejai_client(url: str, token: str, rounds: int, results: list[float], ready: asyncio.Event,
                       go: asyncio.Event) -> None:
    import websockets

    async with websockets.connect(f"{url}/ws/chat/bench-{uuid.uuid4().hex[:16]}", max_size=None) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        while json.loads(await ws.recv())["type"] != "ready":
            pass
        ready.set()
        await go.wait()
        for n in range(rounds):
            started = time.perf_counter()
            await ws.send(json.dumps({"type": "chat", "message": f"질문 {n}", "project_id": "bench",
                                      "agent_name": "bench-agent"}))
            first = None
            try:
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), STALL_SECONDS))
                    if frame["type"] == "response" and first is None:
                        first = time.perf_counter() - started
                    if frame["type"] in ("end", "error") and frame.get("turn_id"):
                        break
            except TimeoutError:
                results.append(None)  # counted as not answered; this client stops here
                return
            results.append(first)


async def node_client(url: str, rounds: int, results: list[float], ready: asyncio.Event, go: asyncio.Event):
    import websockets

    async with websockets.connect(url, max_size=None) as ws:
        ready.set()
        await go.wait()
        chat_id = uuid.uuid4().hex
        for n in range(rounds):
            started = time.perf_counter()
            await ws.send(json.dumps({"chatId": chat_id, "message": f"질문 {n}"}))
            first = None
            try:
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), STALL_SECONDS))
                    if "delta" in frame and first is None:
                        first = time.perf_counter() - started
                    if "reply" in frame:
                        break
            except TimeoutError:
                results.append(None)
                return
            results.append(first)


async def concurrent_run(make_client, clients: int, rounds: int) -> list[float]:
    """First-piece times of every chat answered; a client that could not connect or stalled
    contributes fewer (the table shows n against clients × rounds)."""
    results: list[float] = []
    readies = [asyncio.Event() for _ in range(clients)]
    go = asyncio.Event()
    tasks = [asyncio.ensure_future(make_client(results, r, go)) for r in readies]
    waits = [asyncio.ensure_future(r.wait()) for r in readies]
    await asyncio.wait([*waits], timeout=120)  # clients whose connect failed never get ready
    for w in waits:
        w.cancel()
    go.set()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    failed = [d for d in done if isinstance(d, BaseException)]
    if failed:
        print(f"[assistant] {len(failed)} clients failed, e.g. {failed[0]!r}", flush=True)
    return [x for x in results if x is not None]


def node_relay_start(base_url: str):
    """The Node peer from a temporary copy (nothing of it enters the repository)."""
    if not NODE_PEER.exists() or not shutil.which("node") or not shutil.which("npm"):
        return None, None
    tmp = Path(tempfile.mkdtemp(prefix="mejai-node-ws-"))
    for name in ("index.js", "package.json", "package-lock.json"):
        shutil.copy(NODE_PEER / name, tmp / name)
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=tmp, check=True, timeout=300,
                   capture_output=True)
    port = free_port()
    proc = subprocess.Popen(["node", "index.js"], cwd=tmp, env={**os.environ, "PORT": str(port),
                                                               "OPENAI_BASE_URL": base_url},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    port_wait(port, proc=proc)
    return proc, (tmp, port)


async def idle_sockets(url: str, token: str, count: int, pid: int) -> tuple[int, float | None]:
    """Open `count` authenticated idle sockets; (how many held, KB per socket of the web process)."""
    import websockets
    from common import rss_mb

    before = rss_mb(pid)
    sockets = []
    sem = asyncio.Semaphore(100)

    async def one():
        async with sem:
            ws = await websockets.connect(f"{url}/ws/chat/idle-{uuid.uuid4().hex[:16]}", max_size=None,
                                          open_timeout=60, ping_interval=None)
            await ws.send(json.dumps({"type": "auth", "token": token}))
            while json.loads(await asyncio.wait_for(ws.recv(), 60))["type"] != "ready":
                pass
            sockets.append(ws)

    results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    held = len(sockets)
    errors = [r for r in results if isinstance(r, Exception)]
    await asyncio.sleep(2)
    after = rss_mb(pid)
    per_socket = ((after - before) * 1024 / held) if held and before and after else None
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    if errors:
        print(f"idle sockets: {len(errors)} failed, e.g. {errors[0]!r}", flush=True)
    return held, per_socket, errors


async def resume_latency(url: str, token: str, tries: int) -> list[float]:
    """Disconnect mid-answer, reconnect with last_seq: time from sending `auth` to the first missed frame."""

    samples = []
    for _ in range(tries):
        try:
            samples.append(await asyncio.wait_for(resume_once(url, token), 120))
        except Exception as exc:  # one failed try is reported, not fatal
            print(f"[assistant] a resume try failed: {exc!r}", flush=True)
    return samples


async def resume_once(url: str, token: str) -> float:
    import websockets

    path = f"{url}/ws/chat/resume-{uuid.uuid4().hex[:16]}"
    async with websockets.connect(path, max_size=None) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        while json.loads(await ws.recv())["type"] != "ready":
            pass
        await ws.send(json.dumps({"type": "chat", "message": "길게", "project_id": "bench",
                                  "agent_name": "bench-agent"}))
        last = 0
        while True:
            frame = json.loads(await ws.recv())
            last = frame["seq"]
            if frame["type"] == "response":
                break
    await asyncio.sleep(0.3)  # frames keep coming while away
    async with websockets.connect(path, max_size=None) as ws:
        started = time.perf_counter()
        await ws.send(json.dumps({"type": "auth", "token": token, "last_seq": last}))
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] != "ready" and frame["seq"] > last:
                took = time.perf_counter() - started
                break
        while json.loads(await ws.recv())["type"] != "end":
            pass
    return took


def ms(values, p) -> str:
    v = percentile(values, p)
    return fmt(v * 1000 if v is not None else None, 1)


def files_limit_raise() -> None:
    """5,000 sockets need more than the usual 1,024 descriptors, here and in the web process (inherited)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def cpu_ms_per(pid: int | None, before: float | None, count: int) -> str:
    after = cpu_seconds(pid) if pid else None
    if after is None or before is None or not count:
        return "—"
    return fmt((after - before) * 1000 / count, 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/assistant.md")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--levels", default="10,100")
    parser.add_argument("--sockets", type=int, default=None, help="idle sockets to open (5,000; 1,000 with --quick)")
    parser.add_argument("--label", default="", help="what code this is (a commit), for the heading")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    rounds = 2 if args.quick else 3
    idle_count = args.sockets or (1000 if args.quick else 5000)
    files_limit_raise()

    infra = infra_detect(name="assistant")
    migrate(infra)
    token = member_token(infra)["token"]
    fake = fake_llm_start(ttft=TTFT, tps=TPS, reply=REPLY)
    web = web_start(infra, env={"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "bench",
                                "LLM_MAX_RETRIES": "0", "DB_POOL_MAX": "40"})
    node_proc, node_info = None, None
    rows, notes = [], []
    try:
        print("[assistant] web up; starting the Node relay", flush=True)
        try:
            node_proc, node_info = node_relay_start(fake.base_url)
        except Exception as exc:  # no npm registry, no node: mejai's figures still count
            notes.append(f"Node relay not run: {type(exc).__name__}: {exc}")
        print(f"[assistant] node relay: {bool(node_info)} {notes}", flush=True)
        base = asyncio.run(model_ttft(fake.base_url, 20))
        model = percentile(base, 50)
        ws_url = web.url.replace("http://", "ws://")
        cpu_rows = []
        for clients in levels:
            cpu_before = cpu_seconds(web.pid)
            mejai = asyncio.run(concurrent_run(
                lambda res, ready, go: mejai_client(ws_url, token, rounds, res, ready, go), clients, rounds))
            cpu_m = cpu_ms_per(web.pid, cpu_before, len(mejai))
            node, cpu_n = [], "—"
            if node_info:
                node_before = cpu_seconds(node_proc.pid)
                node = asyncio.run(concurrent_run(
                    lambda res, ready, go: node_client(f"ws://127.0.0.1:{node_info[1]}", rounds, res, ready, go),
                    clients, rounds))
                cpu_n = cpu_ms_per(node_proc.pid, node_before, len(node))
            print(f"[assistant] {clients} clients: mejai {len(mejai)}, node {len(node)}", flush=True)
            over_m = [x - model for x in mejai]
            over_n = [x - model for x in node]
            ratio = (percentile(over_m, 50) / percentile(over_n, 50)) if node and percentile(over_n, 50) else None
            rows.append([clients, f"{len(mejai)}/{clients * rounds}", ms(over_m, 50), ms(over_m, 95), f"{len(node)}/{clients * rounds}", ms(over_n, 50),
                         ms(over_n, 95), fmt(ratio, 2, "×") if ratio else "—"])
            cpu_rows.append([clients, cpu_m, cpu_n])
        load_during = os.getloadavg()
        held, per_socket, socket_errors = asyncio.run(idle_sockets(ws_url, token, idle_count, web.pid))
        print(f"[assistant] idle sockets {held}", flush=True)
        resumes = asyncio.run(resume_latency(ws_url, token, 10 if args.quick else 20))
    finally:
        process_stop(web.proc)
        if node_proc is not None:
            process_stop(node_proc)
            shutil.rmtree(node_info[0], ignore_errors=True)
        fake.stop()

    label = f" — {args.label}" if args.label else ""
    text = [
        f"## Realtime assistant (`ws/chat`){label}",
        "",
        f"`{command_line()}` — {infra.label}; one daphne process; fake model TTFT {TTFT * 1000:.0f} ms "
        f"(measured directly: p50 {fmt(model * 1000, 1)} ms), {TPS:.0f} tokens/s, {rounds} chats per client; "
        f"load average during the chats {' '.join(f'{x:.2f}' for x in load_during)}.",
        "",
        "Overhead = time from sending a message to its first streamed piece, minus the model's TTFT (ms).",
        "",
        md_table(["clients", "mejai n", "mejai p50", "mejai p95", "Node n", "Node p50", "Node p95",
                  "p50 ratio (target ≤ 1.5×)"], rows),
        "",
        "CPU per message (the whole answer: 40 pieces), ms, from /proc:",
        "",
        md_table(["clients", "mejai web process", "Node relay"], cpu_rows),
        "",
        md_table(["figure", "value", "target"], [
            ["idle authenticated sockets held by one process", f"{held} of {idle_count}", "≥ 5,000"],
            ["memory per socket (RSS growth / sockets)", fmt(per_socket, 1, " KB"), "≤ 50 KB"],
            ["resume → first missed frame p50 / p95",
             f"{ms(resumes, 50)} / {ms(resumes, 95)} ms", "—"],
        ]),
    ]
    if socket_errors:
        kinds = sorted({type(e).__name__ for e in socket_errors})
        notes.append(f"{len(socket_errors)} idle sockets failed ({', '.join(kinds)}), e.g. {socket_errors[0]!r}"[:300])
    if notes:
        text += ["", *[f"* {n}" for n in notes]]
    write_section(args.out, "\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
