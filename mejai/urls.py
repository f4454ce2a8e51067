"""Top-level URLs: each app owns its own urls module (full paths, included at the root)."""

import importlib.util

from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework_simplejwt.views import TokenRefreshView

from mejai import views
from runtime import health
from runtime.admin_conversations import agent_try_view
from runtime.auth import staff_token_view

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # The admin index with the operator's overview (mejai/overview.py); everything else is admin's own.
    path("admin/", admin.site.admin_view(views.admin_index), name="admin-overview"),
    path("admin/runtime/agent/<int:agent_id>/try/", admin.site.admin_view(agent_try_view), name="admin-agent-try"),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),  # set_language: the console's 한국어 / English switch
    path("api/runtime/", include("runtime.urls")),
    path("api/auth/token", staff_token_view(), name="token-obtain"),
    path("api/auth/token/refresh", TokenRefreshView.as_view(), name="token-refresh"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("docs/<slug:name>", views.docs_page, name="docs-page"),  # docs/*.md, linked from the API docs
    # Small things a browser and a new user look for: a favicon, and /app/ leading to the app's page.
    path("favicon.ico", RedirectView.as_view(url=static("mejai/favicon.svg"), permanent=True), name="favicon"),
    path("app/", RedirectView.as_view(url="/app/settings/?tab=quickstart"), name="app-index"),
    path("", views.home, name="home"),
]

# Channel apps mount their own pages and APIs (/widget.js, /api/widget/…, /kakao/skill, …).
for _app in ("endusers", "widgets", "kakao", "mchat", "assistant"):
    if importlib.util.find_spec(f"{_app}.urls"):
        urlpatterns.insert(-1, path("", include(f"{_app}.urls")))

handler400 = "mejai.views.bad_request_error"
handler403 = "mejai.views.forbidden"
handler404 = "mejai.views.not_found"
handler500 = "mejai.views.server_error"
