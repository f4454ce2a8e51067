"""Fixtures of the endusers tests."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def run_extraction_inline(monkeypatch):
    """Memory extraction runs as soon as its turn is committed, in this thread (the test's transaction).

    The real path (Celery task off the request) is covered by test_extraction_job_runs_off_the_request.
    """
    from endusers import receivers
    from endusers.extraction import memory_extract

    ran = []

    def enqueue(*, turn_id):
        ran.append(turn_id)
        memory_extract(turn_id=turn_id)

    monkeypatch.setattr(receivers, "extraction_enqueue", enqueue)
    return ran


@pytest.fixture
def chat(client, django_capture_on_commit_callbacks):
    """POST /api/runtime/chat with on-commit callbacks (the pipeline's signals) executed."""

    def send(key, body):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post("/api/runtime/chat", data=json.dumps(body), content_type="application/json",
                                   HTTP_AUTHORIZATION=f"Bearer {key}")
        return response

    return send


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    if code:
        assert body["error"]["code"] == code, body
    return body["error"]
