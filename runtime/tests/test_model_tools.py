"""runtime/tools.py: channel tools offered next to the output tools, their handlers run with the turn,
session and arguments; a failing handler is a warning on the turn, never a 500."""

from __future__ import annotations

import pytest

from runtime import tools
from runtime.models import Turn
from runtime.tools import ToolResult, tool_register, tools_for

pytestmark = pytest.mark.django_db

SCHEMA = {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}


@pytest.fixture
def api_tool():
    """A tool of the `api` channel for the length of one test."""
    seen = []

    def handler(ctx):
        if ctx.arguments.get("word") == "boom":
            raise RuntimeError("handler fault")
        seen.append((ctx.turn.pk, ctx.session.pk, ctx.arguments))
        return ToolResult(f"기록했어요: {ctx.arguments['word']}", record={"word": ctx.arguments["word"]})

    tool_register("echo_word", schema=SCHEMA, handler=handler, channels={"api"}, description="test tool")
    yield seen
    tools._registry.pop("echo_word", None)


def chat(client, api_key, message="안녕"):
    return client.post("/api/runtime/chat", data={"message": message}, content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {api_key}")


def test_tools_for_names_the_channel(api_tool):
    assert [t.name for t in tools_for("api")] == ["echo_word"]
    assert "echo_word" not in [t.name for t in tools_for("kakao")]
    with pytest.raises(ValueError):
        tool_register("nowhere", schema=SCHEMA, handler=lambda ctx: ToolResult("x"), channels=set())


def test_a_call_runs_the_handler_and_is_recorded(client, api_key, fake_llm, api_tool):
    fake_llm.config.reply = ""
    fake_llm.config.tool_calls = [{"name": "echo_word", "arguments": {"word": "사과"}}]
    response = chat(client, api_key)
    assert response.status_code == 200 and response.json()["message"] == "기록했어요: 사과"
    assert "echo_word" in [t["function"]["name"] for t in fake_llm.requests[-1]["tools"]]
    turn = Turn.objects.get(pk=response.json()["turn_id"])
    assert api_tool == [(turn.pk, turn.session_id, {"word": "사과"})]
    assert turn.diagnostics["tool_calls"] == [{"tool": "echo_word", "status": "ok", "word": "사과"}]


def test_a_failing_handler_is_a_warning_not_a_500(client, api_key, fake_llm, api_tool):
    fake_llm.config.reply = "네."
    fake_llm.config.tool_calls = [{"name": "echo_word", "arguments": {"word": "boom"}}]
    response = chat(client, api_key)
    assert response.status_code == 200 and response.json()["message"] == "네."
    turn = Turn.objects.get(pk=response.json()["turn_id"])
    assert turn.diagnostics["warnings"] == [{"code": "tool_call_failed", "tool": "echo_word"}]

