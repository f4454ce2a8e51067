"""The operator's Kakao simulator: one utterance through the real skill path, without Kakao.

A real Open Builder 2.0 skill request is built for a per-operator test user (`KakaoUser.user_key`
`mejai-simulator-<user id>`) and parsed by the same code as Kakao's. It runs through
`services.skill_receive` and the answer is composed with `services.answer_compose` — the code the
delivery job POSTs — but the callback URL points at an in-process capture: no CallbackTask is
stored, no job is queued and nothing is posted. The session is marked `metadata.preview`, so
the simulated turns count in no statistic and are not listed among customers' conversations.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass

from kakao import parsing, services
from kakao.models import KakaoBot, KakaoUser
from kakao.responses import acknowledgement
from mejai.errors import ApiError
from runtime.services import turn_answer

USER_KEY_PREFIX = "mejai-simulator-"
CAPTURE_HOST = "simulator.mejai.invalid"  # .invalid never resolves (RFC 2606): nothing could reach it


@dataclass
class Simulation:
    request: dict  # the skill request Kakao would send
    immediate: dict  # the skill response: the useCallback acknowledgement (or a direct answer)
    callback: dict | None  # the body the delivery job would POST to callbackUrl
    callback_url: str
    session_id: str


def test_user_key(operator) -> str:
    return f"{USER_KEY_PREFIX}{operator.pk}"


def skill_request_build(*, bot: KakaoBot, user_key: str, utterance, callback_url: str) -> dict:
    """An Open Builder 2.0 skill request body (the fields Kakao sends; see docs/kakao.md)."""
    return {
        "intent": {"id": "simulator", "name": "카카오 시뮬레이터"},
        "userRequest": {
            "timezone": "Asia/Seoul", "params": {"surface": "Kakaotalk.plusfriend"}, "lang": "ko",
            "utterance": utterance, "callbackUrl": callback_url,
            "user": {"id": user_key, "type": "botUserKey",
                     "properties": {"botUserKey": user_key, "isFriend": True}},
        },
        "bot": {"id": bot.bot_id, "name": bot.name},
        "action": {"id": "simulator", "name": "simulator", "params": {}, "detailParams": {}, "clientExtra": {}},
    }


def simulate(*, bot: KakaoBot, operator, utterance) -> Simulation:
    """One simulated utterance: (request, immediate response, callback body). Bad input: ApiError (400)."""
    if isinstance(utterance, str) and "\x00" in utterance:
        # Kakao's path silently drops control characters; an operator's typed NUL is a mistake to show.
        raise ApiError("invalid", "발화에 NUL 문자가 들어 있습니다. (The utterance contains a NUL character.)", 400,
                       field="utterance")
    callback_url = f"https://{CAPTURE_HOST}/v1/bots/{bot.bot_id}/callback/{uuid.uuid4().hex}"
    body = skill_request_build(bot=bot, user_key=test_user_key(operator), utterance=utterance,
                               callback_url=callback_url)
    skill = parsing.skill_request_parse(body)  # validates the utterance exactly as for Kakao
    # Without a callback URL skill_receive stores the turn but no CallbackTask and queues nothing;
    # the callback flow's acknowledgement and body are produced here instead, by the same functions.
    accepted = services.skill_receive(bot=bot, skill=dataclasses.replace(skill, callback_url=None),
                                      session_metadata_extra={"preview": True, "simulator": operator.get_username()})
    if accepted.response is not None or accepted.duplicate:
        return Simulation(body, accepted.response or {}, None, callback_url, str(accepted.turn.session_id))
    immediate = acknowledgement(bot.waiting_text)
    outcome = turn_answer(turn=accepted.turn)
    callback, _kind = services.answer_compose(outcome=outcome, held=[])
    return Simulation(body, immediate, callback, callback_url, str(accepted.turn.session_id))


def simulation_restart(*, bot: KakaoBot, operator) -> None:
    """Start a new conversation for the operator's test user (the next utterance opens a session)."""
    KakaoUser.objects.filter(bot=bot, user_key=test_user_key(operator)).update(session=None)


def bubbles(body: dict | None) -> tuple[list[str], list[str]]:
    """The texts and quick-reply labels a Kakao chat would show for a skill response body."""
    template = (body or {}).get("template") or {}
    texts = [o["simpleText"].get("text", "") for o in template.get("outputs", []) if "simpleText" in o]
    return texts, [q.get("label", "") for q in template.get("quickReplies", [])]
