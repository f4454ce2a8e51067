"""The one language policy of API error messages: Korean first, English in parentheses.

Every JSON error leaves through `message_bilingual` (ApiError, the plain-view error responses and
DRF's exception handler): a message that already holds Korean is kept; an English one gets the
Korean text of its code in front. DRF's and Django's own messages (validation, 401, 405, 415…)
are translated both ways with their gettext catalogs, placeholders included, so
"이 필드는 필수 항목입니다." becomes "이 필드는 필수 항목입니다. (This field is required.)".
See docs/runtime.md ("Errors").
"""

from __future__ import annotations

import re
from functools import cache

from django.utils import translation

HANGUL = re.compile(r"[\uac00-\ud7a3]")

# Korean for each error code the project answers with; the English message (with its details) follows
# in parentheses. A code missing here falls back to GENERIC_KO (a test lists the codes in use).
KO_BY_CODE = {
    "overloaded": "지금 요청이 많아 잠시 후 다시 시도해 주세요.",
    "mchat_config": "Mattermost 연동 설정(MCHAT_*)이 올바르지 않아요.",
    "user_unknown": "Mattermost 사용자 정보를 읽을 수 없어요.",
    "agent_not_found": "그 이름의 활성 에이전트가 없어요.",
    "bad_request": "요청을 읽을 수 없어요.",
    "bot_mismatch": "bot.id가 이 시크릿의 봇과 달라요.",
    "broker_unreachable": "작업 대기열에 연결할 수 없어요. 잠시 후 다시 시도해 주세요.",
    "contact_not_found": "연락처를 찾을 수 없어요.",
    "empty_body": "요청 본문이 비어 있어요.",
    "error": "요청을 처리할 수 없어요.",
    "forbidden": "이 작업을 할 권한이 없어요.",
    "in_progress": "아직 처리 중이에요.",
    "invalid": "요청 값이 올바르지 않아요.",
    "invalid_encoding": "요청 본문은 UTF-8이어야 해요.",
    "invalid_event_type": "알 수 없는 이벤트 종류예요.",
    "invalid_identity_kind": "알 수 없는 식별 정보 종류예요.",
    "invalid_json": "요청 본문이 올바른 JSON이 아니에요.",
    "malformed_json": "요청 본문이 올바른 JSON이 아니에요.",
    "merge_cross_organization": "다른 조직의 연락처와는 병합할 수 없어요.",
    "merge_erased": "삭제(파기)된 연락처는 병합할 수 없어요.",
    "merge_into_merged": "병합 대상이 이미 다른 연락처에 병합되었어요.",
    "merge_same": "연락처를 자기 자신에 병합할 수 없어요.",
    "merge_source_merged": "이 연락처는 이미 다른 연락처에 병합되었어요.",
    "method_not_allowed": "허용되지 않는 메서드예요.",
    "no_agent": "이 조직에는 활성 에이전트가 없어요.",
    "no_answer_yet": "이 대화에는 아직 답변이 없어요.",
    "not_acceptable": "요청한 응답 형식을 제공할 수 없어요.",
    "not_deliverable": "이 답변은 다시 보낼 수 없어요.",
    "not_found": "찾을 수 없어요.",
    "not_joined": "먼저 위젯 토큰으로 join 프레임을 보내 주세요.",
    "nothing_to_roll_back": "되돌릴 이전 활성 버전이 없어요.",
    "payload_too_large": "요청 본문이 너무 커요.",
    "login_locked": "로그인 시도가 너무 많아 잠시 잠겼어요. 잠시 후 다시 시도해 주세요.",
    "length_required": "요청 본문의 길이(Content-Length)가 필요해요.",
    "rate_limited": "요청이 너무 많아요. 잠시 후 다시 시도해 주세요.",
    "server_error": "예기치 않은 오류가 발생했어요.",
    "session_not_found": "대화를 찾을 수 없어요.",
    "unauthenticated": "인증 정보가 없거나 올바르지 않아요.",
    "unsupported_media_type": "지원하지 않는 Content-Type이에요.",
    "widget_not_found": "위젯을 찾을 수 없어요.",
    # turn events (SSE, WebSocket) of the pipeline
    "answer_failed": "답변을 만들지 못했어요.",
    "client_disconnected": "연결이 끊겨 답변이 중단되었어요.",
    "command_failed": "명령을 처리하지 못했어요.",
    "empty_message": "메시지가 비어 있어요.",
    "llm_content_filtered": "AI 모델이 이 질문에 답하지 않았어요.",
    "llm_empty_answer": "AI 모델이 빈 답변을 보냈어요. 다시 시도해 주세요.",
    "llm_error": "AI 모델이 오류로 답했어요.",
    "llm_rate_limited": "AI 모델 요청이 많아요. 잠시 후 다시 시도해 주세요.",
    "llm_stream_broken": "AI 모델의 답변이 중간에 끊겼어요.",
    "llm_timeout": "AI 모델이 제시간에 답하지 않았어요.",
    "llm_unavailable": "AI 모델에 연결할 수 없어요.",
    "model_busy": "지금 AI 모델 요청이 많아요. 잠시 후 다시 시도해 주세요.",
    "no_answer": "답변이 만들어지지 않았어요.",
    "order_timeout": "앞선 메시지를 처리하느라 이 메시지를 아직 처리하지 못했어요. 다시 보내 주세요.",
    "stopped": "답변을 멈췄어요.",
    "storage_failed": "답변을 저장하지 못했어요. 다시 시도해 주세요.",
    "sync_timeout": "시간 안에 답하지 못했어요.",
    "ticket_invalid": "스트림 티켓이 올바르지 않아요.",
    "token_expired": "위젯 토큰이 만료되었어요.",
    "token_invalid": "위젯 토큰이 올바르지 않아요.",
    "token_missing": "위젯 토큰이 필요해요.",
    "turn_in_progress": "이 메시지는 아직 답변 중이에요.",
}
GENERIC_KO = "요청을 처리할 수 없어요."

