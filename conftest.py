"""Shared test fixtures: organizations and keys, the fake LLM, a live ASGI server, a real Celery worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
REQUIRE_SERVICES = os.environ.get("MEJAI_REQUIRE_SERVICES") == "1"


def pytest_collection_modifyitems(config, items):
    """Tests marked postgres/redis need those services; under CI a missing one fails, never skips."""
    from django.conf import settings

    for item in items:
        if item.get_closest_marker("postgres") and not settings.IS_POSTGRES:
            if REQUIRE_SERVICES:
                raise pytest.UsageError("MEJAI_REQUIRE_SERVICES=1 but DATABASE_URL is not a PostgreSQL URL")
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL)"))
        if item.get_closest_marker("redis") and not settings.REDIS_URL:
            if REQUIRE_SERVICES:
                raise pytest.UsageError("MEJAI_REQUIRE_SERVICES=1 but REDIS_URL is not set")
            item.add_marker(pytest.mark.skip(reason="needs Redis (set REDIS_URL)"))


@pytest.fixture(autouse=True)
def _overload_memory_clear():
    """Process-wide memories of load start empty: the refusals of an earlier test (health says
    `degraded` for OVERLOAD_DEGRADED_SECONDS after one) and /readyz's cached answer (2 s)."""
    from mejai.overload import shed_clear
    from runtime.health import readyz_cache_clear

    shed_clear()
    readyz_cache_clear()
    yield


@pytest.fixture(autouse=True)
def _hot_cache_clear():
    """The per-process hot cache (runtime/hotcache.py) forgets the rows of the previous test (a
    rolled-back test's ids are reused on SQLite)."""
    from runtime.hotcache import hot_cache

    hot_cache().drop_local(None)
    yield
    hot_cache().drop_local(None)


@pytest.fixture
def organization(db):
    from runtime.models import Organization

    return Organization.objects.create(slug="acme", name="Acme")


@pytest.fixture
def other_organization(db):
    from runtime.models import Organization

    return Organization.objects.create(slug="globex", name="Globex")


@pytest.fixture
def agent(organization):
    from runtime.models import Agent

    return Agent.objects.create(organization=organization, name="support")


@pytest.fixture
def api_key(organization, agent):
    """The clear key of an active API key of `organization`."""
    from runtime.auth import api_key_issue

    _, raw = api_key_issue(organization=organization, name="test")
    return raw


@pytest.fixture
def other_api_key(other_organization):
    from runtime.auth import api_key_issue
    from runtime.models import Agent

    Agent.objects.create(organization=other_organization, name="support")
    _, raw = api_key_issue(organization=other_organization, name="other")
    return raw


@pytest.fixture(scope="session")
def fake_llm_server():
    from runtime.fakes.openai_server import FakeOpenAIServer

    server = FakeOpenAIServer().start()
    yield server
    server.stop()


@pytest.fixture
def fake_llm(fake_llm_server, settings):
    """The fake OpenAI-compatible server, reset, with the runtime pointed at it."""
    from runtime.clients.compat import refused_forget
    from runtime.clients.llm_health import llm_health_forget

    fake_llm_server.reset()
    settings.OPENAI_BASE_URL = fake_llm_server.base_url
    settings.OPENAI_API_KEY = "test-key"
    settings.LLM_MAX_RETRIES = 0
    settings.LLM_READ_TIMEOUT = 5
    # What one test taught the runtime about the server (refused parameters, an outage) is not the next one's.
    refused_forget()
    llm_health_forget()
    yield fake_llm_server
    fake_llm_server.reset()
    refused_forget()
    llm_health_forget()


@pytest.fixture
def offline_llm(settings):
    settings.OPENAI_BASE_URL = ""
    settings.OPENAI_API_KEY = ""


@pytest.fixture
def live_server_asgi(transactional_db):
    """mejai's ASGI app served over real HTTP/WebSocket on loopback."""
    from channels.layers import channel_layers

    from mejai.asgi import application
    from runtime.testing.live_server import LiveASGIServer

    # A cached channels_redis layer keeps locks bound to the loop of an earlier live server.
    channel_layers.backends.clear()
    server = LiveASGIServer(application).start()
    yield server
    server.stop()
    channel_layers.backends.clear()


@pytest.fixture
def celery_worker_process(transactional_db, settings):
    """A real Celery worker process on Redis, using the test database."""
    if not settings.REDIS_URL:
        pytest.skip("needs Redis (set REDIS_URL)")
    from django.db import connection

    env = dict(os.environ)
    db = settings.DATABASES["default"]
    if settings.IS_POSTGRES:
        env["DATABASE_URL"] = f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{connection.settings_dict['NAME']}"
    else:
        pytest.skip("a worker process needs a database it can share: set DATABASE_URL to PostgreSQL")
    env["DJANGO_SETTINGS_MODULE"] = "mejai.test_settings"
    env["OPENAI_BASE_URL"] = settings.OPENAI_BASE_URL or ""
    env["OPENAI_API_KEY"] = settings.OPENAI_API_KEY or ""
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "mejai", "worker", "--pool", "threads", "--concurrency", "4",
         "--loglevel", "WARNING", "-Q", settings.CELERY_TASK_DEFAULT_QUEUE, "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=env,
    )
    from mejai.celery import app

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("celery worker exited at start")
        if app.control.ping(timeout=0.5):
            break
    else:
        proc.terminate()
        raise RuntimeError("celery worker did not answer a ping in 30 s")
    yield proc
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


CHROMIUM = "/usr/bin/chromium"  # Debian's chromium; `make test` installs it
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium through Playwright, one per test module."""
    import shutil

    if not shutil.which(CHROMIUM):
        pytest.skip("Debian chromium is not installed (make chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running on this thread; the test's own ORM calls
    # (setup, assertions) are plain sync code, so Django's async-safety guard is lifted for the
    # module only (the documented way to combine the two), and put back after it.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield launched
            launched.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous
