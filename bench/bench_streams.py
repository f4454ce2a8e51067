"""Streams benchmark: SSE time to first delta over the model's TTFT vs the Node relay, open streams per
process (RSS and threads), CPU per streamed turn — this checkout and, with --baseline, another one.

    .venv/bin/python bench/bench_streams.py --out bench/results/streams.md [--quick] [--streams N]
        [--baseline /path/to/other/checkout]

For each checkout (the baseline first, then this one, each with a fresh web process):

* **TTFD overhead**: 10 concurrent clients, each sending streamed `POST /api/runtime/chat` turns in
  turn; overhead = time to the first `delta` event minus the fake model's TTFT (0.2 s). The Node
  relay (`../shared/peers/node-ws`, from a temporary copy after `npm ci`) answers the same fake model
  over WebSocket in the same run, 10 concurrent clients; its overhead is measured the same way.
* **CPU per turn**: the web process's CPU seconds (/proc) over that phase, per streamed turn.
* **Open streams**: N widget session streams (`GET /api/widget/stream`, raw sockets) held at once;
  RSS growth per stream and the process's thread count with them open.

The web process is daphne `mejai.asgi:application` against PostgreSQL + Redis when reachable
(database `mejai_bench_stream_<label>`, Redis db 2), else the embedded default; the fake model runs
in its own process; this script is the load generator, on the same cores (it says so).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from bench_assistant import concurrent_run, node_client, node_relay_start  # noqa: E402
from bench_widgets_api import (  # noqa: E402
    KEEPALIVE_SECONDS,
    SSE_TTFT,
    WIDGET_SCRIPT,
    raise_fd_limit,
    sse_phase,
    streams_phase,
    threads_of,
)
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
    process_stop,
    verdict,
    web_start,
    write_section,
)

TARGET_P95_MS = 15.0
TARGET_RATIO = 1.5
TARGET_STREAMS = 5000
TARGET_KB_PER_STREAM = 50.0
CONCURRENCY = 10


def git_commit(path: Path) -> str:
    try:
        head = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+changes" if dirty else "")
    except Exception:  # noqa: BLE001
        return "?"


def one_checkout(checkout: Path, label: str, *, quick: bool, stream_count: int, node_port: int | None) -> dict:
    """Every figure for one checkout, with its own web process and database."""
    common.ROOT = checkout  # web_start / manage run from this checkout (the same venv)
    infra = infra_detect(name=f"stream_{label}", redis_db=2)
    migrate(infra)
    org = bench_org_create(infra, slug=f"bench-stream-{label}")
    public_key = django_script(infra, WIDGET_SCRIPT.format(org_id=org["org_id"], agent=org["agent"]))["public_key"]
    fake = fake_llm_start(ttft=SSE_TTFT)
    env = {
        "OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "bench", "LLM_MAX_RETRIES": "0",
        "WIDGET_RATE_INIT_IP": "0", "WIDGET_RATE_CHAT_IP": "0", "WIDGET_RATE_CHAT_VISITOR": "0",
        "WIDGET_RATE_STREAM_VISITOR": "0", "WIDGET_RATE_EVENT_VISITOR": "0",
        "WIDGET_STREAMS_PER_IP": "0", "WIDGET_STREAMS_PER_WIDGET": "0", "WIDGET_STREAMS_PER_VISITOR": "0",
        "WIDGET_SSE_KEEPALIVE_SECONDS": str(KEEPALIVE_SECONDS),
    }
    web = web_start(infra, env=env, log_name=f"streams-{label}")
    result: dict = {"label": label, "commit": git_commit(checkout), "infra": infra.label}
    try:
        per_worker = 5 if quick else 20
        asyncio.run(sse_phase(web.url, public_key, concurrency=2, per_worker=3, api_key=org["api_key"]))  # warm-up
        cpu0 = web.cpu_seconds()
        mejai = asyncio.run(sse_phase(web.url, public_key, concurrency=CONCURRENCY, per_worker=per_worker,
                                      api_key=org["api_key"]))
        cpu1 = web.cpu_seconds()
        node: list[float] = []
        if node_port:
            rounds = per_worker
            node = asyncio.run(concurrent_run(
                lambda res, ready, go: node_client(f"ws://127.0.0.1:{node_port}", rounds, res, ready, go),
                CONCURRENCY, rounds))
            node = [x - SSE_TTFT for x in node]
        turns = len(mejai.values)
        result.update(
            ttfd_p50=mejai.ms(50), ttfd_p95=mejai.ms(95), ttfd_n=turns, ttfd_errors=mejai.errors,
            cpu_ms_per_turn=((cpu1 - cpu0) * 1000 / turns) if turns and cpu0 is not None and cpu1 is not None else None,
            node_p50=percentile(node, 50) * 1000 if node else None,
            node_p95=percentile(node, 95) * 1000 if node else None, node_n=len(node),
            threads_idle=threads_of(web.pid),
        )
        streams = asyncio.run(streams_phase(web, public_key, count=stream_count))
        result.update(
            streams_wanted=streams.wanted, streams_opened=streams.opened, streams_still_open=streams.still_open,
            streams_failures=streams.failures, open_seconds=streams.open_seconds,
            rss_before=streams.rss_before, rss_open=streams.rss_open, rss_after=streams.rss_after_close,
            kib_per_stream=streams.per_stream_kib, threads_before=streams.threads_before,
            threads_open=streams.threads_open, fds_open=streams.fds_open,
            live=f"{streams.live_received}/{streams.live_expected}",
        )
        result["log_tail"] = web.log_tail(5)
    finally:
        web.stop()
        fake.stop()
    print(f"[streams] {label}: {json.dumps({k: v for k, v in result.items() if k != 'log_tail'}, default=str)}",
          flush=True)
    return result


def section(runs: list[dict], *, node_note: str, load: tuple, quick: bool, started_at: dt.datetime) -> str:
    facts = machine_facts()
    lines = [
        "## Streams: time to first delta, open streams, threads (issue 14)", "",
        f"`{command_line()}` — {started_at:%Y-%m-%d %H:%M} UTC{' (--quick)' if quick else ''}", "",
        f"Machine: {facts.get('cores', '?')} cores, {facts.get('cpu', '')}; load average before/after "
        f"{load[0][0]:.2f} / {load[1][0]:.2f}. The load generator, the fake model, the Node relay, PostgreSQL "
        "and Redis share these cores with the web process (one daphne process). " + node_note, "",
    ]
    head = ["figure", *[f"{r['label']} ({r['commit']})" for r in runs], "target"]
    last = runs[-1]
    ratio = (last["ttfd_p50"] / last["node_p50"]) if last.get("ttfd_p50") and last.get("node_p50") else None
    rows = [
        ["SSE first delta − TTFT, 10 concurrent, p50 / p95 (ms)",
         *[f"{fmt(r['ttfd_p50'])} / **{fmt(r['ttfd_p95'])}** (n={r['ttfd_n']}{', errors ' + str(r['ttfd_errors']) if r['ttfd_errors'] else ''})" for r in runs],
         f"p95 ≤ {TARGET_P95_MS:.0f}"],
        ["Node relay (same run), first delta − TTFT, p50 / p95 (ms)",
         *[f"{fmt(r['node_p50'])} / {fmt(r['node_p95'])} (n={r['node_n']})" for r in runs], "—"],
        ["mejai ÷ Node at p50",
         *[fmt(r['ttfd_p50'] / r['node_p50'], 2) + "×" if r.get("ttfd_p50") and r.get("node_p50") else "—" for r in runs],
         f"≤ {TARGET_RATIO}×"],
        ["web CPU per streamed turn (ms, /proc)", *[f"**{fmt(r['cpu_ms_per_turn'])}**" for r in runs], "—"],
        ["open widget SSE streams held (of wanted)",
         *[f"{r['streams_opened']:,} of {r['streams_wanted']:,}; {r['streams_still_open']:,} still open later"
           + (f"; failures {r['streams_failures']}" if r['streams_failures'] else "") for r in runs],
         f"≥ {TARGET_STREAMS:,}"],
        ["RSS per open stream (KiB)", *[f"**{fmt(r['kib_per_stream'])}** (RSS {fmt(r['rss_before'])} → {fmt(r['rss_open'])} MiB)"
                                        for r in runs], f"≤ {TARGET_KB_PER_STREAM:.0f}"],
        ["threads: idle / before streams / with streams open",
         *[f"{r['threads_idle']} / {r['threads_before']} / **{r['threads_open']}**" for r in runs], "no thread per stream"],
        ["live message reached open streams", *[r["live"] for r in runs], "all"],
    ]
    lines.append(md_table(head, rows))
    p95_ok = last.get("ttfd_p95") is not None and last["ttfd_p95"] <= TARGET_P95_MS
    ratio_ok = None if ratio is None else ratio <= TARGET_RATIO
    streams_ok = last["streams_opened"] >= TARGET_STREAMS and last["streams_still_open"] >= TARGET_STREAMS
    kib_ok = last.get("kib_per_stream") is not None and last["kib_per_stream"] <= TARGET_KB_PER_STREAM
    threads_grew = (last["threads_open"] or 0) - (last["threads_before"] or 0)
    lines += [
        "", f"Targets for {last['label']} ({last['commit']}):", "",
        f"* TTFD overhead p95 ≤ {TARGET_P95_MS:.0f} ms at 10 concurrent: {verdict(p95_ok)} ({fmt(last['ttfd_p95'])} ms)",
        f"* within {TARGET_RATIO}× of the Node relay (p50): {verdict(ratio_ok)} ({fmt(ratio, 2)}×)",
        f"* ≥ {TARGET_STREAMS:,} open streams on one process: {verdict(streams_ok)} ({last['streams_opened']:,})",
        f"* ≤ {TARGET_KB_PER_STREAM:.0f} KiB per stream: {verdict(kib_ok)} ({fmt(last['kib_per_stream'])} KiB)",
        f"* no thread per stream: {verdict(threads_grew < 20)} (threads +{threads_grew} with "
        f"{last['streams_opened']:,} streams open)",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/streams.md")
    parser.add_argument("--quick", action="store_true", help="fewer turns and 1,000 streams")
    parser.add_argument("--streams", type=int, default=None, help=f"open streams to hold (default {TARGET_STREAMS})")
    parser.add_argument("--baseline", default=None, help="another checkout to measure first (e.g. a worktree of main)")
    parser.add_argument("--no-node", action="store_true", help="skip the Node relay")
    args = parser.parse_args()
    stream_count = args.streams or (1000 if args.quick else TARGET_STREAMS)
    raise_fd_limit()
    here = common.ROOT
    checkouts = ([(Path(args.baseline).resolve(), "before")] if args.baseline else []) + [(here, "after")]

    started_at = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg()
    node_proc, node_info, node_note = None, None, ""
    node_fake = None
    if not args.no_node:
        try:
            node_fake = fake_llm_start(ttft=SSE_TTFT)
            node_proc, node_info = node_relay_start(node_fake.base_url)
            node_note = "The Node relay talks to its own fake model process with the same TTFT."
        except Exception as exc:  # noqa: BLE001 - no node / npm: mejai's figures still count
            node_note = f"Node relay not measured ({type(exc).__name__}: {str(exc)[:120]})."
        if node_info is None and not node_note:
            node_note = "Node relay not measured (node/npm or the peer is missing)."
    runs = []
    try:
        for checkout, label in checkouts:
            runs.append(one_checkout(checkout, label, quick=args.quick, stream_count=stream_count,
                                     node_port=node_info[1] if node_info else None))
    finally:
        common.ROOT = here
        if node_proc is not None:
            process_stop(node_proc)
            shutil.rmtree(node_info[0], ignore_errors=True)
        if node_fake is not None:
            node_fake.stop()
    text = section(runs, node_note=node_note, load=(load_before, os.getloadavg()), quick=args.quick,
                   started_at=started_at)
    write_section(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
