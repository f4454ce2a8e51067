"""Assistant pages and APIs (included at the root by mejai.urls)."""

from django.urls import path

from assistant import views

urlpatterns = [
    path("chat", views.chat_page, name="assistant-chat"),
]
