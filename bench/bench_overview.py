"""Overview benchmark: the admin index's overview queries (mejai/overview.py) at 1M turns on PostgreSQL.

    .venv/bin/python bench/bench_overview.py --out bench/results/overview.md [--quick] [--regenerate]

Rows are generated in SQL (generate_series) into `BENCH_OVERVIEW_DB` (default: `mejai_bench_overview`,
`mejai_bench_overview_quick` with --quick); kept between runs unless --regenerate. Full scale: 3
organizations, 200k sessions on 5 channels, 1M turns spread over 60 days (half of them inside the
30-day window, about 17k on the measured organization's "today"), 2% failed with 3 reasons, 1% preview
sessions, 60 widgets. Measured: the backfill of the daily roll-up (`manage.py overview_rollup --all`,
the 29 closed days of the window), then `overview_build` for one organization (what an operator's admin
index runs) and for every organization (a superuser's), each query's time and the slowest one's plan.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
SCALES = {"full": {"sessions": 200_000, "turns_per_session": 5, "samples": 20},
          "quick": {"sessions": 20_000, "turns_per_session": 5, "samples": 10}}
TARGET_ONE_ORG_P95_MS = 1000.0


def setup(db_name: str, regenerate: bool) -> bool:
    """Point Django at the bench database (created when missing); True when it must be (re)generated."""
    import psycopg

    with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db_name]).fetchone()
        if exists and regenerate:
            conn.execute(f'DROP DATABASE "{db_name}" WITH (FORCE)')
            exists = None
        if not exists:
            conn.execute(f'CREATE DATABASE "{db_name}"')
    os.environ["DATABASE_URL"] = f"{PG_URL}/{db_name}"
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mejai.settings")
    for name in ("REDIS_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        os.environ.pop(name, None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from runtime.models import Turn

    return not Turn.objects.exists()


def generate(scale: dict) -> dict[str, float]:
    from django.db import connection, transaction

    from runtime.models import Agent, Organization

    orgs = [Organization.objects.create(slug=f"bench-overview-{i}", name=f"Bench overview {i}") for i in range(3)]
    agents = [Agent.objects.create(organization=o, name="bench") for o in orgs]
    p = {"n": scale["sessions"], "tps": scale["turns_per_session"], "o0": orgs[0].pk, "o1": orgs[1].pk,
         "o2": orgs[2].pk, "a0": agents[0].pk, "a1": agents[1].pk, "a2": agents[2].pk}
    steps = [
        ("sessions", """
            CREATE TEMP TABLE bench_sessions ON COMMIT DROP AS
            SELECT gen_random_uuid() AS id, g,
                   (ARRAY[%(o0)s, %(o1)s, %(o2)s])[1 + g %% 3] AS organization_id,
                   (ARRAY[%(a0)s, %(a1)s, %(a2)s])[1 + g %% 3] AS agent_id,
                   (ARRAY['web_widget','kakao','mchat','api','assistant'])[1 + (g / 3) %% 5] AS channel,
                   now() - (g::float / %(n)s) * interval '60 days' AS created_at
            FROM generate_series(1, %(n)s) g;
            INSERT INTO "D_conv_sessions" (id, organization_id, agent_id, channel, metadata, status, last_seq,
                                           created_at, last_activity_at)
            SELECT id, organization_id, agent_id, channel,
                   CASE WHEN g %% 100 = 0 THEN '{"preview": true}'::jsonb ELSE '{}'::jsonb END,
                   'open', %(tps)s, created_at, created_at + %(tps)s * interval '1 minute'
            FROM bench_sessions"""),
        ("turns", """
            INSERT INTO "D_conv_turns" (id, session_id, seq, user_text, client_message_id, reply_text, payload,
                                        status, handled_by, model, error_code, error, created_at, completed_at,
                                        updated_at, tokens_in, tokens_out, latency_ms, diagnostics)
            SELECT gen_random_uuid(), s.id, t, '배송 언제 와요? (' || t || ')', '', '안내해 드릴게요.', '{}'::jsonb,
                   CASE WHEN (s.g + t) %% 50 = 0 THEN 'failed' ELSE 'completed' END, 'llm', 'bench',
                   CASE WHEN (s.g + t) %% 50 = 0 THEN (ARRAY['llm_timeout','llm_unavailable','llm_error'])[1 + s.g %% 3]
                        ELSE '' END, '',
                   s.created_at + t * interval '1 minute', s.created_at + t * interval '1 minute',
                   s.created_at + t * interval '1 minute', 100 + (s.g %% 200), 20 + (t * 7) %% 60,
                   CASE WHEN (s.g + t) %% 50 = 0 THEN NULL ELSE 300 + ((s.g * 37 + t * 101) %% 2700) END, '{}'::jsonb
            FROM bench_sessions s, generate_series(1, %(tps)s) t"""),
        ("widgets", """
            INSERT INTO "B_chat_widgets" (organization_id, agent_id, name, public_key, identity_secret, allowed_domains,
                                          allowed_paths, theme, locale, is_active, require_verified_identity,
                                          created_at, updated_at, first_seen_origin, last_seen_origin,
                                          last_seen_page_url, last_seen_at)
            SELECT (ARRAY[%(o0)s, %(o1)s, %(o2)s])[1 + g %% 3], (ARRAY[%(a0)s, %(a1)s, %(a2)s])[1 + g %% 3],
                   'w' || g, 'mw_pk_bench' || g, 'secret' || g, '["example.com"]'::jsonb, '[]'::jsonb, '{}'::jsonb,
                   'ko', true, false, now(), now(), '', '', '', CASE WHEN g %% 4 = 0 THEN NULL ELSE now() END
            FROM generate_series(1, 60) g"""),
        ("analyze", "ANALYZE"),
    ]
    timings = {}
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL synchronous_commit = off")
        for name, sql in steps:
            started = time.perf_counter()
            if name == "analyze":
                continue
            for statement in sql.split(";"):
                if statement.strip():
                    cur.execute(statement, p)
            timings[name] = time.perf_counter() - started
    with connection.cursor() as cur:
        started = time.perf_counter()
        cur.execute("ANALYZE")
        timings["analyze"] = time.perf_counter() - started
    return timings


def backfill() -> dict:
    """The roll-up of the window's closed days from scratch, as after an upgrade (every day rebuilt)."""
    from django.core.management import call_command

    from mejai.overview import DAYS
    from runtime.models import DailyStat

    started = time.perf_counter()
    call_command("overview_rollup", "--days", str(DAYS), "--all", "--no-progress", stdout=open(os.devnull, "w"))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "days": DAYS - 1, "rows": DailyStat.objects.count()}


