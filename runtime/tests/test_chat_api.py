"""POST /api/runtime/chat: answers, streaming, and every bad input the foundation issue names."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync

from runtime.models import Session, Turn

URL = "/api/runtime/chat"


def post(client, body, key=None, **extra):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(URL, data=data, content_type=extra.pop("content_type", "application/json"), **headers, **extra)


async def _collect(chunks) -> list[bytes]:
    return [chunk async for chunk in chunks]


def sse_events(response) -> list[tuple[str, dict]]:
    raw = b"".join(async_to_sync(_collect)(response.streaming_content)).decode()
    events = []
    for block in raw.split("\n\n"):
        name = data = None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        if name:
            events.append((name, data))
    return events


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    if code:
        assert body["error"]["code"] == code
    return body["error"]


# --- answers -----------------------------------------------------------------------------

def test_offline_answer_json(client, api_key, offline_llm):
    response = post(client, {"message": "안녕하세요"}, api_key)
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) >= {"message", "quick_replies", "render_plan", "response_schema", "session_id", "turn_id", "usage"}
    assert "AI 모델이 설정되어 있지 않아" in body["message"]
    assert body["render_plan"][0] == {"type": "text", "text": body["message"]}
    turn = Turn.objects.get(pk=body["turn_id"])
    assert turn.status == Turn.Status.COMPLETED and turn.model == "offline"
    assert turn.session.channel == "api"


def test_offline_answer_is_deterministic_and_english_for_english(client, api_key, offline_llm):
    first = post(client, {"message": "Hello there"}, api_key).json()["message"]
    second = post(client, {"message": "Hello there"}, api_key).json()["message"]
    assert first == second and "No AI model is configured" in first


def test_fake_llm_json_records_usage_and_timings(client, api_key, fake_llm):
    body = post(client, {"message": "환불 규정 알려줘"}, api_key).json()
    assert body["message"] == "가짜 모델의 답변입니다: 환불 규정 알려줘"
    turn = Turn.objects.get(pk=body["turn_id"])
    assert turn.tokens_in and turn.tokens_out == len(body["message"].split(" "))
    assert turn.ttft_ms is not None and turn.latency_ms is not None
    sent = fake_llm.requests[-1]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["temperature"] == 0.2 and sent["max_tokens"] == 1000


def test_sse_stream_events(client, api_key, fake_llm):
    fake_llm.config.reply = "하나 둘 셋"
    response = post(client, {"message": "세어 줘"}, api_key, HTTP_ACCEPT="text/event-stream")
    assert response["Content-Type"].startswith("text/event-stream")
    events = sse_events(response)
    names = [name for name, _ in events]
    assert names[0] == "start" and names[-1] == "message"
    deltas = [data["text"] for name, data in events if name == "delta"]
    assert deltas == ["하나", " 둘", " 셋"]
    assert events[-1][1]["message"] == "하나 둘 셋"


def test_stream_query_parameter(client, api_key, offline_llm):
    response = client.post(URL + "?stream=1", data=json.dumps({"message": "hi"}), content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert [n for n, _ in sse_events(response)][-1] == "message"


def test_tool_calls_become_quick_replies_and_response_schema(client, api_key, fake_llm):
    fake_llm.config.reply = "연락처를 남겨 주시면 안내해 드릴게요."
    fake_llm.config.tool_calls = [
        {"name": "suggest_quick_replies", "arguments": {"replies": ["환불", "배송 조회"]}},
        {"name": "request_user_info", "arguments": {"title": "연락처", "fields": [
            {"name": "name", "label": "이름"}, {"name": "email", "label": "이메일", "type": "email"}]}},
    ]
    body = post(client, {"message": "상담원 연결해 주세요"}, api_key).json()
    assert body["quick_replies"] == [{"label": "환불", "message": "환불"}, {"label": "배송 조회", "message": "배송 조회"}]
    schema = body["response_schema"]
    assert schema["required"] == ["name", "email"] and schema["properties"]["email"]["format"] == "email"
    assert [block["type"] for block in body["render_plan"]] == ["text", "quick_replies", "form"]
    assert fake_llm.requests[-1]["tools"][0]["function"]["name"] == "suggest_quick_replies"


def test_history_is_sent_on_the_second_turn(client, api_key, fake_llm):
    first = post(client, {"message": "첫 번째"}, api_key).json()
    post(client, {"message": "두 번째", "session_id": first["session_id"]}, api_key)
    messages = fake_llm.requests[-1]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1]["content"] == "첫 번째" and messages[3]["content"] == "두 번째"
    assert list(Turn.objects.filter(session_id=first["session_id"]).values_list("seq", flat=True)) == [1, 2]


def test_help_command_answers_without_llm(client, api_key, fake_llm):
    body = post(client, {"message": "/도움말"}, api_key).json()
    assert "/help" in body["message"] and fake_llm.requests == []
    assert Turn.objects.get(pk=body["turn_id"]).handled_by == "command:help"


def test_session_turns_listing(client, api_key, offline_llm, other_api_key):
    body = post(client, {"message": "안녕"}, api_key).json()
    url = f"/api/runtime/sessions/{body['session_id']}/turns"
    listing = client.get(url, HTTP_AUTHORIZATION=f"Bearer {api_key}").json()
    assert listing["count"] == 1 and listing["results"][0]["user_text"] == "안녕"
    assert_error(client.get(url, HTTP_AUTHORIZATION=f"Bearer {other_api_key}"), 404, "session_not_found")


# --- bad input -----------------------------------------------------------------------------

def test_missing_key(client, agent):
    assert_error(post(client, {"message": "hi"}), 401, "unauthenticated")
    assert Turn.objects.count() == 0


def test_malformed_key(client, agent):
    assert_error(post(client, {"message": "hi"}, "mj_sk_not-a-real-key"), 401, "unauthenticated")
    response = client.post(URL, data="{}", content_type="application/json", HTTP_AUTHORIZATION="Basic abc")
    assert_error(response, 401)


def test_revoked_key(client, api_key):
    from runtime.auth import api_key_revoke
    from runtime.models import ApiKey

    api_key_revoke(api_key=ApiKey.objects.get())
    error = assert_error(post(client, {"message": "hi"}, api_key), 401, "unauthenticated")
    assert "revoked" in error["message"]


def test_malformed_json(client, api_key):
    assert_error(post(client, '{"message": "hi"', api_key), 400, "malformed_json")
    assert_error(post(client, '["a list"]', api_key), 400)
    assert Turn.objects.count() == 0


def test_wrong_content_type(client, api_key):
    response = client.post(URL, data="message=hi", content_type="application/x-www-form-urlencoded",
                           HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("message", ["", "   \n\t  ", "\u200b\u200b", "\x00\x00"])
def test_empty_message(client, api_key, message):
    assert_error(post(client, {"message": message}, api_key), 400, "empty_message")
    assert Turn.objects.count() == 0 and Session.objects.count() == 0


def test_missing_message_field(client, api_key):
    error = assert_error(post(client, {"text": "hi"}, api_key), 400, "invalid")
    assert error["field"] == "message"


def test_message_over_limit(client, api_key, settings):
    settings.RUNTIME_MAX_MESSAGE_CHARS = 4000
    error = assert_error(post(client, {"message": "가" * 4001}, api_key), 400, "message_too_long")
    assert "4,000" in error["message"] and error["limit"] == 4000
    assert Turn.objects.count() == 0


def test_body_over_limit(client, api_key, settings):
    settings.RUNTIME_MAX_BODY_BYTES = 1000
    assert_error(post(client, {"message": "a" * 2000}, api_key), 413, "payload_too_large")


def test_control_characters_are_stripped(client, api_key, offline_llm):
    body = post(client, {"message": "안\x00녕\x07하세요\u202e"}, api_key).json()
    assert Turn.objects.get(pk=body["turn_id"]).user_text == "안녕하세요"


def test_unknown_session(client, api_key):
    assert_error(post(client, {"message": "hi", "session_id": "00000000-0000-0000-0000-000000000000"}, api_key), 404, "session_not_found")
    assert_error(post(client, {"message": "hi", "session_id": "not-a-uuid"}, api_key), 400)


def test_session_of_another_organization(client, api_key, other_api_key, offline_llm):
    theirs = post(client, {"message": "비밀 이야기"}, other_api_key).json()
    error = assert_error(post(client, {"message": "hi", "session_id": theirs["session_id"]}, api_key), 404, "session_not_found")
    assert "비밀" not in json.dumps(error)
    assert Turn.objects.filter(session_id=theirs["session_id"]).count() == 1


def test_same_client_message_id_twice(client, api_key, fake_llm):
    first = post(client, {"message": "주문 취소", "client_message_id": "m-1"}, api_key).json()
    second = post(client, {"message": "주문 취소", "client_message_id": "m-1"}, api_key).json()
    assert second["turn_id"] == first["turn_id"] and second["message"] == first["message"]
    assert len(fake_llm.requests) == 1
    assert Turn.objects.count() == 1 and Session.objects.count() == 1


def test_client_message_id_is_scoped_to_the_conversation(client, api_key, offline_llm):
    """Issue 10 (3): a second conversation reusing client_message_id "1" never gets the first one's turn."""
    first = post(client, {"message": "제 계좌번호는 110-222-333333", "client_message_id": "1"}, api_key).json()
    other = post(client, {"message": "안녕하세요"}, api_key).json()
    # The other conversation names its own session: its message "1" is a new turn of that session.
    second = post(client, {"message": "두 번째 대화", "client_message_id": "1", "session_id": other["session_id"]},
                  api_key)
    assert second.status_code == 409, second.content
    assert second.json()["error"]["code"] == "idempotency_conflict"
    assert "110-222" not in second.content.decode()
    # Ids used inside a named session belong to it: another session reusing them gets its own turn.
    a = post(client, {"message": "A", "client_message_id": "x-1", "session_id": first["session_id"]}, api_key).json()
    b = post(client, {"message": "B", "client_message_id": "x-1", "session_id": other["session_id"]}, api_key).json()
    assert a["session_id"] == first["session_id"] and b["session_id"] == other["session_id"]
    assert a["turn_id"] != b["turn_id"]
    # A retry in the same session is still the same turn, and the first message's retry naming its session too.
    again = post(client, {"message": "B", "client_message_id": "x-1", "session_id": other["session_id"]}, api_key)
    assert again.json()["turn_id"] == b["turn_id"]
    retry = post(client, {"message": "제 계좌번호는 110-222-333333", "client_message_id": "1",
                          "session_id": first["session_id"]}, api_key).json()
    assert retry["turn_id"] == first["turn_id"]
    assert Turn.objects.filter(session_id=other["session_id"]).count() == 2


