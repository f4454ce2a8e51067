"""Mattermost bench: mention → first visible text, posts per second, REST calls per mention, an outage backlog.

    .venv/bin/python bench/bench_mchat.py --out bench/results/mchat.md [--quick]

Production shape on this machine: `manage.py mchat_worker` as its own process on PostgreSQL (a dedicated
database, recreated) and Redis when reachable (else the embedded default), against the fake Mattermost
server and the fake OpenAI-compatible server on loopback (both run in this process, on threads of their own).

1. Latency: one mention at a time; "first visible text" is when the fake server stores the bot's first
   post in the thread, minus the model's configured time to first token (what the bot adds).
2. Throughput: a burst of mentions over 10 channels with a zero-latency model, with the default REST rate
   limiter (5 requests/s per bot, as in production) and with the limiter raised (the worker's own ceiling).
3. REST calls per answered mention (the fake server counts them).
4. Outage: the server goes down, mentions pile up (stored by the fake, as other nodes of a cluster would),
   the server comes back: all answered exactly once, in order per channel; the time to drain is measured.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import common  # noqa: E402

from mchat.fakes.server import FakeMattermost, demo_world  # noqa: E402
from runtime.fakes.openai_server import FakeLLMConfig, FakeOpenAIServer  # noqa: E402

LLM_TTFT = 0.2
REPLY = "환불은 구매 후 7일 이내에 가능하고, 배송은 평균 2일 걸립니다. 더 궁금한 점이 있으면 말씀해 주세요."
TOKEN = "bench-bot-token"
CHANNELS = 10


def worker_start(infra, llm: FakeOpenAIServer, **env) -> subprocess.Popen:
    extra = {"OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "bench", "LLM_MAX_RETRIES": "0",
             "MCHAT_LOG_LEVEL": "WARNING", "MCHAT_BACKOFF_MAX_SECONDS": "5"}
    extra.update({k: str(v) for k, v in env.items()})
    log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), "mejai-bench-mchat-worker.log"), "a")  # noqa: SIM115
    return subprocess.Popen([common.PYTHON, "manage.py", "mchat_worker"], cwd=ROOT, env=common.django_env(infra, extra),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise TimeoutError(what)


def bot_reply_done(mm, root_id: str, bot_id: str, text: str) -> bool:
    with mm._lock:
        return any(p["root_id"] == root_id and p["user_id"] == bot_id and p["message"] == text
                   for p in mm.posts.values())


def first_visible(mm, root_id: str) -> float | None:
    with mm._lock:
        for record in mm.post_log:
            if record.kind == "create" and record.root_id == root_id and record.message.strip():
                return record.at
    return None


def bot_rest_calls(mm, bot_id: str) -> int:
    with mm._lock:
        return sum(1 for r in mm.requests if r.user_id == bot_id and r.path != "/api/v4/websocket")


def phase_latency(mm, world, llm, n: int) -> dict:
    llm.config = FakeLLMConfig(ttft=LLM_TTFT, reply=REPLY)
    bot = world["bot"]
    latencies, calls = [], []
    # A first mention of the person, not counted: it also reads their profile and links their end user.
    warm = mm.user_post(world["minsu"], world["town"], "@ai 처음 인사")
    cold_sent = time.time()
    cold = wait(lambda: first_visible(mm, warm["id"]), 30, "first text") - cold_sent
    wait(lambda: bot_reply_done(mm, warm["id"], bot["id"], REPLY), 30, "final text")
    for i in range(n):
        before = bot_rest_calls(mm, bot["id"])
        sent = time.time()
        post = mm.user_post(world["minsu"], world["town"], f"@ai 질문 {i}")
        shown = wait(lambda post=post: first_visible(mm, post["id"]), 30, "first text")
        wait(lambda post=post: bot_reply_done(mm, post["id"], bot["id"], REPLY), 30, "final text")
        latencies.append((shown - sent - LLM_TTFT) * 1000)
        time.sleep(0.3)  # let the final bookkeeping settle before the next count
        calls.append(bot_rest_calls(mm, bot["id"]) - before)
    print("latencies (ms):", [round(x) for x in latencies], flush=True)
    return {"n": n, "p50": common.percentile(latencies, 50), "p95": common.percentile(latencies, 95),
            "max": max(latencies), "calls_mean": sum(calls) / len(calls), "cold_ms": (cold - LLM_TTFT) * 1000}


def phase_burst(mm, world, channels, llm, n: int) -> dict:
    llm.config = FakeLLMConfig(ttft=0.0, reply=REPLY)
    bot = world["bot"]
    posts = []
    started = time.time()
    for i in range(n):
        posts.append(mm.user_post(world["minsu"], channels[i % len(channels)], f"@ai 빠른 질문 {i}"))
    wait(lambda: all(bot_reply_done(mm, p["id"], bot["id"], REPLY) for p in posts), 600, "burst answered")
    elapsed = time.time() - started
    return {"n": n, "seconds": elapsed, "per_second": n / elapsed}


def phase_outage(mm, world, channels, llm, n: int, outage: float) -> dict:
    llm.config = FakeLLMConfig(ttft=0.0, reply=REPLY)
    bot = world["bot"]
    mm.down()
    began = time.monotonic()
    posts = []
    gap = outage / max(1, n)
    for i in range(n):
        posts.append(mm.user_post(world["minsu"], channels[i % len(channels)], f"@ai 장애 중 질문 {i}"))
        time.sleep(gap * 0.9)
    time.sleep(max(0.0, outage - (time.monotonic() - began)))
    mm.up()
    back = time.time()
    wait(lambda: all(bot_reply_done(mm, p["id"], bot["id"], REPLY) for p in posts), 900, "outage drained")
    drained = time.time() - back
    time.sleep(2.0)
    with mm._lock:
        replies = [p for p in mm.posts.values() if p["user_id"] == bot["id"]]
    by_root: dict[str, int] = {}
    for reply in replies:
        by_root[reply["root_id"]] = by_root.get(reply["root_id"], 0) + 1
    once = all(by_root.get(p["id"]) == 1 for p in posts)
    in_order = True
    for channel in channels:
        asked = [p["id"] for p in posts if p["channel_id"] == channel["id"]]
        shown = [r["root_id"] for r in sorted(replies, key=lambda r: r["create_at"])
                 if r["channel_id"] == channel["id"] and r["root_id"] in set(asked)]
        in_order = in_order and shown == asked
    return {"n": n, "outage": outage, "drain": drained, "once": once, "in_order": in_order}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench/results/mchat.md")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    quick = args.quick
    n_latency, n_burst, n_outage, outage = (10, 40, 40, 20.0) if quick else (30, 60, 200, 300.0)

    infra = common.infra_detect(name="mchat", redis_db=13)
    common.migrate(infra)
    org = common.bench_org_create(infra)
    mm = FakeMattermost().start()
    world = demo_world(mm, bot_token=TOKEN)
    channels = [world["town"]] + [mm.channel_add(world["team"], f"bench-{i}", members=[world["bot"], world["minsu"]])
                                  for i in range(CHANNELS - 1)]
    llm = FakeOpenAIServer(config=FakeLLMConfig(ttft=LLM_TTFT, reply=REPLY)).start()
    common.django_script(infra, f"""
