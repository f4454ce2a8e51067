"""Project-level pages and error handlers (JSON under /api/, HTML elsewhere)."""

from django.http import HttpResponseNotFound, HttpResponseServerError
from django.shortcuts import render
from django.views.defaults import page_not_found
from django.views.defaults import server_error as django_server_error

from mejai.errors import error_response


def _is_api(request) -> bool:
    return request.path.startswith("/api/") or request.path.startswith("/kakao/")


def home(request):
    return render(request, "home.html")


def not_found(request, exception=None):
    if _is_api(request):
        return error_response("not_found", "Not found.", 404)
    try:
        return page_not_found(request, exception)
    except Exception:
        return HttpResponseNotFound("Not found")


def server_error(request):
    if _is_api(request):
        return error_response("server_error", "An unexpected error occurred.", 500)
    try:
        return django_server_error(request)
    except Exception:
        return HttpResponseServerError("Server error")
