"""Issue 10 (Low): /readyz tells anyone only ready/unavailable; detail needs a token or an internal address;
results are shared across a burst; the database connection is released before the slow checks."""

from __future__ import annotations

import pytest

from runtime import health


@pytest.fixture(autouse=True)
def _fresh():
    health.readyz_cache_clear()
    yield
    health.readyz_cache_clear()


def test_public_answer_is_status_only(client, db, settings):
    settings.OPENAI_BASE_URL = "http://10.1.2.3:8000/v1"
    settings.OPENAI_API_KEY = "sk-secret"
    response = client.get("/readyz", REMOTE_ADDR="203.0.113.5")
    assert response.status_code == 200 and response.json() == {"status": "ready"}
    assert "10.1.2.3" not in response.content.decode() and response["Cache-Control"] == "no-store"


def test_detail_with_the_token_or_from_an_internal_address(client, db, settings):
    settings.READYZ_TOKEN = "probe-token-123"
    settings.OPENAI_BASE_URL = "http://10.1.2.3:8000/v1"
    outside = {"REMOTE_ADDR": "203.0.113.5"}
    assert "checks" not in client.get("/readyz", HTTP_AUTHORIZATION="Bearer wrong", **outside).json()
    body = client.get("/readyz", HTTP_AUTHORIZATION="Bearer probe-token-123", **outside).json()
    assert set(body["checks"]) == {"database", "channel_layer", "broker", "llm", "overload"}
    assert "10.1.2.3" not in str(body) and "base_url" not in body["checks"]["llm"]
    assert "checks" in client.get("/readyz").json()  # loopback (the container's own probe)


def test_failures_show_their_kind_not_their_text(client, db, monkeypatch):
    def broken():
        raise ConnectionError("could not connect to server at 10.9.8.7:5432 password=hunter2")

    monkeypatch.setattr(health, "_check_database", broken)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == {"ok": False, "error": "ConnectionError"}
    assert "hunter2" not in response.content.decode()


def test_a_burst_of_probes_runs_the_checks_once(client, db, settings, monkeypatch):
    settings.READYZ_CACHE_SECONDS = 3600
    calls = []
    original = health._check_llm
    monkeypatch.setattr(health, "_check_llm", lambda: calls.append(1) or original())
    for _ in range(20):
        assert client.get("/readyz").status_code == 200
    assert len(calls) == 1


@pytest.mark.django_db(transaction=True)
def test_database_connection_is_released_before_the_slow_checks():
    from django.db import connection

    health._check_database()
    assert connection.connection is None


def test_healthz_shows_why_it_is_degraded_only_to_operators(client, db, settings, monkeypatch):
    from mejai import overload

    settings.READYZ_TOKEN = "probe-token-123"
    monkeypatch.setattr(overload, "overload_state",
                        lambda: {"degraded": True, "reasons": ["database pool: 7 requests waiting"]})
    outside = {"REMOTE_ADDR": "203.0.113.5"}
    assert client.get("/healthz", **outside).json() == {"status": "degraded"}
    body = client.get("/healthz", HTTP_AUTHORIZATION="Bearer probe-token-123", **outside).json()
    assert body == {"status": "degraded", "reasons": ["database pool: 7 requests waiting"]}
    assert "reasons" in client.get("/healthz").json()  # loopback (the container's own probe)
