"""The model's `delegate_task` tool: offered on the assistant channel only (and not inside a task's own
session); a call starts the same delegated task as `/task`, whose report reaches the client; unusable
arguments are a warning on the turn and start nothing."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from assistant.delegation import MAX_INSTRUCTION_CHARS
from assistant.models import DelegatedTask
from assistant.tests.support import ChatSocket, chat_frame, new_client_id, text_of
from runtime.models import Turn

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def jobs(request, settings):
    """Where jobs run: in this process (embedded default), or a real Celery worker with Redis."""
    if settings.REDIS_URL:
        return request.getfixturevalue("celery_worker_process")
    return None


def offered_tools(request_body: dict) -> list[str]:
    return [t["function"]["name"] for t in request_body.get("tools") or []]


async def ask(token: str, message: str) -> tuple[ChatSocket, dict]:
    ws = await ChatSocket(new_client_id()).open()
    await ws.auth(token)
    await ws.send(chat_frame(message))
    return ws, await ws.until("end")


async def test_a_delegate_task_call_starts_a_task_that_reports_back(member_token, fake_llm, jobs):
    fake_llm.config.reply = "알겠어요."
    fake_llm.config.tool_calls = [{"name": "delegate_task", "arguments": {"instruction": "지난주 매출을 분석해 줘"}}]
    ws, end = await ask(member_token, "지난주 매출 분석을 맡길게")
    assert "delegate_task" in offered_tools(fake_llm.requests[0])
    reply = text_of(ws.of_turn(end["turn_id"]))
    assert reply.startswith("알겠어요.") and "작업을 맡겼어요" in reply
    report = await ws.until("auto_report", timeout=30)
    task = await sync_to_async(DelegatedTask.objects.select_related("result_turn", "source_turn").get)()
    assert report["task_id"] == str(task.pk) and task.instruction == "지난주 매출을 분석해 줘"
    assert task.status == DelegatedTask.Status.COMPLETED and str(task.source_turn_id) == end["turn_id"]
    source = task.source_turn
    assert source.reply_text == reply and "작업을 맡겼어요" in source.reply_text
    assert source.diagnostics["tool_calls"] == [{"tool": "delegate_task", "status": "ok", "task_id": str(task.pk)}]
    # The task's own turn is not offered the tool again (a job would delegate itself forever): the
    # scripted call there is ignored with a warning, and no second task exists.
    task_request = next(r for r in fake_llm.requests if r["messages"][-1]["content"] == "지난주 매출을 분석해 줘")
    assert "delegate_task" not in offered_tools(task_request)
    assert {w["code"] for w in task.result_turn.diagnostics["warnings"]} == {"tool_call_unknown"}
    assert await sync_to_async(DelegatedTask.objects.count)() == 1
    await ws.close()


@pytest.mark.parametrize("arguments", [
    {}, {"instruction": ""}, {"instruction": "   "}, {"instruction": 42}, {"instruction": ["분석"]},
    {"instruction": "가" * (MAX_INSTRUCTION_CHARS + 1)},
])
async def test_unusable_arguments_are_a_turn_warning_and_start_no_task(member_token, fake_llm, arguments):
    fake_llm.config.reply = "확인했어요."
    fake_llm.config.tool_calls = [{"name": "delegate_task", "arguments": arguments}]
    ws, end = await ask(member_token, "이거 맡아 줘")
    assert text_of(ws.of_turn(end["turn_id"])) == "확인했어요."
    turn = await sync_to_async(Turn.objects.get)(pk=end["turn_id"])
    assert turn.status == Turn.Status.COMPLETED and turn.reply_text == "확인했어요."
    assert [w["code"] for w in turn.diagnostics["warnings"]] == ["tool_call_unusable"]
    assert turn.diagnostics["tool_calls"][0]["status"] == "unusable"
    assert await sync_to_async(DelegatedTask.objects.count)() == 0
    await ws.close()


async def test_a_call_that_is_the_whole_reply(member_token, fake_llm, jobs):
    fake_llm.config.reply = ""
    fake_llm.config.tool_calls = [{"name": "delegate_task", "arguments": {"instruction": "Summarize the logs"}}]
    ws, end = await ask(member_token, "Please summarize the logs later")
    assert text_of(ws.of_turn(end["turn_id"])).startswith("Task delegated (task ")
    await ws.until("auto_report", timeout=30)
    await ws.close()


def test_the_tool_is_not_offered_on_other_channels(api_key, fake_llm):
    fake_llm.config.tool_calls = [{"name": "delegate_task", "arguments": {"instruction": "분석해 줘"}}]
    response = Client().post("/api/runtime/chat", data={"message": "분석 맡길게"}, content_type="application/json",
                             HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert response.status_code == 200
    assert offered_tools(fake_llm.requests[-1])[:2] == ["suggest_quick_replies", "request_user_info"]
    assert "delegate_task" not in offered_tools(fake_llm.requests[-1])
    turn = Turn.objects.get(pk=response.json()["turn_id"])
    assert {w["code"] for w in turn.diagnostics["warnings"]} == {"tool_call_unknown"}
    assert DelegatedTask.objects.count() == 0


async def test_not_offered_when_the_agent_has_tools_off(member_token, agent, fake_llm):
    agent.tools_enabled = False
    await sync_to_async(agent.save)()
    ws, _end = await ask(member_token, "분석 맡길게")
    assert fake_llm.requests[-1].get("tools") is None
    await ws.close()
