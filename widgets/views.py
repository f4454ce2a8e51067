"""Widget pages: /widget.js (the loader), /embed/<public_key> (the chat iframe), the quickstart settings page."""

from __future__ import annotations

import gzip
import hashlib
import os
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import Sum
from django.http import Http404, HttpResponse, HttpResponseNotModified
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_GET, require_safe

from mejai.errors import ApiError
from widgets import conf

STATIC_DIR = Path(settings.BASE_DIR) / "static" / "widgets"
WIDGET_JS_MAX_AGE = 3600  # the URL is stable (it is in customers' pages): an hour, revalidated by ETag

# The embed page's own policy: only mejai's scripts, styles and APIs; no inline anything.
EMBED_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; object-src 'none'"
)


# --- /widget.js -------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _widget_js_build(js_mtime: float, css_mtime: float) -> tuple[bytes, bytes, str]:
    """(body, gzipped body, etag) of widget.js, with the versioned launcher.css path filled in."""
    css = (STATIC_DIR / "launcher.css").read_bytes()
    css_url = static("widgets/launcher.css") + "?v=" + hashlib.sha256(css).hexdigest()[:12]
    body = (STATIC_DIR / "widget.js").read_text(encoding="utf-8").replace("__MEJAI_LAUNCHER_CSS__", css_url)
    raw = body.encode("utf-8")
    etag = '"' + hashlib.sha256(raw).hexdigest()[:32] + '"'
    return raw, gzip.compress(raw, compresslevel=9, mtime=0), etag


def widget_js_build() -> tuple[bytes, bytes, str]:
    return _widget_js_build(os.stat(STATIC_DIR / "widget.js").st_mtime, os.stat(STATIC_DIR / "launcher.css").st_mtime)


@require_safe
def widget_js(request):
    raw, gz, etag = widget_js_build()
    if etag in [t.strip() for t in request.META.get("HTTP_IF_NONE_MATCH", "").replace("W/", "").split(",")]:
        response = HttpResponseNotModified()
    else:
        use_gzip = "gzip" in request.META.get("HTTP_ACCEPT_ENCODING", "")
        response = HttpResponse(gz if use_gzip else raw, content_type="application/javascript; charset=utf-8")
        if use_gzip:
            response["Content-Encoding"] = "gzip"
        if request.method == "HEAD":
            response.content = b""
    response["ETag"] = etag
    response["Cache-Control"] = f"public, max-age={WIDGET_JS_MAX_AGE}, stale-while-revalidate=86400"
    # A public script: any page may load it (no credentials), also with crossorigin= and SRI.
    response["Access-Control-Allow-Origin"] = "*"
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    patch_vary_headers(response, ("Accept-Encoding",))
    return response


# --- /embed/<public_key> -----------------------------------------------------------------------


def _own_origins(request) -> set[str]:
    from widgets.services import origin_parse

    own = {origin_parse(settings.PUBLIC_BASE_URL), origin_parse(request.build_absolute_uri("/"))}
    return {str(o) for o in own if o is not None}


def _host_origin(request, widget) -> str | None:
    """The host page's origin from ?origin=, when the widget may run there (or it is mejai itself)."""
    from widgets.services import origin_allowed, origin_parse, patterns_parse

    origin = origin_parse(request.GET.get("origin"))
    if origin is None:
        return None
    if str(origin) in _own_origins(request):
        return str(origin)
    return str(origin) if origin_allowed(origin=origin, patterns=patterns_parse(widget.allowed_domains)) else None


@xframe_options_exempt
@require_GET
def embed(request, public_key: str):
    from widgets.services import widget_frame_ancestors, widget_get_active

    try:
        widget = widget_get_active(public_key=public_key)
    except ApiError:
        response = render(request, "widgets/embed_404.html", status=404)
        response["Content-Security-Policy"] = EMBED_CSP
        response["Cache-Control"] = "no-store"
        return response
    locale = request.GET.get("locale") or widget.locale
    locale = "en" if str(locale).lower().startswith("en") else "ko"
    theme = widget.theme_resolved
    preview = request.GET.get("preview") == "1"
    config = {
        "public_key": widget.public_key,
        "name": widget.name,
        "locale": locale,
        "theme": theme,
        "host_origin": None if preview else _host_origin(request, widget),
        "max_chars": conf.max_message_chars(),
        "preview": preview,
    }
    response = render(
        request,
        "widgets/embed.html",
        {
            "embed_config": config,
            "locale": locale,
            "title": theme.get("launcher_title") or widget.name,
        },
    )
    response["Content-Security-Policy"] = EMBED_CSP + "; " + widget_frame_ancestors(widget)
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "strict-origin-when-cross-origin"
    return response


