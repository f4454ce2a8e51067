"""'카카오 시뮬레이터' on the Kakao bot's admin page: an operator talks to the bot as a test user, without Kakao."""

from __future__ import annotations

import json

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

from kakao import simulator
from kakao.models import KakaoBot
from mejai.error_messages import message_bilingual
from mejai.errors import ApiError


def _pretty(body) -> str:
    return json.dumps(body, ensure_ascii=False, indent=2) if body is not None else ""


def kakao_simulator_view(request, bot_id):
    """GET: the page. POST `utterance`: one simulated skill request; POST `restart`: a new conversation.

    Scoped like the bot's admin: a bot outside the operator's organization is a 404.
    """
    bot_admin = admin.site._registry[KakaoBot]
    if not bot_admin.has_view_permission(request):
        raise PermissionDenied
    bot = bot_admin.get_queryset(request).filter(pk=bot_id).select_related("organization", "agent").first()
    if bot is None:
        raise Http404
    result, error = None, ""
    if request.method == "POST":
        if request.POST.get("restart"):
            simulator.simulation_restart(bot=bot, operator=request.user)
            return HttpResponseRedirect(request.path)
        try:
            result = simulator.simulate(bot=bot, operator=request.user, utterance=request.POST.get("utterance", ""))
        except ApiError as exc:
            error = message_bilingual(exc.code, exc.message)
    immediate_texts, immediate_replies = simulator.bubbles(result.immediate if result else None)
    callback_texts, callback_replies = simulator.bubbles(result.callback if result else None)
    context = {
        **admin.site.each_context(request),
        "opts": KakaoBot._meta,
        "title": _("Kakao simulator"),
        "subtitle": bot.name,
        "bot": bot,
        "result": result,
        "error": error,
        "request_json": _pretty(result.request) if result else "",
        "immediate_json": _pretty(result.immediate) if result else "",
        "callback_json": _pretty(result.callback) if result else "",
        "uses_callback": bool(result and result.immediate.get("useCallback")),
        "immediate_texts": immediate_texts, "immediate_replies": immediate_replies,
        "callback_texts": callback_texts, "callback_replies": callback_replies,
        "utterance": request.POST.get("utterance", "") if error else "",
    }
    return TemplateResponse(request, "admin/kakao/kakaobot/simulator.html", context, status=400 if error else 200)
