"""The Open Builder skill endpoints: POST /kakao/skill and POST /kakao/welcome (plain async views, fast)."""

from __future__ import annotations

import logging

from asgiref.sync import sync_to_async
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from kakao import conf, services
from kakao.parsing import body_decode, skill_request_parse
from kakao.responses import response_build
from mejai.errors import ApiError
from runtime.http import body_read

logger = logging.getLogger(__name__)


def _json(body: dict, status: int = 200) -> JsonResponse:
    return JsonResponse(body, status=status, json_dumps_params={"ensure_ascii": False})


def _authenticated_request(request, *, require_utterance: bool = True):
    """Body → JSON → fields → that bot's secret, each failure an ApiError (sync: runs off the event loop).

    The bot is selected by the body's bot.id before any secret is compared (bot_authenticate).
    """
    raw = body_read(request, limit=conf.max_body_bytes())
    data = body_decode(body=raw, content_type=request.META.get("CONTENT_TYPE", ""))
    skill = skill_request_parse(data, require_utterance=require_utterance)
    bot = services.bot_authenticate(headers=request.headers, bot_id=skill.bot_id)
    return bot, skill


def _skill_accept(request):
    bot, skill_request = _authenticated_request(request)
    return services.skill_receive(bot=bot, skill=skill_request)


def _method_check(request) -> None:
    if request.method != "POST":
        raise ApiError("method_not_allowed", f"Method {request.method} is not allowed; use POST.", 405)


def _error(exc: ApiError) -> JsonResponse:
    response = _json(exc.as_dict(), exc.status)
    if exc.status == 405:
        response["Allow"] = "POST"
    if exc.status == 401:
        response["WWW-Authenticate"] = "KakaoSkillSecret"
    return response


@csrf_exempt
async def skill(request):
    """Kakao i Open Builder skill: acknowledge with useCallback, or answer within the 5 s budget."""
    try:
        _method_check(request)
        accepted = await sync_to_async(_skill_accept)(request)
    except ApiError as exc:
        return _error(exc)
    if accepted.kind == "callback" or accepted.response is not None:
        return _json(accepted.response)
    try:
        return _json(await services.skill_answer_sync(accepted=accepted))
    except Exception:
        logger.exception("kakao: synchronous answer failed")
        return _json(response_build([services.APOLOGY_TEXT]))


@csrf_exempt
async def welcome(request):
    """The welcome block: greet (by name when known) without the LLM; nothing is stored."""
    try:
        _method_check(request)
        bot, skill_request = await sync_to_async(_authenticated_request)(request, require_utterance=False)
    except ApiError as exc:
        return _error(exc)

    def greet() -> dict:
        from kakao.models import KakaoUser

        user = KakaoUser.objects.select_related("end_user").filter(bot=bot, user_key=skill_request.user_id).first()
        name = user.end_user.display_name if user else ""
        text = f"{name}님, 다시 만나서 반가워요!\n{bot.welcome_text}" if name else bot.welcome_text
        return response_build([text], quick_replies=[{"label": "이름 알려주기", "message": "/이름"}] if not name else [])

    return _json(await sync_to_async(greet)())


