"""Assistant pages and APIs (included at the root by mejai.urls)."""

from django.urls import path

from assistant import apis, views

urlpatterns = [
    path("chat", views.chat_page, name="assistant-chat"),
    path("api/assistant/reports", apis.ReportCreateApi.as_view(), name="assistant-reports"),
    path("api/assistant/status", apis.StatusApi.as_view(), name="assistant-status"),
]