from mchat.models import MattermostBot
from runtime.models import Agent, Organization
org = Organization.objects.get(pk={org['org_id']})
agent = Agent.objects.get(organization=org, name={org['agent']!r})
MattermostBot.objects.update_or_create(organization=org, name="bench", defaults=dict(
    agent=agent, server_url={mm.url!r}, token={TOKEN!r}, verify_tls=False, mention_name="ai"))
result = True
""")
    results: dict = {}
    worker = worker_start(infra, llm)
    try:
        wait(lambda: mm.ws_open_count(user=world["bot"]) >= 1, 60, "worker connected")
        results["latency"] = phase_latency(mm, world, llm, n_latency)
        results["burst_default"] = phase_burst(mm, world, channels, llm, n_burst)
        common.process_stop(worker)
        worker = worker_start(infra, llm, MCHAT_RATE_LIMIT_PER_SECOND=1000)
        wait(lambda: mm.ws_open_count(user=world["bot"]) >= 1, 60, "worker reconnected")
        results["burst_fast"] = phase_burst(mm, world, channels, llm, n_burst)
        common.process_stop(worker)
        worker = worker_start(infra, llm)
        wait(lambda: mm.ws_open_count(user=world["bot"]) >= 1, 60, "worker reconnected")
        results["outage"] = phase_outage(mm, world, channels, llm, n_outage, outage)
        rss = common.rss_mb(worker.pid)
    finally:
        common.process_stop(worker)
        mm.stop()
        llm.stop()

    lat, bd, bf, out = results["latency"], results["burst_default"], results["burst_fast"], results["outage"]
    text = f"""## Mattermost (Mchat) worker

`{common.command_line()}` — {infra.label}; fake Mattermost and fake model on loopback; worker RSS at the end
{common.fmt(rss, 0, ' MB')}.

| figure | value | target |
|---|---:|---|
| mention → first visible text, minus the model's TTFT ({LLM_TTFT * 1000:.0f} ms), p50 / p95 / max over {lat['n']} | {common.fmt(lat['p50'], 0)} / {common.fmt(lat['p95'], 0)} / {common.fmt(lat['max'], 0)} ms | p95 ≤ 300 ms {common.verdict(lat['p95'] is not None and lat['p95'] <= 300)} |
| the person's first mention (reads their profile, links their end user), minus TTFT | {lat['cold_ms']:.0f} ms | — |
| REST calls per answered mention | {lat['calls_mean']:.1f} | — |
| posts answered per second, one worker, zero-latency model, default limiter (5 req/s per bot) | {bf_fmt(bd)} | — |
| the same with the limiter raised (the worker's own ceiling) | {bf_fmt(bf)} | — |
| outage of {out['outage']:.0f} s with {out['n']} mentions over {CHANNELS} channels: time to drain after the server is back | {out['drain']:.1f} s | — |
| … every mention answered exactly once | {'yes' if out['once'] else '**no**'} | {common.verdict(out['once'])} |
| … replies in the order asked, per channel | {'yes' if out['in_order'] else '**no**'} | {common.verdict(out['in_order'])} |

The default limiter is what bounds the burst and the drain: every REST call of a bot shares 5 requests/s
(Mattermost's own limit is per IP, 10/s with a burst of 100, shared with everything behind that IP).
"""
    common.write_section(args.out, text)
    print(text)


def bf_fmt(burst: dict) -> str:
    return f"{burst['per_second']:.1f}/s ({burst['n']} in {burst['seconds']:.1f} s)"


if __name__ == "__main__":
    main()
