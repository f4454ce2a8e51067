"""Model replies as real servers send them (issue 9): scripted fake-server streams, byte for byte.

Kinds covered here: NUL and refused values from the model (3), cut-off and truncated streams
(6), empty answers (4), reasoning (5), tool-call assembly (2). Every case goes through
POST /api/runtime/chat and the real SDK path to the fake server on loopback.
"""

from __future__ import annotations

import json

import pytest

from runtime.fakes import shapes
from runtime.fakes.openai_server import Scripted
from runtime.models import Turn
from runtime.tests.test_chat_api import post, sse_events


def ask(client, api_key, text="질문", *, stream=False, session_id=None):
    body = {"message": text}
    if session_id:
        body["session_id"] = session_id
    extra = {"HTTP_ACCEPT": "text/event-stream"} if stream else {}
    return post(client, body, api_key, **extra)


def last_turn() -> Turn:
    return Turn.objects.order_by("-created_at").first()


# --- 3. NUL and values PostgreSQL refuses, from the model ------------------------------------

@pytest.mark.parametrize(
    "scripted",
    [
        shapes.openai_stream(["안녕\u0000하세요", " 고객님\u0000"]),
        shapes.vllm_stream(["\u0000NUL first", " then text"]),
        shapes.ollama_stream(["ctrl\u0001\u0007 chars", " and \ud800 a lone surrogate"]),
    ],
    ids=["openai", "vllm", "ollama"],
)
def test_nul_in_model_delta_json(client, api_key, fake_llm, scripted):
    fake_llm.script(scripted)
    response = ask(client, api_key)
    assert response.status_code == 200, response.content
    message = response.json()["message"]
    assert "\x00" not in message and "\x01" not in message and "\ud800" not in message
    turn = last_turn()
    assert turn.status == Turn.Status.COMPLETED and turn.reply_text == message


def test_nul_in_model_delta_sse_ends_with_message_and_session_goes_on(client, api_key, fake_llm):
    fake_llm.script(shapes.openai_stream(["a\u0000b", " c"]))
    events = sse_events(ask(client, api_key, stream=True))
    assert [name for name, _ in events][-1] == "message"
    assert "\x00" not in json.dumps([data for _, data in events])
    session_id = events[-1][1]["session_id"]
    # The next message of the session is answered, not held behind a turn left `streaming`.
    second = ask(client, api_key, "다음", session_id=session_id)
    assert second.status_code == 200 and Turn.objects.filter(status=Turn.Status.COMPLETED).count() == 2


def test_failed_final_write_fails_the_turn_and_ends_the_stream(client, api_key, fake_llm, monkeypatch):
    from runtime import services

    real_finish = services._turn_finish

    def finish_that_fails(turn_id, **fields):
        if fields.get("status") == Turn.Status.COMPLETED:
            raise RuntimeError("the database refused the row")
        return real_finish(turn_id, **fields)

    monkeypatch.setattr(services, "_turn_finish", finish_that_fails)
    events = sse_events(ask(client, api_key, stream=True))
    assert [name for name, _ in events][0] == "start" and events[-1][0] == "error"
    assert events[-1][1]["code"] == "storage_failed" and events[-1][1]["retryable"] is True
    turn = last_turn()
    assert turn.status == Turn.Status.FAILED and turn.error_code == "storage_failed"
    # JSON form: the one error shape, not a 500; and the session can go on.
    response = ask(client, api_key, "또", session_id=events[-1][1]["session_id"])
    assert response.status_code == 502 and response.json()["error"]["code"] == "storage_failed"
    monkeypatch.setattr(services, "_turn_finish", real_finish)
    assert ask(client, api_key, "이제", session_id=events[-1][1]["session_id"]).status_code == 200


def test_post_commit_hook_failure_does_not_fail_a_stored_answer(client, api_key, fake_llm, monkeypatch):
    from runtime import signals

    def hook(**kwargs):
        raise RuntimeError("a receiver broke")

    signals.turn_finished.connect(hook, dispatch_uid="issue9-broken-hook")
    try:
        response = ask(client, api_key)
    finally:
        signals.turn_finished.disconnect(dispatch_uid="issue9-broken-hook")
    assert response.status_code == 200
    assert last_turn().status == Turn.Status.COMPLETED


