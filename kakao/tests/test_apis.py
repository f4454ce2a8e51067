"""Operator and user APIs: auth, health, tasks (list, filter, retry), prompts, task status, latest answer."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from kakao.models import CallbackTask
from kakao.tests.conftest import assert_error
from runtime.models import PromptAudit, Session, Turn

pytestmark = pytest.mark.django_db


def auth(key):
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


@pytest.fixture
def make_task(kakao_bot):
    def make(status="completed", *, error_code="", kakao_status="", deadline_in=50, reply="환불은 7일 이내 가능합니다.",
             turn_status=Turn.Status.COMPLETED, session=None):
        session = session or Session.objects.create(organization=kakao_bot.organization, agent=kakao_bot.agent,
                                                     channel="kakao")
        seq = session.turns.count() + 1
        turn = Turn.objects.create(session=session, seq=seq, user_text="환불 규정 알려줘", reply_text=reply,
                                   status=turn_status, tokens_in=12, tokens_out=7, model="fake-model")
        now = timezone.now()
        return CallbackTask.objects.create(
            organization=kakao_bot.organization, bot=kakao_bot, turn=turn, token_hash=uuid.uuid4().hex,
            callback_url="https://bot-api.kakao.com/v1/bots/b/callback/t", status=status, received_at=now,
            not_before=now, deadline=now + timedelta(seconds=deadline_in), error_code=error_code,
            kakao_status=kakao_status,
        )

    return make


OPERATOR_URLS = [
    ("get", "/api/kakao/admin/health"),
    ("get", "/api/kakao/admin/ai-tasks"),
    ("post", f"/api/kakao/admin/ai-tasks/{uuid.uuid4()}/retry"),
    ("get", "/api/kakao/admin/prompts"),
    ("post", "/api/kakao/admin/prompts"),
    ("get", "/api/kakao/admin/prompts/support"),
    ("post", "/api/kakao/admin/prompts/1/activate"),
    ("get", f"/api/kakao/user/ai-status/{uuid.uuid4()}"),
    ("get", f"/api/kakao/user/conversations/{uuid.uuid4()}/latest-ai-response"),
]


@pytest.mark.parametrize("method,url", OPERATOR_URLS)
def test_every_endpoint_needs_a_key_or_staff_token(client, kakao_bot, method, url):
    assert_error(getattr(client, method)(url), 401)
    assert_error(getattr(client, method)(url, **auth("mj_sk_wrong")), 401, "unauthenticated")


def test_staff_jwt_works(client, kakao_bot, organization, django_user_model):
    from runtime.models import Membership

    user = django_user_model.objects.create_user("ops", password="pw-12345678", is_staff=True)
    Membership.objects.create(user=user, organization=organization)
    token = client.post("/api/auth/token", {"username": "ops", "password": "pw-12345678"},
                        content_type="application/json").json()["access"]
    response = client.get("/api/kakao/admin/ai-tasks", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200


def test_health(client, api_key, kakao_bot, make_task):
    make_task("completed")
    make_task("completed")
    make_task("failed", error_code="kakao_fail")
    make_task("held")
    body = client.get("/api/kakao/admin/health", **auth(api_key)).json()
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["broker"]["ok"] is True and "depth" in body["checks"]["queue"]
    assert "alive" in body["checks"]["workers"]
    assert body["callbacks"]["success_rate"] == 0.75 and body["callbacks"]["counts"]["failed"] == 1


def test_task_list_filter_pagination_and_isolation(client, api_key, other_api_key, kakao_bot, make_task):
    for _ in range(3):
        make_task("completed")
    failed = make_task("failed", error_code="kakao_error")
    body = client.get("/api/kakao/admin/ai-tasks?status=failed", **auth(api_key)).json()
    assert body["count"] == 1 and body["results"][0]["id"] == str(failed.pk)
    assert body["results"][0]["tokens_in"] == 12 and body["results"][0]["tokens_out"] == 7
    page = client.get("/api/kakao/admin/ai-tasks?limit=2&offset=0", **auth(api_key)).json()
    assert page["count"] == 4 and len(page["results"]) == 2 and page["next"]
    both = client.get("/api/kakao/admin/ai-tasks?status=failed,completed", **auth(api_key)).json()
    assert both["count"] == 4
    assert client.get("/api/kakao/admin/ai-tasks", **auth(other_api_key)).json()["count"] == 0
    assert_error(client.get("/api/kakao/admin/ai-tasks?status=bogus", **auth(api_key)), 400, "invalid")


def test_sweep_expires_tasks_nobody_picked_up(client, api_key, make_task):
    from kakao.tasks import callback_tasks_sweep_task

    task = make_task("pending", deadline_in=-5)
    client.get("/api/kakao/admin/ai-tasks", **auth(api_key))
    client.get("/api/kakao/admin/health", **auth(api_key))
    task.refresh_from_db()
    assert task.status == "pending"  # reads never write: the sweep is a periodic job
    assert callback_tasks_sweep_task.apply().result["expired"] == 1
    task.refresh_from_db()
    assert task.status == "expired" and task.error_code == "not_picked_up"


def test_periodic_jobs_are_scheduled():
    from django.conf import settings

    from mejai.celery import app

    app.loader.import_default_modules()
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks and entry["schedule"] > 0


def test_retry_only_while_deliverable(client, api_key, other_api_key, make_task, enqueued):
    retryable = make_task("failed", error_code="kakao_error", kakao_status="ERROR")
    response = client.post(f"/api/kakao/admin/ai-tasks/{retryable.pk}/retry", **auth(api_key))
    assert response.status_code == 202 and response.json()["status"] == "pending"
    assert enqueued == [str(retryable.pk)]

    fail = make_task("failed", error_code="kakao_fail", kakao_status="FAIL")
    assert "already answered" in assert_error(
        client.post(f"/api/kakao/admin/ai-tasks/{fail.pk}/retry", **auth(api_key)), 409, "not_deliverable")["message"]
    unknown = make_task("failed", error_code="outcome_unknown")
    assert_error(client.post(f"/api/kakao/admin/ai-tasks/{unknown.pk}/retry", **auth(api_key)), 409, "not_deliverable")
    late = make_task("failed", error_code="kakao_error", kakao_status="ERROR", deadline_in=1)
    assert "expired" in assert_error(
        client.post(f"/api/kakao/admin/ai-tasks/{late.pk}/retry", **auth(api_key)), 409, "not_deliverable")["message"]
    done = make_task("completed")
    assert_error(client.post(f"/api/kakao/admin/ai-tasks/{done.pk}/retry", **auth(api_key)), 409, "not_deliverable")
    busy = make_task("processing")
    assert_error(client.post(f"/api/kakao/admin/ai-tasks/{busy.pk}/retry", **auth(api_key)), 409, "in_progress")
    assert_error(client.post(f"/api/kakao/admin/ai-tasks/{retryable.pk}/retry", **auth(other_api_key)), 404, "not_found")
    assert_error(client.post("/api/kakao/admin/ai-tasks/not-a-uuid/retry", **auth(api_key)), 404, "not_found")
    assert enqueued == [str(retryable.pk)]


def test_retry_after_broker_outage_reopens_the_stored_message(client, api_key, make_task, enqueued):
    task = make_task("failed", error_code="broker_unreachable", turn_status=Turn.Status.STORED, reply="")
    assert client.post(f"/api/kakao/admin/ai-tasks/{task.pk}/retry", **auth(api_key)).status_code == 202
    task.turn.refresh_from_db()
    assert task.turn.status == Turn.Status.PENDING


def test_prompts_are_versioned_and_audited(client, api_key, other_api_key):
    created = client.post("/api/kakao/admin/prompts", {"name": "kakao-support", "text": "당신은 카카오 상담원입니다."},
                          content_type="application/json", **auth(api_key))
    assert created.status_code == 201 and created.json()["version"] == 1 and created.json()["is_active"] is True
    second = client.post("/api/kakao/admin/prompts", {"name": "kakao-support", "text": "두 번째 버전", "note": "짧게"},
                         content_type="application/json", **auth(api_key)).json()
    assert second["version"] == 2 and second["is_active"] is False
    detail = client.get("/api/kakao/admin/prompts/kakao-support", **auth(api_key)).json()
    assert [v["version"] for v in detail["versions"]] == [2, 1]
    activated = client.post(f"/api/kakao/admin/prompts/{second['id']}/activate", **auth(api_key))
    assert activated.status_code == 200 and activated.json()["is_active"] is True
    assert PromptAudit.objects.filter(action="activate").count() == 2
    assert PromptAudit.objects.filter(actor_label__startswith="api_key:").exists()
    listing = client.get("/api/kakao/admin/prompts", **auth(api_key)).json()
    assert [t["name"] for t in listing] == ["kakao-support"]
    # Bad input and other organizations.
    assert_error(client.post("/api/kakao/admin/prompts", {"name": "x y", "text": "t"}, content_type="application/json",
                             **auth(api_key)), 400, "invalid")
    assert_error(client.post("/api/kakao/admin/prompts", {"name": "ok", "text": "   "}, content_type="application/json",
                             **auth(api_key)), 400)
    assert_error(client.post("/api/kakao/admin/prompts", "[1]", content_type="application/json", **auth(api_key)), 400)
    assert_error(client.post("/api/kakao/admin/prompts", "{", content_type="application/json", **auth(api_key)), 400)
    assert_error(client.get("/api/kakao/admin/prompts/kakao-support", **auth(other_api_key)), 404, "not_found")
    assert_error(client.post(f"/api/kakao/admin/prompts/{second['id']}/activate", **auth(other_api_key)), 404)


def test_ai_status_and_latest_answer(client, api_key, other_api_key, make_task):
    task = make_task("completed")
    body = client.get(f"/api/kakao/user/ai-status/{task.pk}", **auth(api_key)).json()
    assert body["status"] == "completed" and body["answer_ready"] is True and body["delivered"] is True
    assert body["answer"]["message"] == "환불은 7일 이내 가능합니다."
    assert body["kakao"]["template"]["outputs"][0]["simpleText"]["text"] == "환불은 7일 이내 가능합니다."
    pending = make_task("processing", turn_status=Turn.Status.STREAMING, reply="")
    body = client.get(f"/api/kakao/user/ai-status/{pending.pk}", **auth(api_key)).json()
    assert body["answer_ready"] is False and "answer" not in body
    assert_error(client.get(f"/api/kakao/user/ai-status/{task.pk}", **auth(other_api_key)), 404)
    assert_error(client.get("/api/kakao/user/ai-status/nope", **auth(api_key)), 404)

    session_id = task.turn.session_id
    latest = client.get(f"/api/kakao/user/conversations/{session_id}/latest-ai-response", **auth(api_key)).json()
    assert latest["answer"]["turn_id"] == str(task.turn_id)
    assert_error(client.get(f"/api/kakao/user/conversations/{session_id}/latest-ai-response", **auth(other_api_key)), 404)
    assert_error(client.get(f"/api/kakao/user/conversations/{uuid.uuid4()}/latest-ai-response", **auth(api_key)), 404)
    empty = Session.objects.create(organization=task.organization, agent=task.bot.agent, channel="kakao")
    assert_error(client.get(f"/api/kakao/user/conversations/{empty.pk}/latest-ai-response", **auth(api_key)), 404,
                 "no_answer_yet")
    web = Session.objects.create(organization=task.organization, agent=task.bot.agent, channel="web_widget")
    assert_error(client.get(f"/api/kakao/user/conversations/{web.pk}/latest-ai-response", **auth(api_key)), 404)


def test_dev_tools_are_off_by_default(client, admin_client, kakao_bot):
    assert admin_client.get("/kakao/dev/tester").status_code == 404
    assert client.post("/kakao/dev/receiver/v1/bots/a/callback/b", "{}", content_type="application/json").status_code == 404


def test_dev_receiver_records_and_tester_page_renders(client, admin_client, kakao_bot, settings):
    settings.KAKAO_DEV_TOOLS = True
    page = admin_client.get("/kakao/dev/tester")
    assert page.status_code == 200 and "카카오 스킬 테스터" in page.content.decode()
    got = client.post("/kakao/dev/receiver/v1/bots/a/callback/b", '{"version": "2.0"}', content_type="application/json")
    assert got.json()["status"] == "SUCCESS"
    assert admin_client.get("/kakao/dev/callbacks").json()["received"][0]["body"] == {"version": "2.0"}
    assert client.get("/kakao/dev/callbacks").status_code == 302  # staff only


def test_admin_pages_render(admin_client, make_task, kakao_bot):
    task = make_task("completed")
    for url in ("/admin/kakao/kakaobot/", f"/admin/kakao/kakaobot/{kakao_bot.pk}/change/", "/admin/kakao/callbacktask/",
                f"/admin/kakao/callbacktask/{task.pk}/change/", "/admin/kakao/kakaoevent/", "/admin/kakao/kakaouser/"):
        assert admin_client.get(url).status_code == 200, url
