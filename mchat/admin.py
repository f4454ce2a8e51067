"""Admin for Mattermost bots (write-only token), mappings (changes audited), the ledger and the outbox.

Scoped with runtime.admin_scoping: superusers see every organization; other staff only their own.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin

from mchat import services
from mchat.models import (
    ChannelMapping,
    InboundPost,
    MappingAudit,
    MattermostBot,
    OutboxPost,
    UserMapping,
    WorkerStatus,
)
from runtime.admin_scoping import OrganizationScopedAdmin, OrganizationScopedForm, request_organization


def organization_of(request):
    return request_organization(request)


def actor_of(request) -> str:
    return f"admin:{request.user.get_username()}"


class MattermostBotForm(OrganizationScopedForm):
    server_url = forms.URLField(label="서버 URL · Server URL", max_length=300, assume_scheme="https",
                                help_text="e.g. https://mchat.example.com (without /api/v4).")
    token = forms.CharField(
        label="봇 토큰 · Bot token", required=False, strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="저장 후 다시 표시되지 않습니다. 바꿀 때만 입력하세요. Write-only: leave empty to keep the current token.",
    )
    slash_tokens = forms.CharField(
        label="슬래시 명령 토큰 · Slash command tokens", required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="쉼표로 구분. 바꿀 때만 입력하세요. Comma-separated; leave empty to keep the current ones.",
    )

    class Meta:
        model = MattermostBot
        fields = ["organization", "agent", "name", "server_url", "token", "verify_tls", "ca_bundle_path", "mode",
                  "polling_interval_seconds", "mention_name", "allowed_team_ids", "allowed_channel_ids", "is_active"]

    def clean_token(self):
        token = self.cleaned_data.get("token", "")
        if not token and not (self.instance and self.instance.pk):
            raise forms.ValidationError("새 봇에는 토큰이 필요합니다. A new bot needs its token.")
        return token

    def clean(self):
        data = super().clean()
        organization, agent = data.get("organization"), data.get("agent")
        if organization and agent and agent.organization_id != organization.pk:
            self.add_error("agent", "이 조직의 에이전트가 아닙니다. The agent belongs to another organization.")
        return data

    def save(self, commit=True):
        bot = super().save(commit=False)
        if self.cleaned_data.get("token"):
            bot.token = self.cleaned_data["token"]
        elif bot.pk:
            bot.token = MattermostBot.objects.only("token").get(pk=bot.pk).token
        tokens = [t.strip() for t in (self.cleaned_data.get("slash_tokens") or "").split(",") if t.strip()]
        if tokens:
            bot.slash_command_tokens = tokens
        if commit:
            bot.save()
        return bot


@admin.register(MattermostBot)
class MattermostBotAdmin(OrganizationScopedAdmin):
    form = MattermostBotForm
    list_display = ["name", "organization", "agent", "server_url", "mode", "is_active", "worker_state"]
    list_filter = ["is_active", "mode"]
    search_fields = ["name", "server_url"]
    readonly_fields = ["created_at", "updated_at", "worker_state", "slash_token_count"]
    fieldsets = [
        (None, {"fields": ["organization", "agent", "name", "server_url", "token", "is_active", "worker_state"]}),
        ("연결 · Connection", {"fields": ["mode", "polling_interval_seconds", "verify_tls", "ca_bundle_path"]}),
        ("대화 · Conversation", {"fields": ["mention_name", "allowed_team_ids", "allowed_channel_ids"]}),
        ("슬래시 명령 · Slash commands", {"fields": ["slash_tokens", "slash_token_count"],
                                       "description": "Mattermost의 사용자 지정 슬래시 명령 URL: /mchat/commands"}),
        ("기록", {"fields": ["created_at", "updated_at"]}),
    ]

    def get_urls(self):
        from django.urls import path

        return [path("status/", self.admin_site.admin_view(self.status_view), name="mchat_status"),
                *super().get_urls()]

    def status_view(self, request):
        """Mattermost 연동 현황: every bot of the staff member's organization (all for superusers)."""
        from django.template.response import TemplateResponse

        from mchat import selectors

        organization = None if request.user.is_superuser else organization_of(request)
        if not request.user.is_superuser and organization is None:
            bots, changes = [], []
        else:
            bots = selectors.bots_status(organization=organization)
            changes = MappingAudit.objects.all() if organization is None else MappingAudit.objects.filter(
                organization=organization)
            changes = list(changes[:20])
        context = {**self.admin_site.each_context(request), "title": "Mattermost 연동 현황", "bots": bots,
                   "changes": changes}
        return TemplateResponse(request, "admin/mchat/status.html", context)

    @admin.display(description="worker")
    def worker_state(self, obj):
        status = WorkerStatus.objects.filter(bot=obj).first()
        return status.get_state_display() if status else "—"

    @admin.display(description="slash command tokens")
    def slash_token_count(self, obj):
        return f"{len(obj.slash_command_tokens or [])} configured"


@admin.register(UserMapping)
class UserMappingAdmin(OrganizationScopedAdmin):
    list_display = ["username", "mchat_user_id", "bot", "end_user", "linked_by", "email_verified", "updated_at"]
    list_filter = ["linked_by", "bot"]
    search_fields = ["username", "mchat_user_id"]
    readonly_fields = ["bot", "mchat_user_id", "username", "email", "email_verified", "auth_service", "linked_by",
                       "created_at", "updated_at"]
    raw_id_fields = ["end_user"]

    def has_add_permission(self, request):
        return False  # mappings come from Mattermost; operators re-link them

    def save_model(self, request, obj, form, change):
        self.organization_check(request, obj)
        if change and "end_user" in form.changed_data:
            services.user_mapping_link(bot=obj.bot, mchat_user_id=obj.mchat_user_id, end_user=obj.end_user,
                                       actor=actor_of(request))
            return
        super().save_model(request, obj, form, change)


@admin.register(ChannelMapping)
class ChannelMappingAdmin(OrganizationScopedAdmin):
    list_display = ["__str__", "mchat_channel_id", "channel_type", "bot", "auto_reply", "session", "updated_at"]
    list_filter = ["channel_type", "auto_reply", "bot"]
    search_fields = ["name", "display_name", "mchat_channel_id"]
    readonly_fields = ["bot", "mchat_channel_id", "name", "display_name", "team_id", "channel_type", "session",
                       "cursor_ms", "created_at", "updated_at"]

    def has_add_permission(self, request):
        return False

    def save_model(self, request, obj, form, change):
        self.organization_check(request, obj)
        services.channel_mapping_update(bot=obj.bot, mchat_channel_id=obj.mchat_channel_id, actor=actor_of(request),
                                        auto_reply=obj.auto_reply)


class ReadOnlyAdmin(OrganizationScopedAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(InboundPost)
class InboundPostAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "post_id", "status", "reason", "via", "channel_id", "bot"]
    list_filter = ["status", "reason", "via", "bot"]
    search_fields = ["post_id", "channel_id", "user_id"]


@admin.register(OutboxPost)
class OutboxPostAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "status", "part", "attempts", "channel_id", "post_id", "last_error", "bot"]
    list_filter = ["status", "bot"]
    search_fields = ["post_id", "pending_post_id", "channel_id"]


@admin.register(MappingAudit)
class MappingAuditAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "action", "actor", "bot", "detail"]
    list_filter = ["action"]
