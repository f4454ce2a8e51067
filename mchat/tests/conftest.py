"""Mattermost test fixtures: the fake Mattermost server with a seeded world, a bot pointing at it, and the
real worker (`manage.py mchat_worker`) run as its own process on the test database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mchat.fakes.server import FakeMattermost, demo_world

ROOT = Path(__file__).resolve().parents[2]

# Short timings for the worker under test (production defaults are in mchat/conf.py).
FAST_WORKER_ENV = {
    "MCHAT_APP_PING_SECONDS": "0.5", "MCHAT_APP_PONG_TIMEOUT_SECONDS": "0.5", "MCHAT_BACKOFF_MIN_SECONDS": "0.2",
    "MCHAT_BACKOFF_MAX_SECONDS": "1.0", "MCHAT_HEARTBEAT_SECONDS": "0.3", "MCHAT_STANDBY_RETRY_SECONDS": "0.3",
    "MCHAT_UNHEALTHY_RECHECK_SECONDS": "0.3", "MCHAT_HTTP_BACKOFF_SECONDS": "0.1", "MCHAT_EDIT_INTERVAL_SECONDS": "0.2",
    "MCHAT_RATE_LIMIT_PER_SECOND": "50", "MCHAT_CHANNELS_REFRESH_SECONDS": "0.5", "MCHAT_OUTBOX_RETRY_MAX_SECONDS": "0.5",
    "MCHAT_WS_OPEN_TIMEOUT_SECONDS": "3",
}


@pytest.fixture
def mm():
    """A fresh fake Mattermost server with the demo world: mm.world["bot"|"minsu"|"jisu"|"town"|"dm"|"team"]."""
    server = FakeMattermost().start()
    server.world = demo_world(server)
    yield server
    server.stop()


@pytest.fixture
def mchat_bot(transactional_db, organization, agent, mm):
    from mchat.models import MattermostBot

    return MattermostBot.objects.create(organization=organization, agent=agent, name="사내 봇", server_url=mm.url,
                                        token="fake-bot-token", verify_tls=False, mention_name="ai",
                                        polling_interval_seconds=0.3)


def _database_url() -> str:
    from django.conf import settings
    from django.db import connection

    db = settings.DATABASES["default"]
    if settings.IS_POSTGRES:
        return (f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
                f"{connection.settings_dict['NAME']}")
    return f"sqlite:///{connection.settings_dict['NAME']}"


class WorkerProcess:
    def __init__(self, proc: subprocess.Popen, log: Path):
        self.proc, self.log = proc, log

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, *, kill: bool = False) -> None:
        if self.proc.poll() is None:
            self.proc.kill() if kill else self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def start_worker(transactional_db, settings, tmp_path):
    """start_worker(bot, **env) → a running `manage.py mchat_worker --bot N` process (stopped at teardown)."""
    started: list[WorkerProcess] = []

    def start(bot=None, **extra_env) -> WorkerProcess:
        env = dict(os.environ)
        env.update(FAST_WORKER_ENV)
        env["DATABASE_URL"] = _database_url()
        env["DJANGO_SETTINGS_MODULE"] = "mejai.test_settings"
        env["OPENAI_BASE_URL"] = settings.OPENAI_BASE_URL or ""
        env["OPENAI_API_KEY"] = settings.OPENAI_API_KEY or ""
        env["LLM_MAX_RETRIES"] = "0"
        env["LOG_LEVEL"] = "INFO"
        env.pop("MCHAT_URL", None)
        env.update({k: str(v) for k, v in extra_env.items()})
        log = tmp_path / f"worker-{len(started)}.log"
        args = [sys.executable, "manage.py", "mchat_worker"] + (["--bot", str(bot.pk)] if bot is not None else [])
        handle = open(log, "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
        worker = WorkerProcess(proc, log)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def wait_until(predicate, *, timeout: float = 30.0, interval: float = 0.05, message: str = ""):
    """Wait on state: poll predicate() until truthy (its value is returned) or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message or "condition not met in time")
        time.sleep(interval)


def ws_connected(mm, *, count: int = 1):
    return lambda: mm.ws_open_count(user=mm.world["bot"]) >= count