_PLACEHOLDER = re.compile(r"\{(\w+)\}|%\((\w+)\)[sdrf]")


def message_bilingual(code: str, message: str) -> str:
    """'한국어 (English)' for an error message; a message that already holds Korean is returned as is."""
    message = str(message)
    if HANGUL.search(message):
        pair = _catalog_pair(message)
        return f"{pair[0]} ({pair[1]})" if pair and pair[0] != pair[1] else message
    pair = _catalog_pair(message)
    korean = pair[0] if pair and HANGUL.search(pair[0]) else KO_BY_CODE.get(code, GENERIC_KO)
    return f"{korean} ({message})" if message else korean


def _catalog_pair(message: str) -> tuple[str, str] | None:
    """(Korean, English) of a DRF/Django message in either language, placeholders filled; None if unknown."""
    for (pattern, _), both in _templates():
        match = pattern.fullmatch(message)
        if match:
            values = match.groupdict()
            return _fill(both["ko"], values), _fill(both["en"], values)
    return None


def _fill(template: str, values: dict) -> str:
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1) or m.group(2), m.group(0)), template)


def _pattern(template: str) -> re.Pattern | None:
    parts, seen, last = [], set(), 0
    for m in _PLACEHOLDER.finditer(template):
        parts.append(re.escape(template[last:m.start()]))
        name = m.group(1) or m.group(2)
        parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>.+?)")
        seen.add(name)
        last = m.end()
    parts.append(re.escape(template[last:]))
    try:
        return re.compile("".join(parts), re.DOTALL)
    except re.error:
        return None


def _lazy_messages():
    """The lazy (translatable) messages of DRF's fields and exceptions and Django's validators."""
    from django.core import validators
    from rest_framework import exceptions, fields, relations, serializers

    seen = set()
    stack = [fields.Field]
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        stack.extend(cls.__subclasses__())
        yield from getattr(cls, "default_error_messages", {}).values()
    for module in (exceptions,):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, exceptions.APIException):
                yield value.default_detail
    for value in vars(validators).values():
        if isinstance(value, type) and hasattr(value, "message"):
            yield value.message
    yield serializers.Serializer.default_error_messages.get("invalid", "")
    yield relations.RelatedField.default_error_messages.get("does_not_exist", "") if hasattr(
        relations.RelatedField, "default_error_messages") else ""


@cache
def _templates() -> list:
    """[(compiled pattern of one language, {"ko": template, "en": template})], longest first."""
    found = {}
    for lazy in _lazy_messages():
        if not lazy:
            continue
        with translation.override("en"):
            english = str(lazy)
        with translation.override("ko"):
            korean = str(lazy)
        if english == korean:
            continue
        found[english] = korean
    templates = []
    for english, korean in found.items():
        both = {"ko": korean, "en": english}
        for text in (korean, english):
            pattern = _pattern(text)
            if pattern is not None:
                templates.append(((pattern, len(text)), both))
    templates.sort(key=lambda item: -item[0][1])
    return templates