# --- 6. cut-off streams and truncated answers ---------------------------------------------

@pytest.mark.parametrize(
    "scripted",
    [
        shapes.openai_stream(["하나", " 둘"], finish=None, usage=False, done=False),  # ends cleanly, says nothing
        shapes.openai_stream(["하나", " 둘"], finish=None, usage=True, done=True),  # [DONE] but no finish_reason
        shapes.vllm_stream(["하나", " 둘"], finish=None),
        Scripted(parts=shapes.openai_stream(["하나", " 둘"], finish=None, done=False).parts, end="abort"),
    ],
    ids=["clean-eof", "done-without-finish", "vllm", "connection-dropped"],
)
def test_cut_off_stream_fails_with_partial_text(client, api_key, fake_llm, scripted):
    fake_llm.script(scripted)
    events = sse_events(ask(client, api_key, stream=True))
    assert [name for name, _ in events] == ["start", "delta", "delta", "error"]
    assert events[-1][1]["code"] == "llm_stream_broken"
    turn = last_turn()
    assert turn.status == Turn.Status.FAILED and turn.error_code == "llm_stream_broken"
    assert turn.reply_text == "하나 둘"


def test_mid_stream_error_object_fails_and_keeps_masked_body(client, api_key, fake_llm):
    parts = shapes.vllm_stream(["부분"], finish=None).parts[:2]
    parts.append(shapes.event({"error": {"message": "engine died, key sk-abcdefghijklmnop", "code": 500}}))
    fake_llm.script(Scripted(parts=parts))
    response = ask(client, api_key)
    assert response.status_code == 502 and response.json()["error"]["code"] == "llm_stream_broken"
    turn = last_turn()
    body = turn.diagnostics["upstream_error"]["body"]
    assert "engine died" in body and "sk-abcdefghijklmnop" not in body
    assert "engine died" not in json.dumps(response.json())  # operators see it, clients do not


@pytest.mark.parametrize(
    "scripted,reason",
    [
        (shapes.openai_stream(["긴 답변의", " 앞부분"], finish="length"), "length"),
        (shapes.azure_stream(["filtered", " half"], finish="content_filter"), "content_filter"),
        (shapes.ollama_stream(["잘린", " 답"], finish="length"), "length"),
    ],
    ids=["openai-length", "azure-content-filter", "ollama-length"],
)
def test_truncated_answer_is_flagged(client, api_key, fake_llm, scripted, reason):
    fake_llm.script(scripted)
    body = ask(client, api_key).json()
    assert body["truncated"] is True
    turn = last_turn()
    assert turn.status == Turn.Status.COMPLETED and turn.payload["truncated"] is True
    assert turn.diagnostics["finish_reason"] == reason


def test_whole_answer_is_not_flagged(client, api_key, fake_llm):
    fake_llm.script(shapes.azure_stream(["전체", " 답변"]))
    body = ask(client, api_key).json()
    assert body["message"] == "전체 답변" and body["truncated"] is False


# --- 4. empty answers ------------------------------------------------------------------------

@pytest.mark.parametrize(
    "scripted",
    [
        shapes.vllm_stream([], reasoning=["생각만", " 하다가"], finish="length"),
        shapes.ollama_stream(["  ", "\n"], finish="stop"),
        shapes.openai_stream(["<think>only thinking</think>", "   "]),
        shapes.llamacpp_stream([]),
        shapes.openai_stream([], tool_calls=[{"index": 0, "id": "c1", "function": {"name": "suggest_quick_replies",
                                                                                  "arguments": "{not json"}}],
                             finish="tool_calls"),
    ],
    ids=["reasoning-only-length", "whitespace", "think-only", "llamacpp-nothing", "unusable-tool-call"],
)
def test_empty_answer_is_a_retryable_failure(client, api_key, fake_llm, scripted):
    fake_llm.script(scripted)
    events = sse_events(ask(client, api_key, stream=True))
    assert events[-1][0] == "error"
    assert events[-1][1]["code"] == "llm_empty_answer" and events[-1][1]["retryable"] is True
    turn = last_turn()
    assert turn.status == Turn.Status.FAILED and turn.reply_text == ""


