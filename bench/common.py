"""Shared helpers for the bench scripts: services, a web process, a fake LLM, figures, markdown.

Every bench script is standalone (`python bench/bench_<area>.py --out bench/results/<area>.md`)
and imports this module by path (`sys.path` gets `bench/`'s parent inserted by the script).

    cfg = infra_detect(name="runtime")            # PostgreSQL + Redis when reachable, else embedded
    fake = fake_llm_start(ttft=0.2)               # python -m runtime.fakes.openai_server, own process
    web = web_start(cfg, env={"OPENAI_BASE_URL": fake.base_url})   # daphne mejai.asgi:application
    org = bench_org_create(cfg)                   # organization, agent, API key (ORM script)
    ...
    web.stop(); fake.stop()
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
RESULTS_DIR = BENCH_DIR / "results"
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
VENV_BIN = Path(PYTHON).parent

PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
REDIS_BASE_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")


# --- processes and ports -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_wait(
    port: int, *, host: str = "127.0.0.1", timeout: float = 30.0, proc: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f}s")


def process_stop(proc: subprocess.Popen | None, *, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL; only the process we started (and its own group)."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process, in MiB, from /proc (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


# --- infrastructure: PostgreSQL + Redis when reachable ------------------------------------


@dataclass
class Infra:
    """What the benchmark runs against: a dedicated database (and Redis db), or the embedded default."""

    name: str
    database_url: str
    redis_url: str
    postgres: bool
    redis: bool
    postgres_version: str = ""
    redis_version: str = ""
    var_dir: Path | None = None

    @property
    def label(self) -> str:
        db = (
            f"PostgreSQL {self.postgres_version} (database `{self.db_name}`)"
            if self.postgres
            else "SQLite (embedded default)"
        )
        rd = (
            f"Redis {self.redis_version} (channel layer, cache, broker)"
            if self.redis
            else "no Redis (in-memory layer, in-process jobs)"
        )
        return f"{db}; {rd}"

    @property
    def db_name(self) -> str:
        return self.database_url.rsplit("/", 1)[-1] if self.postgres else "sqlite"

    def env(self) -> dict[str, str]:
        env = {"DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url}
        if self.var_dir:
            env["MEJAI_VAR_DIR"] = str(self.var_dir)
        if self.redis:
            env["CELERY_QUEUE"] = f"mejai-bench-{self.name}"
            env["CHANNEL_PREFIX"] = f"mejai-bench-{self.name}"
            env["CACHE_PREFIX"] = f"mejai-bench-{self.name}"
        return env


def postgres_version() -> str | None:
    try:
        out = subprocess.run(
            ["psql", PG_ADMIN_URL + "/postgres", "-Atc", "show server_version"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().split(" ")[0] if out.returncode == 0 else None


def redis_version() -> str | None:
    host_port = REDIS_BASE_URL.split("://", 1)[1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    try:
        with socket.create_connection((host, int(port or 6379)), timeout=2) as s:
            s.sendall(b"INFO server\r\n")
            data = b""
            s.settimeout(2)
            while b"redis_version" not in data or not data.endswith(b"\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                if len(data) > 200_000:
                    break
        for line in data.decode(errors="replace").splitlines():
            if line.startswith("redis_version:"):
                return line.split(":", 1)[1].strip()
    except (OSError, ValueError):
        return None
    return None


def infra_detect(*, name: str, redis_db: int = 14, embedded: bool = False) -> Infra:
    """PostgreSQL + Redis (production configuration) when both answer, else the embedded default.

    The PostgreSQL database `mejai_bench_<name>` is dropped and created afresh, and this bench's
    Redis keys (prefix `mejai-bench-<name>`) are deleted, so figures never depend on what an
    earlier run left behind; other users of the Redis db are left alone.
    """
    pg = None if embedded else postgres_version()
    rv = None if embedded else redis_version()
    if pg and rv:
        db = f"mejai_bench_{name}"
        subprocess.run(
            ["psql", PG_ADMIN_URL + "/postgres", "-qc", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'],
            check=True,
            capture_output=True,
            timeout=60,
        )
        subprocess.run(
            ["psql", PG_ADMIN_URL + "/postgres", "-qc", f'CREATE DATABASE "{db}"'],
            check=True,
            capture_output=True,
            timeout=60,
        )
        redis_url = f"{REDIS_BASE_URL}/{redis_db}"
        _redis_flush(redis_url, name=name)
        return Infra(name, f"{PG_ADMIN_URL}/{db}", redis_url, True, True, pg, rv)
    var_dir = ROOT / "var" / f"bench-{name}"
    shutil.rmtree(var_dir, ignore_errors=True)
    var_dir.mkdir(parents=True)
    return Infra(name, f"sqlite:///{var_dir / 'bench.sqlite3'}", "", False, False, var_dir=var_dir)


def _redis_flush(url: str, *, name: str) -> None:
    """Delete this bench's keys (queue, channel layer, cache: all carry `mejai-bench-<name>`), not the db."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=10)
    try:
        keys = list(client.scan_iter(match=f"*mejai-bench-{name}*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    finally:
        client.close()


def django_env(infra: Infra, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of a production-like process: DEBUG off, a fixed SECRET_KEY, quiet logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "DATABASE_URL", "REDIS_URL"))}
    env.update(
        DJANGO_SETTINGS_MODULE="mejai.settings",
        DEBUG="0",
        SECRET_KEY="bench-secret-key-not-for-production-0123456789abcdef",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    env.update(infra.env())
    env.update(extra or {})
    return env


def manage(infra: Infra, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    out = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=django_env(infra, env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if out.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def migrate(infra: Infra) -> None:
    manage(infra, "migrate", "--noinput", "-v", "0")


def django_script(infra: Infra, code: str, *, env: dict[str, str] | None = None, timeout: float = 120) -> dict:
    """Run `code` with Django set up against `infra`; it must assign a JSON-able `result`."""
    wrapper = "import django, json\ndjango.setup()\n" + code + "\nprint('@@RESULT@@' + json.dumps(result))\n"
    out = subprocess.run(
        [PYTHON, "-c", wrapper], cwd=ROOT, env=django_env(infra, env), capture_output=True, text=True, timeout=timeout
    )
    if out.returncode != 0:
        raise RuntimeError(f"django script failed:\n{out.stdout}\n{out.stderr}")
    line = next(x for x in out.stdout.splitlines() if x.startswith("@@RESULT@@"))
    return json.loads(line[len("@@RESULT@@") :])


def bench_org_create(
    infra: Infra,
    *,
    slug: str = "bench",
    agent_name: str = "bench-agent",
    prompt: str | None = "You are the bench shop's assistant. Answer briefly.",
) -> dict:
    """An organization with an active agent (and prompt version) and an API key: {"org_id", "agent", "api_key"}."""
    code = f"""
from runtime import prompts
from runtime.auth import api_key_issue
from runtime.models import Agent, Organization
org, _ = Organization.objects.get_or_create(slug={slug!r}, defaults={{"name": "Bench"}})
template = None
if {prompt!r}:
    template = prompts.prompt_template_get_or_create(organization=org, name="bench")
    if not template.versions.exists():
        prompts.prompt_version_create(template=template, text={prompt!r}, note="bench", actor_label="bench", activate=True)
agent, _ = Agent.objects.get_or_create(organization=org, name={agent_name!r}, defaults={{"prompt": template}})
_, raw = api_key_issue(organization=org, name="bench")
result = {{"org_id": org.pk, "agent": agent.name, "api_key": raw}}
"""
    return django_script(infra, code)


# --- the fake LLM ------------------------------------------------------------------------


@dataclass
class FakeLLM:
    port: int
    ttft: float
    tps: float
    proc: subprocess.Popen | None = None
    server: object | None = None  # FakeOpenAIServer when run on a thread

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        if self.proc is not None:
            process_stop(self.proc)
        if self.server is not None:
            self.server.stop()


def fake_llm_start(*, ttft: float = 0.0, tps: float = 0.0, reply: str | None = None, thread: bool = False) -> FakeLLM:
    """The fake OpenAI-compatible server, in its own process (default) or on a thread of this one."""
    if thread:
        sys.path.insert(0, str(ROOT))
        from runtime.fakes.openai_server import FakeLLMConfig, FakeOpenAIServer

        server = FakeOpenAIServer(config=FakeLLMConfig(ttft=ttft, tokens_per_second=tps, reply=reply)).start()
        return FakeLLM(server.port, ttft, tps, server=server)
    port = free_port()
    cmd = [PYTHON, "-m", "runtime.fakes.openai_server", "--port", str(port), "--ttft", str(ttft), "--tps", str(tps)]
    if reply is not None:
        cmd += ["--reply", reply]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    port_wait(port, proc=proc)
    return FakeLLM(port, ttft, tps, proc=proc)


# --- the web process -----------------------------------------------------------------------


@dataclass
class WebProcess:
    proc: subprocess.Popen
    port: int
    log_path: Path
    command: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_mb(self) -> float | None:
        return rss_mb(self.proc.pid)

    def cpu_seconds(self) -> float | None:
        return cpu_seconds(self.proc.pid)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        process_stop(self.proc)


def web_start(
    infra: Infra, *, env: dict[str, str] | None = None, server: str = "daphne", log_name: str = "web"
) -> WebProcess:
    """The web process as in production: daphne mejai.asgi:application (or uvicorn, for comparison)."""
    port = free_port()
    if server == "daphne":
        cmd = [str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "mejai.asgi:application"]
    elif server == "uvicorn":
        cmd = [
            str(VENV_BIN / "uvicorn"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
            "mejai.asgi:application",
        ]
    else:
        raise ValueError(server)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"mejai-bench-{infra.name}-{log_name}.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=django_env(infra, env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        port_wait(port, timeout=60, proc=proc)
    except Exception:
        process_stop(proc)
        raise RuntimeError(f"web process did not start:\n{log_path.read_text(errors='replace')[-3000:]}") from None
    return WebProcess(proc, port, log_path, cmd)


# --- figures ---------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float | None:
    """The p-th percentile (0–100) by linear interpolation between closest ranks."""
    if not values:
        return None
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    k = (len(data) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def fmt(value, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    return f"{value:,}{unit}"


def md_table(headers: list[str], rows: list[list], *, align: str | None = None) -> str:
    """A GitHub markdown table; `align` is one char per column: l, r or c (default: l then r)."""
    align = align or ("l" + "r" * (len(headers) - 1))
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    out = ["| " + " | ".join(str(h) for h in headers) + " |", "| " + " | ".join(marks[a] for a in align) + " |"]
    for row in rows:
        out.append("| " + " | ".join("—" if c is None else str(c) for c in row) + " |")
    return "\n".join(out)


def verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("**met**" if ok else "**not met**")


# --- machine facts ---------------------------------------------------------------------------


def machine_facts() -> dict[str, str]:
    facts = {
        "cores": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "memory": _mem_total(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    pg = postgres_version()
    rv = redis_version()
    facts["postgresql"] = pg or "not reachable"
    facts["redis"] = rv or "not reachable"
    return facts


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total() -> str:
    with contextlib.suppress(OSError):
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "unknown"


def command_line() -> str:
    """How this script was invoked, relative to the repository, for the results file."""
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(ROOT)
    return " ".join([".venv/bin/python", str(script), *sys.argv[1:]])


def write_section(out: str | Path, text: str) -> None:
    path = Path(out)
    if not path.is_absolute():
        path = ROOT / path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip() + "\n")
