"""Development helpers (KAKAO_DEV_TOOLS=1 only): a skill tester page and a callback receiver that records.

The tester sends a real skill request through the same code as Kakao's (POST /kakao/skill, with
the bot's secret header). With KAKAO_TEST_LOOPBACK_CALLBACKS=1 and the server's host in the bot's
allowed callback hosts, it asks for a callback to the receiver below; otherwise it tests the
synchronous path. Staff only.
"""

from __future__ import annotations

import json
import time
import uuid

from django.contrib.admin.views.decorators import staff_member_required
from django.core.cache import cache
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.test import RequestFactory
from django.views.decorators.csrf import csrf_exempt

from kakao import conf, views
from kakao.models import KakaoBot
from mejai.errors import error_response

RECEIVED_KEY = "kakao:dev:callbacks"
KEEP = 50


def _enabled() -> None:
    if not conf.dev_tools_enabled():
        raise Http404("Kakao development tools are off (KAKAO_DEV_TOOLS=1 turns them on).")


def _bots(request):
    organization = getattr(getattr(request.user, "mejai_membership", None), "organization", None)
    bots = KakaoBot.objects.select_related("organization").filter(is_active=True)
    return bots.filter(organization=organization) if organization and not request.user.is_superuser else bots


@staff_member_required
def tester(request):
    """GET: the tester page. POST (JSON {bot, user_key, utterance, callback}): one skill request."""
    _enabled()
    if request.method == "GET":
        return render(request, "kakao/tester.html", {"bots": _bots(request), "loopback": conf.test_loopback_callbacks()})
    if request.method != "POST":
        return error_response("method_not_allowed", "Use GET or POST.", 405)
    try:
        data = json.loads(request.body or b"{}")
    except json.JSONDecodeError:
        return error_response("malformed_json", "The request body is not valid JSON.", 400)
    if not isinstance(data, dict):
        return error_response("invalid", "The body must be a JSON object.", 400)
    bot = _bots(request).filter(pk=data.get("bot")).first()
    if bot is None:
        return error_response("not_found", "Bot not found.", 404)
    user_key = str(data.get("user_key") or f"tester-{request.user.pk}")[:70]
    body = {
        "intent": {"id": "tester", "name": "skill tester"},
        "userRequest": {
            "timezone": "Asia/Seoul", "params": {"surface": "Kakaotalk.plusfriend"}, "lang": "ko",
            "utterance": data.get("utterance", ""),
            "user": {"id": user_key, "type": "botUserKey", "properties": {"botUserKey": user_key}},
        },
        "bot": {"id": bot.bot_id, "name": bot.name},
        "action": {"id": "tester", "name": "tester", "params": {}, "detailParams": {}, "clientExtra": {}},
    }
    if data.get("callback"):
        base = request.build_absolute_uri("/").rstrip("/")
        body["userRequest"]["callbackUrl"] = f"{base}/kakao/dev/receiver/v1/bots/{bot.bot_id}/callback/{uuid.uuid4().hex}"
    skill_request = RequestFactory().post(
        "/kakao/skill", data=json.dumps(body, ensure_ascii=False), content_type="application/json",
        headers={bot.secret_header_name: bot.secret_header_value},
    )
    started = time.monotonic()
    response = views.skill(skill_request)
    return JsonResponse({
        "request": body, "status": response.status_code, "ms": round((time.monotonic() - started) * 1000, 1),
        "response": json.loads(response.content),
    }, json_dumps_params={"ensure_ascii": False})


@csrf_exempt
def receiver(request, bot_id: str, token: str):
    """Answers like Kakao's callback endpoint (SUCCESS) and records what it got."""
    _enabled()
    if request.method != "POST":
        return error_response("method_not_allowed", "Use POST.", 405)
    try:
        body = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return JsonResponse({"taskId": str(uuid.uuid4()), "status": "FAIL", "message": "Invalid JSON format.",
                             "timestamp": int(time.time() * 1000)})
    records = cache.get(RECEIVED_KEY) or []
    records.insert(0, {"bot_id": bot_id, "token": token[:12] + "…", "body": body, "at": time.time()})
    cache.set(RECEIVED_KEY, records[:KEEP], 3600)
    return JsonResponse({"taskId": str(uuid.uuid4()), "status": "SUCCESS", "message": "OK",
                         "timestamp": int(time.time() * 1000)})


@staff_member_required
def callbacks(request):
    _enabled()
    return JsonResponse({"received": cache.get(RECEIVED_KEY) or []}, json_dumps_params={"ensure_ascii": False})
