"""Fixtures of the assistant tests."""

from __future__ import annotations

import pytest

from assistant.tests.support import access_token, member_make


@pytest.fixture
def member(organization, agent):
    return member_make(organization, "alice")


@pytest.fixture
def member_token(member):
    return access_token(member)


@pytest.fixture
def other_member(other_organization):
    from runtime.models import Agent

    Agent.objects.get_or_create(organization=other_organization, name="support")
    return member_make(other_organization, "mallory")


@pytest.fixture
def web_processes(transactional_db, settings, fake_llm):
    """Two web processes (uvicorn, as in production behind a proxy) on the test's PostgreSQL and Redis."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from django.db import connection

    if not (settings.IS_POSTGRES and settings.REDIS_URL):
        pytest.skip("two web processes share PostgreSQL and Redis: set DATABASE_URL and REDIS_URL")
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
                        f"/{connection.settings_dict['NAME']}",
        "DJANGO_SETTINGS_MODULE": "mejai.test_settings",
        "OPENAI_BASE_URL": fake_llm.base_url, "OPENAI_API_KEY": "test-key", "LLM_MAX_RETRIES": "0",
        "DB_POOL_MAX": "8",
    })
    processes, urls = [], []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "mejai.asgi:application", "--host", "127.0.0.1", "--port", str(port),
             "--ws", "websockets-sansio", "--lifespan", "off", "--log-level", "warning"],
            cwd=settings.BASE_DIR, env=env))
        urls.append(f"127.0.0.1:{port}")
    deadline = time.monotonic() + 30
    for proc, url in zip(processes, urls, strict=True):
        while True:
            if proc.poll() is not None:
                raise RuntimeError("a web process exited at start")
            try:
                urllib.request.urlopen(f"http://{url}/healthz", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("a web process did not start in 30 s") from None
                time.sleep(0.1)
    yield urls
    for proc in processes:
        proc.terminate()
    for proc in processes:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