def test_azure_content_filter_without_text(client, api_key, fake_llm):
    fake_llm.script(shapes.azure_stream([], finish="content_filter"))
    response = ask(client, api_key)
    assert response.status_code == 502 and response.json()["error"]["code"] == "llm_content_filtered"


def test_history_never_carries_an_empty_assistant_message(client, api_key, fake_llm):
    fake_llm.script(shapes.vllm_stream([], reasoning=["..."], finish="length"))
    failed = ask(client, api_key, "첫 질문")
    session_id = failed.json()["error"]["session_id"]
    # A turn stored before this rule (completed with ""), and one with reasoning in its reply.
    Turn.objects.filter(session_id=session_id).update(status=Turn.Status.COMPLETED, reply_text="")
    second = ask(client, api_key, "두 번째", session_id=session_id)
    assert second.status_code == 200
    Turn.objects.filter(pk=second.json()["turn_id"]).update(reply_text="<think>secret plan</think>보이는 답")
    assert ask(client, api_key, "세 번째", session_id=session_id).status_code == 200
    messages = fake_llm.requests[-1]["messages"]
    assistants = [m["content"] for m in messages if m["role"] == "assistant"]
    assert assistants == ["보이는 답"]
    assert all(m["content"] for m in messages)


# --- 5. reasoning ----------------------------------------------------------------------------

THINK_ANSWER = "<think>고객 이름은 민지, 내부 메모</think>안녕하세요, 무엇을 도와드릴까요?"


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
def test_think_block_split_at_any_byte_is_never_shown(client, api_key, fake_llm, size):
    # Every delta is one character of the answer, and the HTTP chunks cut the bytes every `size`.
    scripted = shapes.openai_stream(list(THINK_ANSWER))
    fake_llm.script(Scripted(parts=shapes.split_every(scripted.parts, size)))
    events = sse_events(ask(client, api_key, stream=True))
    streamed = "".join(d["text"] for name, d in events if name == "delta")
    assert streamed == "안녕하세요, 무엇을 도와드릴까요?"
    assert events[-1][1]["message"] == streamed
    turn = last_turn()
    assert turn.reply_text == streamed and "민지" not in json.dumps(turn.payload)
    assert turn.diagnostics["reasoning_chars"] > 0


@pytest.mark.parametrize(
    "scripted",
    [
        shapes.vllm_stream(["답변입니다"], reasoning=["비밀 ", "추론"]),
        shapes.vllm_stream(["답변입니다"], reasoning=["비밀 추론"], reasoning_field="reasoning"),
        shapes.ollama_stream(["답변입니다"], reasoning=["비밀 추론"]),
        shapes.openai_stream(["<thinking>비밀 추론</thinking>\n\n답변입니다"]),
        shapes.openai_stream(["<think>", "비밀 추론", "</think>", "답변입니다"]),
    ],
    ids=["vllm-reasoning_content", "vllm-reasoning", "ollama-reasoning", "thinking-tag", "think-tags-own-deltas"],
)
def test_reasoning_fields_and_tags_are_separated(client, api_key, fake_llm, scripted):
    fake_llm.script(scripted)
    events = sse_events(ask(client, api_key, stream=True))
    assert "비밀" not in json.dumps([d for _, d in events], ensure_ascii=False)
    assert events[-1][1]["message"] == "답변입니다"
    assert last_turn().reply_text == "답변입니다"


def test_lone_closing_tag_drops_reasoning_from_the_stored_answer(client, api_key, fake_llm):
    fake_llm.script(shapes.openai_stream(["the template opened the block", " in the prompt", "</think>", "진짜 답"]))
    body = ask(client, api_key).json()
    assert body["message"] == "진짜 답"
    turn = last_turn()
    assert turn.reply_text == "진짜 답"
    assert {w["code"] for w in turn.diagnostics["warnings"]} == {"reasoning_without_open_tag"}


