"""The standalone `/chat` page: the realtime assistant for logged-in members (docs/assistant.md)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils import translation
from django.views.decorators.http import require_safe

from assistant import conf


def _csp(request) -> str:
    host = request.get_host()
    # The socket is same-origin; ws:/wss: are named because older browsers do not count them as 'self'.
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: https:; "
        f"connect-src 'self' ws://{host} wss://{host}; font-src 'self'; base-uri 'none'; form-action 'self'; "
        "object-src 'none'; frame-ancestors 'none'"
    )


@require_safe
@login_required
def chat_page(request):
    """Korean first; English when the browser prefers it (LocaleMiddleware) or `?lang=en`."""
    lang = request.GET.get("lang")
    locale = lang if lang in ("ko", "en") else ("en" if translation.get_language() == "en" else "ko")
    config = {
        "locale": locale,
        "user": request.user.get_username(),
        "maxImages": conf.max_images(),
        "maxImageBytes": conf.max_image_bytes(),
        "maxFrameBytes": conf.max_frame_bytes(),
    }
    response = render(request, "assistant/chat.html", {"locale": locale, "config": config})
    response["Content-Security-Policy"] = _csp(request)
    response["Cache-Control"] = "no-store"
    return response
