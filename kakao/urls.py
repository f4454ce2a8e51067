"""Kakao URLs: the skill webhook, operator and user APIs, and the development helpers."""

from django.urls import path

from kakao import apis, dev, views

urlpatterns = [
    path("kakao/skill", views.skill, name="kakao-skill"),
    path("kakao/welcome", views.welcome, name="kakao-welcome"),
    path("api/kakao/admin/health", apis.HealthApi.as_view(), name="kakao-health"),
    path("api/kakao/admin/ai-tasks", apis.CallbackTaskListApi.as_view(), name="kakao-ai-tasks"),
    path("api/kakao/admin/ai-tasks/<str:task_id>/retry", apis.CallbackTaskRetryApi.as_view(), name="kakao-ai-task-retry"),
    path("api/kakao/admin/prompts", apis.PromptListApi.as_view(), name="kakao-prompts"),
    path("api/kakao/admin/prompts/<int:version_id>/activate", apis.PromptActivateApi.as_view(), name="kakao-prompt-activate"),
    path("api/kakao/admin/prompts/<str:name>", apis.PromptDetailApi.as_view(), name="kakao-prompt"),
    path("api/kakao/user/ai-status/<str:task_id>", apis.AiStatusApi.as_view(), name="kakao-ai-status"),
    path("api/kakao/user/conversations/<str:session_id>/latest-ai-response", apis.LatestAiResponseApi.as_view(),
         name="kakao-latest-ai-response"),
    path("kakao/dev/tester", dev.tester, name="kakao-dev-tester"),
    path("kakao/dev/callbacks", dev.callbacks, name="kakao-dev-callbacks"),
    path("kakao/dev/receiver/v1/bots/<str:bot_id>/callback/<str:token>", dev.receiver, name="kakao-dev-receiver"),
]
