"""What a finished model stream amounts to: a whole answer, a truncated one, or a failure.

The rules (docs/model-compatibility.md):
* the visible text is the provider's `StreamEnd.text` (reasoning already removed);
* a usable tool call can stand in for text (a form or quick replies get a short prompt text);
* no visible text and no usable tool call is `llm_empty_answer` — a retryable failure, never
  a `completed` turn with an empty message (which would poison the history);
* `finish_reason` `length` / `content_filter` is a truncated answer: stored and delivered with
  `truncated: true` in the payload, never presented as whole;
* operator-visible diagnostics: finish_reason, warnings, reasoning length, parameters sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runtime.clients.llm import StreamEnd, ToolCall

TRUNCATING_FINISH_REASONS = frozenset({"length", "content_filter"})
EMPTY_ANSWER_MESSAGE = (
    "모델이 빈 답변을 보냈어요. 다시 시도해 주세요. (The model sent an empty answer; please try again.)"
)
FILTERED_ANSWER_MESSAGE = (
    "모델이 이 질문에 답하지 않았어요. (The model's content filter withheld the answer.)"
)


@dataclass
class Answer:
    message: str = ""
    payload: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)
    error_code: str = ""
    error_message: str = ""


def answer_assemble(*, end: StreamEnd, calls: list[ToolCall], extra_form_fields=(), tool_texts=(),
                    tool_records=(), tool_warnings=()) -> Answer:
    """Turn a finished stream into the stored answer, or an error code when there is none.

    `calls` are the output-tool calls; the channel tools (runtime/tools.py) the pipeline already ran
    give `tool_texts` (confirmations appended to the reply), `tool_records` (diagnostics
    `tool_calls`) and `tool_warnings` (their unusable calls).
    """
    # The payload helpers live with the pipeline (runtime.services imports this module).
    from runtime.services import _quick_replies_from, _render_plan, _response_schema_from

    warnings = list(end.warnings) + list(tool_warnings)
    quick_replies: list[dict] = []
    response_schema = None
    for call in calls:
        if call.name == "suggest_quick_replies":
            replies = call.arguments.get("replies")
            quick_replies = _quick_replies_from(replies if isinstance(replies, list) else None)
            if not quick_replies:
                warnings.append({"code": "tool_call_unusable", "tool": call.name, "detail": "no usable replies"})
        elif call.name == "request_user_info":
            response_schema = _response_schema_from(call.arguments, extra_fields=extra_form_fields)
            if response_schema is None:
                warnings.append({"code": "tool_call_unusable", "tool": call.name, "detail": "no usable form fields"})
    diagnostics: dict = {"finish_reason": end.finish_reason}
    if end.reasoning_chars:
        diagnostics["reasoning_chars"] = end.reasoning_chars  # the reasoning itself is not kept
    if end.parameters:
        diagnostics["parameters"] = end.parameters
    if warnings:
        diagnostics["warnings"] = warnings
    if tool_records:
        diagnostics["tool_calls"] = list(tool_records)

    message = "\n\n".join(part for part in (end.text.strip(), *tool_texts) if part)
    if not message and not quick_replies and response_schema is None:
        filtered = end.finish_reason == "content_filter"
        return Answer(
            diagnostics=diagnostics,
            error_code="llm_content_filtered" if filtered else "llm_empty_answer",
            error_message=FILTERED_ANSWER_MESSAGE if filtered else EMPTY_ANSWER_MESSAGE,
        )
    if not message and response_schema:
        message = response_schema.get("title") or "아래 정보를 입력해 주세요. (Please fill in the form below.)"
    elif not message and quick_replies:
        message = "아래에서 선택해 주세요. (Please choose below.)"
    payload = {
        "quick_replies": quick_replies,
        "response_schema": response_schema,
        "render_plan": _render_plan(message, quick_replies, response_schema),
    }
    if end.finish_reason in TRUNCATING_FINISH_REASONS:
        payload["truncated"] = True
    return Answer(message=message, payload=payload, diagnostics=diagnostics)