# --- /app/settings/?tab=quickstart ------------------------------------------------------------


def _public_base(request) -> str:
    # PUBLIC_BASE_URL when configured explicitly; otherwise the address the operator is using.
    if settings.PUBLIC_BASE_URL_CONFIGURED:
        return settings.PUBLIC_BASE_URL
    return request.build_absolute_uri("/").rstrip("/")


def _admin_may(request, action: str) -> bool:
    """Whether the widget admin page behind a link would open for this user (else the link is left out:
    a staff user without the model permission would land on a 403)."""
    return request.user.is_active and request.user.is_staff and request.user.has_perm(f"widgets.{action}_chatwidget")


def _admin_url(name: str, *args) -> str | None:
    try:
        return reverse(f"admin:widgets_chatwidget_{name}", args=args)
    except NoReverseMatch:
        return None


def _domain_status(widget) -> list[dict]:
    from widgets.services import origin_parse, pattern_parse

    seen = origin_parse(widget.last_seen_origin) if widget.last_seen_origin else None
    rows = []
    for value in widget.allowed_domains or []:
        try:
            pattern = pattern_parse(value)
        except Exception:
            rows.append({"pattern": value, "valid": False, "seen": False})
            continue
        rows.append({"pattern": str(pattern), "valid": True, "seen": bool(seen and pattern.matches(seen))})
    return rows


def _week_stats(widget) -> dict:
    from widgets.models import WidgetDailyStat

    since = timezone.localdate() - timedelta(days=6)
    totals = WidgetDailyStat.objects.filter(widget=widget, day__gte=since).aggregate(
        loads=Sum("loads"),
        opens=Sum("opens"),
        conversations=Sum("conversations"),
        messages=Sum("messages"),
        form_submits=Sum("form_submits"),
    )
    return {k: v or 0 for k, v in totals.items()}


@never_cache  # the page shows the widget's identity secret: never stored by a browser or proxy cache
@login_required
@require_GET
def settings_page(request):
    from runtime.models import Membership
    from widgets.models import ChatWidget

    if request.GET.get("tab") != "quickstart":
        return redirect(f"{request.path}?tab=quickstart")
    membership = Membership.objects.select_related("organization").filter(user=request.user).first()
    context = {"tab": "quickstart", "membership": membership, "base": _public_base(request)}
    if membership is None:
        return render(request, "widgets/quickstart.html", context, status=403)
    organization = membership.organization
    widgets = list(ChatWidget.objects.filter(organization=organization).select_related("agent").order_by("name", "pk"))
    widget = None
    wanted = request.GET.get("widget")
    if wanted:
        if not wanted.isdigit():
            raise Http404("No such widget.")
        widget = next((w for w in widgets if w.pk == int(wanted)), None)
        if widget is None:
            raise Http404("No such widget.")
    elif widgets:
        widget = next((w for w in widgets if w.is_active), widgets[0])
    context.update(
        {
            "organization": organization,
            "widgets": widgets,
            "widget": widget,
            "add_url": _admin_url("add") if _admin_may(request, "add") else None,
        }
    )
    if widget is not None:
        base = context["base"]
        context.update(
            {
                "snippet": f'<script async src="{base}/widget.js" data-key="{widget.public_key}"></script>',
                "theme": widget.theme_resolved,
                "domains": _domain_status(widget),
                "stats": _week_stats(widget),
                "change_url": _admin_url("change", widget.pk) if _admin_may(request, "change") else None,
                "preview_src": f"/embed/{widget.public_key}?preview=1",
            }
        )
    return render(request, "widgets/quickstart.html", context)
