"""Top-level URLs: each app owns its own urls module (full paths, included at the root)."""

import importlib.util

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework_simplejwt.views import TokenRefreshView

from mejai import views
from runtime import health
from runtime.auth import staff_token_view

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("api/runtime/", include("runtime.urls")),
    path("api/auth/token", staff_token_view(), name="token-obtain"),
    path("api/auth/token/refresh", TokenRefreshView.as_view(), name="token-refresh"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("", views.home, name="home"),
]

# Channel apps mount their own pages and APIs (/widget.js, /api/widget/…, /kakao/skill, …).
for _app in ("endusers", "widgets", "kakao", "mchat", "assistant"):
    if importlib.util.find_spec(f"{_app}.urls"):
        urlpatterns.insert(-1, path("", include(f"{_app}.urls")))

handler400 = "mejai.views.bad_request_error"
handler404 = "mejai.views.not_found"
handler500 = "mejai.views.server_error"
