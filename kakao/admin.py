"""Admin for Kakao bots, users, callback tasks (with token usage per answer) and the channel's event log."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.utils.html import format_html

from kakao import services
from kakao.models import CallbackTask, KakaoBot, KakaoEvent, KakaoUser
from mejai.errors import ApiError
from runtime.admin_scoping import OrganizationScopedAdmin, OrganizationScopedTabularInline

STATUS_COLOURS = {
    "pending": "#6b7280", "processing": "#2563eb", "completed": "#16a34a", "failed": "#dc2626",
    "expired": "#d97706", "held": "#7c3aed",
}


def _badge(value: str, label: str | None = None):
    colour = STATUS_COLOURS.get(value, "#6b7280")
    return format_html(
        '<span style="background:{}1a;color:{};border:1px solid {}55;border-radius:999px;padding:1px 8px;'
        'font-weight:600;font-size:11px;white-space:nowrap">{}</span>', colour, colour, colour, label or value,
    )


@admin.register(KakaoBot)
class KakaoBotAdmin(OrganizationScopedAdmin):
    list_display = ["name", "bot_id", "organization", "agent", "hosts", "session_timeout_minutes", "is_active", "skill_url"]
    list_filter = ["is_active", "organization"]
    search_fields = ["name", "bot_id"]
    readonly_fields = ["created_at", "updated_at", "skill_url"]
    fieldsets = [
        (None, {"fields": ["organization", "agent", "name", "bot_id", "is_active", "skill_url"]}),
        ("스킬 보안 (skill security)", {
            "fields": ["secret_header_name", "secret_header_value", "allowed_callback_hosts"],
            "description": "Open Builder 스킬 설정의 '헤더값 입력'에 같은 이름과 값을 넣으세요. "
                           "콜백은 허용된 호스트의 https:443 주소로만 보냅니다.",
        }),
        ("대화 (conversation)", {"fields": ["waiting_text", "welcome_text", "session_timeout_minutes"]}),
        ("기록", {"fields": ["created_at", "updated_at"]}),
    ]

    def get_urls(self):
        from django.urls import path

        from kakao.admin_simulator import kakao_simulator_view

        simulator = path("<int:bot_id>/simulator/", self.admin_site.admin_view(kakao_simulator_view),
                         name="kakao_kakaobot_simulator")
        return [simulator, *super().get_urls()]  # before the catch-all "<object_id>/" of ModelAdmin

    @admin.display(description="callback hosts")
    def hosts(self, obj):
        return ", ".join(obj.allowed_callback_hosts or [])

    @admin.display(description="skill URL")
    def skill_url(self, obj):
        return format_html("<code>{}/kakao/skill</code>", settings.PUBLIC_BASE_URL)


@admin.register(KakaoUser)
class KakaoUserAdmin(OrganizationScopedAdmin):
    list_display = ["short_key", "name", "bot", "is_friend", "mode", "session", "last_seen_at"]
    list_filter = ["bot", "is_friend", "mode"]
    search_fields = ["user_key", "plusfriend_user_key", "end_user__display_name"]
    readonly_fields = ["bot", "user_key", "plusfriend_user_key", "app_user_id", "end_user", "session", "created_at",
                       "last_seen_at"]
    list_select_related = ["bot", "end_user"]

    def has_add_permission(self, request, *args):
        return False  # rows the pipeline writes: their identifying fields are read-only, a hand-made one cannot be saved

    @admin.display(description="user key")
    def short_key(self, obj):
        return f"{obj.user_key[:16]}…" if len(obj.user_key) > 16 else obj.user_key

    @admin.display(description="name")
    def name(self, obj):
        return obj.end_user.display_name or "—"


class KakaoEventInline(OrganizationScopedTabularInline):
    model = KakaoEvent
    fields = ["created_at", "kind", "detail"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(CallbackTask)
class CallbackTaskAdmin(OrganizationScopedAdmin):
    list_display = ["received_at", "status_badge", "mode", "response_kind", "attempts", "kakao_status", "tokens",
                    "latency", "user_text", "bot"]
    list_filter = ["status", "mode", "response_kind", "bot"]
    search_fields = ["id", "kakao_task_id", "turn__user_text"]
    date_hierarchy = "received_at"
    list_select_related = ["turn", "bot"]
    readonly_fields = [f.name for f in CallbackTask._meta.fields] + ["tokens", "latency", "user_text", "answer"]
    exclude = ["callback_url"]
    inlines = [KakaoEventInline]
    actions = ["retry"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return _badge(obj.status, obj.get_status_display())

    @admin.display(description="tokens in/out")
    def tokens(self, obj):
        if obj.turn.tokens_in is None and obj.turn.tokens_out is None:
            return "—"
        return f"{obj.turn.tokens_in or 0} / {obj.turn.tokens_out or 0}"

    @admin.display(description="answer ms")
    def latency(self, obj):
        return obj.turn.latency_ms if obj.turn.latency_ms is not None else "—"

    @admin.display(description="message")
    def user_text(self, obj):
        text = obj.turn.user_text
        return text if len(text) <= 40 else text[:39] + "…"

    @admin.display(description="answer")
    def answer(self, obj):
        return obj.turn.reply_text or "—"

    @admin.action(description="Retry delivery (only while the callback token is still usable)")
    def retry(self, request, queryset):
        for task in queryset.select_related("turn"):
            try:
                services.callback_task_retry(task=task)
                self.message_user(request, f"{task.pk}: queued again.", messages.SUCCESS)
            except ApiError as exc:
                self.message_user(request, f"{task.pk}: {exc.message}", messages.WARNING)


@admin.register(KakaoEvent)
class KakaoEventAdmin(OrganizationScopedAdmin):
    list_display = ["created_at", "kind_badge", "bot", "kakao_user", "session", "task", "summary"]
    list_filter = ["kind", "bot"]
    date_hierarchy = "created_at"
    readonly_fields = ["organization", "bot", "kakao_user", "session", "task", "kind", "detail", "created_at"]
    list_select_related = ["bot", "kakao_user"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="event", ordering="kind")
    def kind_badge(self, obj):
        colour = {"callback_delivered": "completed", "callback_failed": "failed", "callback_expired": "expired",
                  "answer_held": "held", "callback_url_rejected": "failed", "broker_unreachable": "failed"}
        return _badge(colour.get(obj.kind, "pending"), obj.get_kind_display())

    @admin.display(description="detail")
    def summary(self, obj):
        text = ", ".join(f"{k}={v}" for k, v in (obj.detail or {}).items())
        return text if len(text) <= 80 else text[:79] + "…"