def test_a_lone_angle_bracket_is_still_text(client, api_key, fake_llm):
    fake_llm.script(shapes.openai_stream(["1 <", " 2 and <b>bold</b> <thin"]))
    assert ask(client, api_key).json()["message"] == "1 < 2 and <b>bold</b> <thin"


# --- 2. tool calls as servers send them --------------------------------------------------------

QR = "suggest_quick_replies"
ARGS = json.dumps({"replies": ["예", "아니요"]}, ensure_ascii=False)


def fn(name=None, arguments=None) -> dict:
    out = {}
    if name is not None:
        out["name"] = name
    if arguments is not None:
        out["arguments"] = arguments
    return out


@pytest.mark.parametrize(
    "scripted",
    [
        # OpenAI: header with index/id/name, then fragments with index only.
        shapes.openai_stream(["골라 주세요"], tool_calls=[
            {"index": 0, "id": "call_1", "type": "function", "function": fn(QR, "")},
            {"index": 0, "function": fn(arguments=ARGS[:9])},
            {"index": 0, "function": fn(arguments=ARGS[9:])},
        ]),
        # No index at all: continuations of the last call.
        shapes.openai_stream(["골라 주세요"], tool_calls=[
            {"id": "call_1", "function": fn(QR, ARGS[:5])},
            {"function": fn(arguments=ARGS[5:])},
        ]),
        # Keyed by id only, name repeated in every delta.
        shapes.openai_stream(["골라 주세요"], tool_calls=[
            {"id": "call_x", "function": fn(QR, ARGS[:4])},
            {"id": "call_x", "function": fn(QR, ARGS[4:])},
        ]),
        # The name arrives late, after the arguments.
        shapes.openai_stream(["골라 주세요"], tool_calls=[
            {"index": 0, "function": fn(arguments=ARGS)},
            {"index": 0, "id": "call_late", "function": fn(QR)},
        ]),
        # Ollama: the whole call in one delta, arguments as an object, no index, finish "stop".
        shapes.ollama_stream(["골라 주세요"], tool_calls=[
            {"id": "call_o", "function": {"name": QR, "arguments": {"replies": ["예", "아니요"]}}},
        ]),
        # vLLM: header (arguments "") then fragments; arguments JSON-encoded twice by a proxy.
        shapes.vllm_stream(["골라 주세요"], tool_calls=[
            {"index": 0, "id": "chatcmpl-tool-1", "type": "function", "function": fn(QR, "")},
            {"index": 0, "function": fn(arguments=json.dumps(ARGS))},
        ], finish="tool_calls"),
        # The whole arguments repeated in a second delta.
        shapes.openai_stream(["골라 주세요"], tool_calls=[
            {"index": 0, "id": "c", "function": fn(QR, ARGS)},
            {"index": 0, "function": fn(arguments=ARGS)},
        ]),
    ],
    ids=["openai", "no-index", "id-only-name-repeated", "late-name", "ollama-whole-object", "vllm-double-encoded",
         "arguments-repeated"],
)
def test_tool_call_assembly(client, api_key, fake_llm, scripted):
    fake_llm.script(scripted)
    body = ask(client, api_key).json()
    assert [q["label"] for q in body["quick_replies"]] == ["예", "아니요"], body
    assert "warnings" not in last_turn().diagnostics


def test_reused_index_makes_two_calls(client, api_key, fake_llm):
    form = json.dumps({"fields": [{"name": "email"}]})
    fake_llm.script(shapes.openai_stream(["도와드릴게요"], tool_calls=[
        {"index": 0, "id": "call_a", "function": fn(QR, ARGS)},
        {"index": 0, "id": "call_b", "function": fn("request_user_info", form)},
    ]))
    body = ask(client, api_key).json()
    assert [q["label"] for q in body["quick_replies"]] == ["예", "아니요"]
    assert body["response_schema"]["properties"]["email"]["format"] == "email"


