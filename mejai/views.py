"""Project-level pages and error handlers (JSON under /api/, HTML elsewhere)."""

from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponseBadRequest, HttpResponseNotFound, HttpResponseServerError
from django.shortcuts import render
from django.views.defaults import bad_request, page_not_found, permission_denied
from django.views.defaults import server_error as django_server_error

from mejai.errors import error_response


def _is_api(request) -> bool:
    return request.path.startswith("/api/") or request.path.startswith("/kakao/")


def home(request):
    return render(request, "home.html")


def bad_request_error(request, exception=None):
    """Django's own 400s (a body over DATA_UPLOAD_MAX_MEMORY_SIZE, a bad Host…): JSON under /api/."""
    if _is_api(request):
        if isinstance(exception, RequestDataTooBig):
            from django.conf import settings

            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            return error_response("payload_too_large", f"The request body is limited to {limit:,} bytes.", 413)
        return error_response("bad_request", "The request could not be read.", 400)
    try:
        return bad_request(request, exception)
    except Exception:
        return HttpResponseBadRequest("Bad request")


def not_found(request, exception=None):
    if _is_api(request):
        return error_response("not_found", "Not found.", 404)
    try:
        return page_not_found(request, exception)
    except Exception:
        return HttpResponseNotFound("Not found")


def forbidden(request, exception=None):
    """403s (admin pages a staff user has no permission for, …): JSON under /api/, else templates/403.html,
    styled like the rest of the product instead of Django's bare "403 Forbidden"."""
    if _is_api(request):
        return error_response("forbidden", "You do not have permission to do this.", 403)
    return permission_denied(request, exception)


def server_error(request):
    import sys

    from mejai.overload import is_overload_error, overloaded_response, shed_record

    if is_overload_error(sys.exc_info()[1]):  # the database pool refused: busy, not broken
        shed_record("database_pool", f"{request.method} {request.path[:200]}")
        return overloaded_response(request)
    if _is_api(request):
        return error_response("server_error", "An unexpected error occurred.", 500)
    try:
        return django_server_error(request)
    except Exception:
        return HttpResponseServerError("Server error")


def admin_index(request):
    """The admin index with the overview of the operator's organization (every organization for a superuser)."""
    from django.contrib import admin

    from runtime.admin_scoping import request_organization, sees_every_organization
    from runtime.models import Organization

    if sees_every_organization(request):
        organizations = Organization.objects.order_by("name")[:20]
    else:
        own = request_organization(request)
        organizations = [own] if own is not None else []
    return admin.site.index(request, extra_context={"overview": overview_cached(organizations=list(organizations))})


def overview_cached(*, organizations: list) -> list:
    """overview_build, kept ADMIN_OVERVIEW_CACHE_SECONDS per organization set and language when that is set
    (default 0: every visit builds it; it reads the daily roll-up, bench/RESULTS.md)."""
    from django.conf import settings
    from django.core.cache import cache
    from django.utils.translation import get_language

    from mejai.overview import overview_build

    seconds = settings.ADMIN_OVERVIEW_CACHE_SECONDS
    if seconds <= 0 or not organizations:
        return overview_build(organizations=organizations)
    key = f"admin-overview:{get_language()}:{','.join(str(o.pk) for o in organizations)}"
    found = cache.get(key)
    if found is None:
        found = overview_build(organizations=organizations)
        cache.set(key, found, seconds)
    return found


def docs_page(request, name: str):
    """One page of the project's docs/ (the decisions), as UTF-8 markdown text: what API descriptions link to."""
    from django.conf import settings
    from django.http import Http404, HttpResponse

    pages = {p.stem: p for p in (settings.BASE_DIR / "docs").glob("*.md")}
    page = pages.get(name)
    if page is None:
        raise Http404("No such docs page.")
    return HttpResponse(page.read_text(encoding="utf-8"), content_type="text/markdown; charset=utf-8")
