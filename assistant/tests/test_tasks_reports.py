"""Delegated tasks (`/task`) and auto_report: a job answers the task and reports back; external reports by
API key; offline reports delivered once; another organization can neither send nor read."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from assistant.models import DelegatedTask, Report
from assistant.tests.support import ChatSocket, chat_frame, new_client_id, text_of
from runtime.commands import command_match
from runtime.models import Turn

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def jobs(request, settings):
    """Where jobs run: in this process (embedded default), or a real Celery worker with Redis."""
    if settings.REDIS_URL:
        return request.getfixturevalue("celery_worker_process")
    return None


async def connected(token, client_id, **auth) -> ChatSocket:
    ws = await ChatSocket(client_id).open()
    await ws.auth(token, **auth)
    return ws


def post_report(key: str | None, body) -> tuple[int, dict]:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    data = body if isinstance(body, str) else json.dumps(body)
    response = Client().post("/api/assistant/reports", data=data, content_type="application/json", **headers)
    return response.status_code, response.json()


async def test_task_command_runs_a_job_that_reports_back(member_token, fake_llm, jobs):
    fake_llm.config.reply = "분석 결과: 모두 정상입니다."
    ws = await connected(member_token, new_client_id())
    await ws.send(chat_frame("/task 서버 로그를 분석해 줘"))
    end = await ws.until("end")
    assert "작업을 맡겼어요" in text_of(ws.of_turn(end["turn_id"]))
    report = await ws.until("auto_report", timeout=30)
    task = await sync_to_async(DelegatedTask.objects.select_related("result_turn").get)()
    assert report["task_id"] == str(task.pk) and "분석 결과: 모두 정상입니다." in report["content"]
    assert task.status == DelegatedTask.Status.COMPLETED and task.instruction == "서버 로그를 분석해 줘"
    assert task.result_turn.status == Turn.Status.COMPLETED and task.result_turn.user_text == "서버 로그를 분석해 줘"
    assert await sync_to_async(Report.objects.filter(task=task, delivered_at__isnull=False).count)() == 1
    await ws.close()


def test_task_command_is_offered_on_the_assistant_channel_only(db):
    assert command_match("/task 정리해 줘", channel="assistant")[0].name == "task"
    for channel in ("web_widget", "kakao", "mchat", "api"):
        assert command_match("/task 정리해 줘", channel=channel) is None


async def test_offline_report_is_delivered_once(member_token, api_key):
    client_id = new_client_id()
    ws = await connected(member_token, client_id)
    await ws.close()
    status, body = await sync_to_async(post_report)(api_key, {"client_id": client_id, "content": "빌드 완료",
                                                               "task_id": "ci-42"})
    assert status == 201 and body["client_id"] == client_id
    back = await connected(member_token, client_id, last_seq=0)
    report = await back.until("auto_report")
    assert report["content"] == "빌드 완료" and report["task_id"] == "ci-42"
    last = report["seq"]
    await back.close()
    again = await connected(member_token, client_id, last_seq=last)
    await again.send({"type": "ping"})
    await again.until("pong")
    assert [f["type"] for f in again.frames] == ["ready", "pong"]
    await again.close()
    # A plain connect (no resume) gets a waiting report too, once.
    await sync_to_async(post_report)(api_key, {"client_id": client_id, "content": "배포 완료"})
    plain = await connected(member_token, client_id)
    assert (await plain.until("auto_report"))["content"] == "배포 완료"
    await plain.close()
    plain = await connected(member_token, client_id)
    assert await plain.quiet()


async def test_report_to_a_connected_client_arrives_at_once_on_every_tab(member_token, api_key):
    client_id = new_client_id()
    tab1, tab2 = await connected(member_token, client_id), await connected(member_token, client_id)
    status, _ = await sync_to_async(post_report)(api_key, {"user": "alice", "content": "**보고**: 끝났어요"})
    assert status == 201
    assert (await tab1.until("auto_report"))["content"] == "**보고**: 끝났어요"
    assert (await tab2.until("auto_report"))["content"] == "**보고**: 끝났어요"
    for tab in (tab1, tab2):
        await tab.close()


async def test_reports_api_bad_input_and_other_organizations(member_token, api_key, other_api_key, other_member):
    client_id = new_client_id()
    ws = await connected(member_token, client_id)
    cases = [
        (api_key, {"content": "x"}, 400, "invalid"),
        (api_key, {"content": "x", "client_id": client_id, "user": "alice"}, 400, "invalid"),
        (api_key, {"client_id": client_id}, 400, None),
        (api_key, "not json", 400, None),
        (api_key, {"content": 123, "client_id": client_id}, 400, None),  # not text: refused, not coerced
        (api_key, {"content": "x", "client_id": ["a"]}, 400, None),
        (api_key, {"content": "x", "client_id": "nobody-here-123"}, 404, "not_found"),
        (api_key, {"content": "x", "user": "mallory"}, 404, "not_found"),  # a user of another organization
        (other_api_key, {"content": "침입", "client_id": client_id}, 404, "not_found"),
        (None, {"content": "x", "client_id": client_id}, 401, None),
    ]
    for key, body, expected, code in cases:
        status, response = await sync_to_async(post_report)(key, body)
        assert status == expected, (body, response)
        assert "error" in response and (code is None or response["error"]["code"] == code)
    assert await sync_to_async(Report.objects.count)() == 0
    assert await ws.quiet()
    await ws.close()


async def test_status_figures_are_scoped_to_the_organization(member_token, api_key, other_api_key, fake_llm):
    ws = await connected(member_token, new_client_id())
    await ws.send(chat_frame("안녕"))
    await ws.until("end")

    def status_of(key):
        response = Client().get("/api/assistant/status", HTTP_AUTHORIZATION=f"Bearer {key}")
        return response.status_code, response.json()

    status, mine = await sync_to_async(status_of)(api_key)
    assert status == 200 and mine["clients"] == 1 and mine["sockets_this_process"] >= 1
    status, theirs = await sync_to_async(status_of)(other_api_key)
    assert status == 200 and theirs["clients"] == 0 and theirs["reports_pending"] == 0
    assert (await sync_to_async(Client().get)("/api/assistant/status")).status_code == 401
    await ws.close()