def test_two_whole_calls_without_index_or_id(client, api_key, fake_llm):
    form = json.dumps({"fields": [{"name": "phone"}]})
    fake_llm.script(shapes.ollama_stream(["도와드릴게요"], tool_calls=[
        {"function": {"name": QR, "arguments": ARGS}},
        {"function": {"name": "request_user_info", "arguments": form}},
    ]))
    body = ask(client, api_key).json()
    assert body["quick_replies"] and "phone" in body["response_schema"]["properties"]


@pytest.mark.parametrize(
    "deltas,code",
    [
        ([{"index": 0, "id": "c", "function": fn(QR, '{"replies": ["예"')}], "tool_call_invalid_arguments"),
        ([{"index": 0, "id": "c", "function": fn(arguments=ARGS)}], "tool_call_without_name"),
        ([{"index": 0, "id": "c", "function": fn("delete_account", "{}")}], "tool_call_unknown"),
        ([{"index": 0, "id": "c", "function": fn(QR, "[1, 2]")}], "tool_call_invalid_arguments"),
        ([{"index": 0, "id": "c", "function": fn(QR, '{"replies": "not a list"}')}], "tool_call_unusable"),
    ],
    ids=["truncated-json", "no-name", "unknown-function", "not-an-object", "unusable-shape"],
)
def test_unusable_tool_call_is_a_warning_on_the_turn(client, api_key, fake_llm, deltas, code):
    fake_llm.script(shapes.openai_stream(["답변은 있어요"], tool_calls=deltas))
    body = ask(client, api_key).json()
    assert body["message"] == "답변은 있어요" and body["quick_replies"] == []
    warnings = last_turn().diagnostics["warnings"]
    assert [w["code"] for w in warnings] == [code]
    assert "warnings" not in body and "diagnostics" not in body  # operator-visible only


def test_operators_see_warnings_in_the_session_turns_api_of_their_organization_only(
    client, api_key, other_api_key, fake_llm
):
    fake_llm.script(shapes.openai_stream(["답"], tool_calls=[{"index": 0, "function": fn(arguments="{}")}]))
    session_id = ask(client, api_key).json()["session_id"]
    url = f"/api/runtime/sessions/{session_id}/turns"
    turns = client.get(url, HTTP_AUTHORIZATION=f"Bearer {api_key}").json()
    rows = turns["results"] if isinstance(turns, dict) else turns
    assert rows[0]["diagnostics"]["warnings"][0]["code"] == "tool_call_without_name"
    other = client.get(url, HTTP_AUTHORIZATION=f"Bearer {other_api_key}")
    assert other.status_code == 404 and "tool_call" not in other.content.decode()


def test_a_fault_while_reading_the_answer_still_closes_turn_and_stream(client, api_key, fake_llm, monkeypatch):
    from runtime.clients.stream import ChatStreamAssembler

    def broken(self, line):
        raise RuntimeError("a bug in assembly")

    monkeypatch.setattr(ChatStreamAssembler, "feed_line", broken)
    events = sse_events(ask(client, api_key, stream=True))
    assert events[-1][0] == "error" and events[-1][1]["code"] == "answer_failed"
    assert last_turn().status == Turn.Status.FAILED


# --- the splitter itself, at every cut ----------------------------------------------------------

@pytest.mark.parametrize(
    "text,visible",
    [
        ("<think>a</think>b", "b"),
        ("x<thinking>y</thinking>z<think>w</think>!", "xz!"),
        ("no tags < here <thi", "no tags < here <thi"),
        ("<think>never closed", ""),
        ("a </think>b", "b"),
        ("</thinking> 답", " 답"),
    ],
)
def test_reasoning_splitter_every_cut(text, visible):
    from runtime.clients.stream import ReasoningSplitter

    for cut_a in range(len(text) + 1):
        for cut_b in range(cut_a, len(text) + 1):
            splitter = ReasoningSplitter()
            shown = "".join(splitter.feed(piece) for piece in (text[:cut_a], text[cut_a:cut_b], text[cut_b:]))
            shown += splitter.flush()
            assert splitter.visible == visible, (cut_a, cut_b)
            if not splitter.stray_close:
                assert shown == visible, (cut_a, cut_b)
