"""/healthz and /readyz."""

from __future__ import annotations

import pytest


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_reports_each_dependency(client, db, offline_llm):
    body = client.get("/readyz").json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "channel_layer", "broker", "llm", "overload"}
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


# --- the model check (issue 9, kind 9) ----------------------------------------------------------

def test_readyz_model_ok_when_the_server_answers(client, db, fake_llm):
    llm = client.get("/readyz").json()["checks"]["llm"]
    assert llm["ok"] is True and llm["probe"]["status"] == 200 and llm["recent_failures"] == 0


def test_readyz_model_down_when_the_server_is_stopped(client, db, settings):
    from runtime.clients.llm_health import llm_health_forget

    llm_health_forget()
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"  # nothing listens on the discard port
    settings.OPENAI_API_KEY = "x"
    response = client.get("/readyz")
    body = response.json()
    assert body["checks"]["llm"]["ok"] is False and "could not be reached" in body["checks"]["llm"]["error"]
    assert response.status_code == 200 and body["status"] == "degraded"
    settings.READYZ_REQUIRE_LLM = True
    assert client.get("/readyz").status_code == 503
    llm_health_forget()


@pytest.mark.parametrize("status", [401, 503])
def test_readyz_model_down_when_the_probe_is_refused(client, db, fake_llm, status):
    fake_llm.config.models_status = status
    llm = client.get("/readyz").json()["checks"]["llm"]
    assert llm["ok"] is False and llm["probe"]["status"] == status


def test_readyz_model_without_a_models_route_is_up(client, db, fake_llm):
    fake_llm.config.models_status = 404  # a server that only serves chat completions
    assert client.get("/readyz").json()["checks"]["llm"]["ok"] is True


def test_readyz_probe_is_cached(client, db, fake_llm):
    for _ in range(5):
        client.get("/readyz")
    assert fake_llm.model_probes == 1


def test_readyz_model_down_after_recent_failures_while_the_probe_passes(client, db, fake_llm, api_key, settings):
    """The probe answers but chat completions fail (an overloaded or broken server)."""
    from runtime.tests.test_chat_api import post

    fake_llm.config.fail_status, fake_llm.config.fail_times = 500, 100
    for i in range(settings.LLM_FAILURE_THRESHOLD):
        assert post(client, {"message": f"질문 {i}"}, api_key).status_code == 502
    llm = client.get("/readyz").json()["checks"]["llm"]
    assert llm["ok"] is False and llm["probe"]["ok"] is True
    assert llm["recent_failures"] == settings.LLM_FAILURE_THRESHOLD and "llm_error" in llm["error"]
    # The server recovers: one answered turn clears the window.
    fake_llm.config.fail_times = 0
    assert post(client, {"message": "다시"}, api_key).status_code == 200
    assert client.get("/readyz").json()["checks"]["llm"]["ok"] is True


def test_refused_requests_do_not_count_as_an_outage(client, db, fake_llm, api_key, settings):
    from runtime.tests.test_chat_api import post

    fake_llm.config.fail_status, fake_llm.config.fail_times = 400, 100
    for i in range(settings.LLM_FAILURE_THRESHOLD + 1):
        post(client, {"message": f"질문 {i}"}, api_key)
    assert client.get("/readyz").json()["checks"]["llm"]["ok"] is True
