from django.urls import path

from runtime import apis

app_name = "runtime"

urlpatterns = [
    path("chat", apis.runtime_chat, name="chat"),  # a plain async view (runtime.http.plain_view)
    path("sessions/<str:session_id>/turns", apis.SessionTurnsApi.as_view(), name="session-turns"),
    path("prompts", apis.PromptListApi.as_view(), name="prompts"),
    path("prompt-versions/<int:version_id>/activate", apis.PromptVersionActivateApi.as_view(), name="prompt-activate"),
    path("prompts/<int:template_id>/rollback", apis.PromptRollbackApi.as_view(), name="prompt-rollback"),
    path("prompts/<str:name>", apis.PromptDetailApi.as_view(), name="prompt"),
]