def measure(samples: int) -> dict:
    from common import percentile
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from mejai.overview import overview_build
    from runtime.models import Organization, Turn

    one = Organization.objects.filter(slug="bench-overview-0")
    every = Organization.objects.filter(slug__startswith="bench-overview-")
    result = {"turns": Turn.objects.count(), "runs": {}}
    for label, orgs in (("one organization (an operator's index)", one), ("three organizations (a superuser's)", every)):
        overview_build(organizations=orgs)  # warm-up
        times = []
        for _ in range(samples):
            started = time.perf_counter()
            overview = overview_build(organizations=orgs)
            times.append((time.perf_counter() - started) * 1000)
        with CaptureQueriesContext(connection) as ctx:
            overview_build(organizations=orgs)
        result["runs"][label] = {"p50": percentile(times, 50), "p95": percentile(times, 95), "queries": len(ctx),
                                 "per_query": [(float(q["time"]) * 1000, q["sql"]) for q in ctx.captured_queries],
                                 "messages": sum(o.totals.messages for o in overview)}
    with CaptureQueriesContext(connection) as ctx:
        overview_build(organizations=one)
    main_sql = max(ctx.captured_queries, key=lambda q: float(q["time"]))["sql"]
    with connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, BUFFERS OFF, TIMING OFF, SUMMARY ON) " + main_sql)
        result["plan"] = "\n".join(row[0] for row in cur.fetchall())
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench/results/overview.md")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--regenerate", action="store_true")
    args = parser.parse_args()
    scale_name = "quick" if args.quick else "full"
    scale = SCALES[scale_name]
    db_name = os.environ.get("BENCH_OVERVIEW_DB", "mejai_bench_overview" + ("_quick" if args.quick else ""))
    started = time.time()
    gen = generate(scale) if setup(db_name, args.regenerate) else {}
    rolled = backfill()
    figures = measure(scale["samples"])

    from common import command_line, md_table, verdict, write_section

    lines = ["## Admin overview", "", f"Command: `{command_line()}`  ",
             f"Scale: **{scale_name}**; database `{db_name}` (PostgreSQL), {figures['turns']:,} turns in "
             f"{scale['sessions']:,} sessions of 3 organizations over 60 days (1% preview sessions, excluded); "
             f"run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC in {time.time() - started:.0f} s, "
             f"load average {os.getloadavg()[0]:.1f} at the end (other engineers' work shares the 2 cores).", ""]
    lines.append("Generated this run in SQL (`generate_series`): " + ", ".join(f"{k} {v:.1f} s" for k, v in gen.items())
                 + "." if gen else "Data generated by an earlier run was reused (`--regenerate` rebuilds it).")
    lines += ["", f"Roll-up backfill (`manage.py overview_rollup --days 30 --all`): {rolled['days']} closed days, "
              f"{rolled['rows']:,} rows of `F_conv_daily_stats`, {rolled['seconds']:.1f} s "
              f"({rolled['seconds'] / rolled['days'] * 1000:,.0f} ms a day: what the periodic job pays once per day)."]
    lines += ["", f"`overview_build` wall time over {scale['samples']} runs after a warm-up, in process:", ""]
    rows = []
    for label, run in figures["runs"].items():
        target = TARGET_ONE_ORG_P95_MS if label.startswith("one") else None
        rows.append([label, f"{run['p50']:,.0f}", f"{run['p95']:,.0f}", run["queries"], f"{run['messages']:,}",
                     f"≤ {target:,.0f}" if target else "—", verdict(run["p95"] <= target) if target else "—"])
    lines.append(md_table(["overview of", "p50 ms", "p95 ms", "queries", "messages in 30 days", "target p95",
                           "verdict"], rows, align="lrrrrrc"))
    lines += ["", "Each query of the one-organization overview (one run):", ""]
    q_rows = [[f"{t:,.1f}", "`" + sql[:140].replace("`", "'").replace("|", "\\|") + "…`"]
              for t, sql in figures["runs"]["one organization (an operator's index)"]["per_query"]]
    lines.append(md_table(["ms", "query"], q_rows, align="rl"))
    lines += ["", "Plan of the slowest one (EXPLAIN ANALYZE):", "", "```", figures["plan"], "```", "",
              "What limits it: closed days are read from the daily roll-up (`F_conv_daily_stats`, one row per "
              "organization × channel × agent × day: about 150 rows for an organization's 29 closed days), so their "
              "cost no longer grows with the turns; what grows is today's part, computed live from the turns "
              "created since midnight (the `created_at` index) for the organizations shown, and the roll-up of "
              "one day, paid once by the periodic job (`runtime.overview_rollup`). Today's part here covers the "
              "hours since midnight in TIME_ZONE; at the end of a day it reads about 5 times more turns (the bench "
              "spreads 16.7k turns a day over the 3 organizations). Before the roll-up (commit d72f942) every "
              "figure aggregated the whole 30-day window of `D_conv_turns`: on the same database and machine "
              "(2026-11-30 19:57 UTC, load average 5.9) one organization took p50 1,481 / p95 1,783 ms and "
              "three 3,356 / 4,654 ms (6 queries)."]
    write_section(args.out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
