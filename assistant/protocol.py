"""The wire frames of `ws/chat/{client_id}`, version 1 (docs/assistant.md): one module builds them."""

from __future__ import annotations

import re

PROTOCOL_VERSION = 1

CLIENT_TYPES = ("auth", "chat", "resume", "stop", "ping")

# Bilingual messages, Korean first, for every error code the socket sends.
MESSAGES = {
    "invalid_json": "프레임이 올바른 JSON이 아닙니다. (The frame is not valid JSON.)",
    "invalid_frame": "프레임은 type이 있는 JSON 객체여야 합니다. (A frame is a JSON object with a type.)",
    "unknown_type": "알 수 없는 프레임 종류입니다: auth, chat, resume, stop, ping 중 하나를 보내세요. "
                    "(Unknown frame type: use auth, chat, resume, stop or ping.)",
    "not_authenticated": "먼저 로그인하거나 auth 프레임으로 토큰을 보내세요. "
                         "(Log in, or send an auth frame with a token first.)",
    "auth_timeout": "인증 시간이 지났습니다. 다시 연결해 주세요. (Authentication timed out; reconnect.)",
    "already_authenticated": "이미 인증되었습니다. (Already authenticated.)",
    "token_invalid": "토큰이 올바르지 않습니다. (The token is invalid.)",
    "token_expired": "토큰이 만료되었습니다. 새 토큰으로 다시 인증해 주세요. (The token has expired.)",
    "account_invalid": "이 계정은 어시스턴트를 사용할 수 없습니다: 활성 상태이고 조직에 속해야 합니다. "
                       "(This account cannot use the assistant: it must be active and belong to an organization.)",
    "client_forbidden": "이 client_id는 다른 사용자의 것입니다. (This client_id belongs to another user.)",
    "client_id_invalid": "client_id는 8–64자의 영문, 숫자, _, - 입니다. "
                         "(A client_id is 8–64 letters, digits, _ or -.)",
    "project_not_found": "프로젝트를 찾을 수 없습니다. (Project not found.)",
    "agent_not_found": "에이전트를 찾을 수 없습니다. (Agent not found.)",
    "frame_too_large": "프레임이 너무 큽니다. (The frame is too large.)",
    "nothing_to_stop": "멈출 답변이 없습니다. (There is no answer to stop.)",
    "model_stalled": "모델이 응답하지 않아 답변을 끝냈습니다. (The model stopped responding; the answer was ended.)",
    "internal_error": "답변 중 오류가 발생했어요. (Something went wrong.)",
}


def message_for(code: str, fallback: str = "") -> str:
    return MESSAGES.get(code) or fallback or code


def error_frame(code: str, message: str | None = None, **extra) -> dict:
    return {"type": "error", "code": code, "message": message or message_for(code), **extra}


def frame_start(*, turn_id, message_id: str = "") -> dict:
    return {"type": "start", "turn_id": str(turn_id), "id": message_id or None}


def frame_response(*, turn_id, content: str) -> dict:
    return {"type": "response", "turn_id": str(turn_id), "content": content}


def frame_end(*, turn_id, stopped: bool = False) -> dict:
    return {"type": "end", "turn_id": str(turn_id), "stopped": stopped}


def frame_turn_error(*, turn_id, code: str, message: str) -> dict:
    return error_frame(code, message, turn_id=str(turn_id))


def frame_queued(*, turn_id, message_id: str, message: str, agent_name: str, position: int) -> dict:
    return {"type": "queued", "turn_id": str(turn_id), "id": message_id or None, "message": message,
            "agent_name": agent_name, "position": position}


def frame_auto_report(*, content: str, task_id) -> dict:
    return {"type": "auto_report", "content": content, "task_id": str(task_id) if task_id else None}


# The largest seq a client may name: far above any real stream, and below what Redis stream ids and
# JavaScript numbers hold exactly (2**53).
MAX_SEQ = 10**15


def seq_valid(value) -> bool:
    """A `last_seq` a client may send: a whole number from 0 to MAX_SEQ (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEQ


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable_field(value, path: str = "") -> str | None:
    """The path of the first string in a frame holding NUL or a lone surrogate (which PostgreSQL
    refuses), or None. Keys count too."""
    if isinstance(value, str):
        if _UNSTORABLE.search(value):
            return path or "frame"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = unstorable_field(key, path or "frame") or unstorable_field(item, f"{path}.{key}".strip("."))
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = unstorable_field(item, f"{path}[{index}]")
            if found:
                return found
    return None
