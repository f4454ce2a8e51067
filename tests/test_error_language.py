"""One language policy: API errors are Korean first with English in parentheses; command replies follow
the session's locale (issue 11, 8)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from mejai.error_messages import KO_BY_CODE, message_bilingual
from runtime.models import Channel
from runtime.services import turn_run

ROOT = Path(__file__).resolve().parent.parent
HANGUL = re.compile(r"[\uac00-\ud7a3]")
# "한국어 … (English …)": Korean before the parenthesis, ASCII English inside it.
BILINGUAL = re.compile(r"^(?P<ko>[^(]*[\uac00-\ud7a3][^(]*|.*[\uac00-\ud7a3].*?) \((?P<en>[\x20-\x7e]+)\)$", re.DOTALL)


def assert_bilingual(response, status: int, code: str | None = None) -> str:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    if code:
        assert error["code"] == code
    message = error["message"]
    match = BILINGUAL.match(message)
    assert match and HANGUL.search(match["ko"]) and re.search(r"[A-Za-z]", match["en"]), message
    return message


def post(client, url, body, key=None, content_type="application/json"):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    return client.post(url, data=body if isinstance(body, (str, bytes)) else json.dumps(body),
                       content_type=content_type, **headers)


def test_drf_and_project_errors_are_bilingual(client, api_key, organization):
    assert "Authentication credentials" in assert_bilingual(post(client, "/api/runtime/chat", {}), 401, "unauthenticated")
    assert "Invalid API key" in assert_bilingual(post(client, "/api/runtime/chat", {}, "mj_sk_wrong"), 401)
    assert "PUT" in assert_bilingual(client.put("/api/runtime/chat", "{}", content_type="application/json",
                                                HTTP_AUTHORIZATION=f"Bearer {api_key}"), 405, "method_not_allowed")
    assert "text/plain" in assert_bilingual(post(client, "/api/runtime/chat", "x", api_key, "text/plain"), 415)
    assert "required" in assert_bilingual(post(client, "/api/runtime/chat", {}, api_key), 400, "invalid")
    assert "128" in assert_bilingual(post(client, "/api/runtime/chat", {"message": "x", "client_message_id": "a" * 200},
                                          api_key), 400)
    assert "UUID" in assert_bilingual(post(client, "/api/runtime/chat", {"message": "x", "session_id": "zz"}, api_key), 400)
    assert_bilingual(post(client, "/api/runtime/chat", '{"message":', api_key), 400, "malformed_json")
    assert_bilingual(post(client, "/api/runtime/chat", [1], api_key), 400)
    assert "Contact not found" in assert_bilingual(client.get("/api/contacts/999", HTTP_AUTHORIZATION=f"Bearer {api_key}"),
                                                   404, "contact_not_found")
    assert_bilingual(client.get("/api/no-such-route"), 404, "not_found")
    assert_bilingual(post(client, "/api/contacts", {}, api_key), 400, "identity_required")
    skill = post(client, "/kakao/skill", {})
    assert_bilingual(skill, skill.status_code)
    assert 400 <= skill.status_code < 500


@pytest.mark.parametrize("message", ["이 필드는 필수 항목입니다.", "This field is required."])
def test_a_drf_message_in_either_language_becomes_both(message):
    assert message_bilingual("invalid", message) == "이 필드는 필수 항목입니다. (This field is required.)"


def test_already_bilingual_messages_are_kept():
    text = "이름은 한글·영문·숫자 1–20자로 알려 주세요. (Names are 1–20 letters or digits.)"
    assert message_bilingual("invalid_name", text) == text


def _error_codes_in_source() -> dict[str, list[str]]:
    """Codes of every ApiError / error_response / error_body / LLMError / event_error with an English-only message."""
    found: dict[str, list[str]] = {}
    for path in ROOT.rglob("*.py"):
        if {".venv", "tests", "bench", "fakes", "migrations"} & set(path.parts):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            args = list(node.args)
            keywords = {k.arg: k.value for k in node.keywords}
            if name in ("ApiError", "error_response", "error_body", "LLMError") and len(args) >= 2:
                code, message = args[0], args[1]
            elif name == "event_error" and "code" in keywords and "message" in keywords:
                code, message = keywords["code"], keywords["message"]
            else:
                continue
            if isinstance(code, ast.Constant) and isinstance(code.value, str):
                if not HANGUL.search(ast.unparse(message)):
                    found.setdefault(code.value, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_every_english_only_error_code_has_its_korean_text():
    missing = {code: where for code, where in _error_codes_in_source().items() if code not in KO_BY_CODE}
    assert missing == {}


# --- command replies follow the session's locale ---------------------------------------------------

def _reply(organization, agent, text, *, metadata=None, session=None):
    outcome = turn_run(organization=organization, agent=agent, channel=Channel.WEB_WIDGET, text=text, session=session,
                       session_metadata=metadata)
    return outcome


@pytest.mark.parametrize("command", ["/memory", "/remember", "/search", "/forget"])
def test_english_command_words_answer_in_korean_in_a_korean_widget(organization, agent, offline_llm, command):
    outcome = _reply(organization, agent, command, metadata={"locale": "ko"})
    assert HANGUL.search(outcome.payload["message"]), outcome.payload["message"]


@pytest.mark.parametrize("command", ["/메모리", "/기억", "/검색", "/잊기"])
def test_korean_command_words_answer_in_english_in_an_english_widget(organization, agent, offline_llm, command):
    outcome = _reply(organization, agent, command, metadata={"locale": "en-US"})
    assert not HANGUL.search(outcome.payload["message"].split("/")[0]), outcome.payload["message"]


def test_a_bare_command_follows_the_sessions_earlier_messages(organization, agent, offline_llm):
    from runtime.models import Session

    first = _reply(organization, agent, "배송 언제 와요?")
    session = Session.objects.get(pk=first.session_id)
    assert _reply(organization, agent, "/memory", session=session).payload["message"].startswith("아직 기억하고")


def test_the_api_context_locale_sets_the_session_language(client, api_key, organization, agent, offline_llm):
    response = post(client, "/api/runtime/chat", {"message": "/메모리", "context": {"locale": "en"}}, api_key)
    assert response.json()["message"].startswith("I don't remember anything yet")
