"""/healthz and /readyz."""

from __future__ import annotations

import pytest


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_reports_each_dependency(client, db, offline_llm):
    body = client.get("/readyz").json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "channel_layer", "broker", "llm"}
    assert body["checks"]["llm"]["mode"] == "offline"


def test_readyz_is_503_when_the_database_is_down(client, db, monkeypatch):
    from runtime import health

    def broken():
        raise ConnectionError("connection refused")

    monkeypatch.setattr(health, "_check_database", broken)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == {"ok": False, "error": "ConnectionError"}  # the kind, not the text


@pytest.mark.redis
@pytest.mark.postgres
def test_readyz_sees_a_real_celery_worker(client, celery_worker_process):
    broker = client.get("/readyz").json()["checks"]["broker"]
    assert broker["mode"] == "celery" and broker["workers"] >= 1


def test_unknown_api_path_is_json(client, db):
    response = client.get("/api/nothing-here")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_openapi_schema_lists_the_runtime_chat(client, db):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert "/api/runtime/chat" in response.json()["paths"]
