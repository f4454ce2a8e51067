"""Plain views of the Mattermost channel: the slash command endpoint and the worker health check."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from mchat import conf, selectors
from mchat.slash import slash_command
from mejai.errors import ApiError, error_response


@csrf_exempt
async def commands(request):
    """POST /mchat/commands: Mattermost custom slash commands (form-encoded, per-command token)."""
    if request.method != "POST":
        return error_response("method_not_allowed", "Use POST.", 405)
    length = request.META.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length) > conf.slash_max_body_bytes():
        return error_response("payload_too_large", "The request body is too large.", 413)
    content_type = request.content_type or ""
    if content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return error_response("unsupported_media_type", "Send the slash command form (x-www-form-urlencoded).", 415)
    try:
        form = request.POST.dict()
    except RequestDataTooBig:
        return error_response("payload_too_large", "The request body is too large.", 413)
    try:
        body = await slash_command(form=form)
    except ApiError as exc:
        return JsonResponse(exc.as_dict(), status=exc.status, json_dumps_params={"ensure_ascii": False})
    return JsonResponse(body, json_dumps_params={"ensure_ascii": False})


@require_GET
async def health(request):
    """GET /mchat/health: 200 when every active bot has a live worker connected with a valid token, else 503."""
    ok, body = await sync_to_async(selectors.health)()
    return JsonResponse(body, status=200 if ok else 503)