def test_llm_down(client, api_key, settings):
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"  # nothing listens on the discard port
    settings.OPENAI_API_KEY = "x"
    settings.LLM_MAX_RETRIES = 0
    error = assert_error(post(client, {"message": "살려 주세요"}, api_key), 502, "llm_unavailable")
    turn = Turn.objects.get(pk=error["turn_id"])
    assert turn.user_text == "살려 주세요" and turn.status == Turn.Status.FAILED


def test_llm_timeout(client, api_key, fake_llm, settings):
    fake_llm.config.hang = True
    settings.LLM_READ_TIMEOUT = 0.5
    error = assert_error(post(client, {"message": "느린 질문"}, api_key), 504, "llm_timeout")
    assert Turn.objects.get(pk=error["turn_id"]).status == Turn.Status.FAILED


def test_llm_error_status(client, api_key, fake_llm):
    fake_llm.config.fail_status, fake_llm.config.fail_times = 500, 5
    error = assert_error(post(client, {"message": "질문"}, api_key), 502, "llm_error")
    assert Turn.objects.get(pk=error["turn_id"]).error_code == "llm_error"


def test_llm_retries_a_transient_failure(client, api_key, fake_llm, settings):
    settings.LLM_MAX_RETRIES = 2
    fake_llm.config.fail_status, fake_llm.config.fail_times = 503, 1
    response = post(client, {"message": "재시도"}, api_key)
    assert response.status_code == 200 and len(fake_llm.requests) == 2


def test_llm_breaks_mid_stream(client, api_key, fake_llm):
    fake_llm.config.reply = "하나 둘 셋 넷 다섯"
    fake_llm.config.cut_after_tokens = 2
    response = post(client, {"message": "세어 줘"}, api_key, HTTP_ACCEPT="text/event-stream")
    events = sse_events(response)
    assert [n for n, _ in events] == ["start", "delta", "delta", "error"]
    assert events[-1][1]["code"] == "llm_stream_broken"
    turn = Turn.objects.get()
    assert turn.status == Turn.Status.FAILED and turn.reply_text == "하나 둘" and turn.user_text == "세어 줘"


def test_body_over_django_upload_limit_is_json_413(client, api_key):
    """Past DATA_UPLOAD_MAX_MEMORY_SIZE Django itself refuses the body: still the one error shape."""
    response = post(client, {"message": "a" * (300 * 1024)}, api_key)
    assert_error(response, 413, "payload_too_large")
    assert Turn.objects.count() == 0
