"""Widget routes: APIs (widgets.apis, owned by the API side) and pages (widgets.page_urls, the UI side)."""

import importlib.util

from django.urls import include, path

urlpatterns: list = []

if importlib.util.find_spec("widgets.api_urls"):
    urlpatterns.append(path("api/widget/", include("widgets.api_urls")))
if importlib.util.find_spec("widgets.page_urls"):
    urlpatterns.append(path("", include("widgets.page_urls")))
